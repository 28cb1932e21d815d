#!/usr/bin/env bash
# Regenerate every generated reference from the registries (the tests check they are fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
NN=".venv/bin/python -m nngraph"
$NN schema -o docs/nngraph.schema.json
$NN docs -o docs/spec-reference.md
$NN docs --train -o docs/train-reference.md
