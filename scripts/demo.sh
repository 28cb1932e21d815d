#!/usr/bin/env bash
# Set everything up, then run the main job end to end on the model zoo:
# validate every spec, inspect and draw each one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NN=.venv/bin/nngraph
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
echo "== validate specs/"
$NN validate specs/
echo "== schema"
$NN schema -o "$OUT/nngraph.schema.json"
for spec in specs/*.yaml; do
  name=$(basename "$spec" .yaml)
  echo "== inspect $name"
  $NN inspect "$spec" | tail -n 3
  $NN graph "$spec" -o "$OUT/$name.mmd"
done
echo "demo finished: outputs in $OUT/"
