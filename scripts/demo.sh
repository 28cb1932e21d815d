#!/usr/bin/env bash
# Set everything up, then run the main job end to end on the model zoo:
# validate every spec, inspect and draw each one, compile every spec the torch
# back end covers (forward check on random inputs, weights, generated source), train
# a CNN on the bundled digits, export it to ONNX and score it with ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NN=.venv/bin/nngraph
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
echo "== validate specs/"
# specs/seeds/ describes published models at full size (GShard: 13.1e9 parameters, 52.5 GB as float32): validate
# describes, so a model over this machine's memory is a warning there; compile/train/export refuse it
$NN validate specs/
echo "== schema -> $OUT/nngraph.schema.json"
$NN schema -o "$OUT/nngraph.schema.json"
for spec in specs/*.yaml; do
  name=$(basename "$spec" .yaml)
  echo "== inspect $name"
  $NN inspect "$spec" | tail -n 2
  $NN graph "$spec" -o "$OUT/$name.mmd" >/dev/null
done
echo "== compile (PyTorch)"
for spec in $(.venv/bin/python scripts/compilable.py specs/*.yaml); do
  name=$(basename "$spec" .yaml)
  $NN compile "$spec" -o "$OUT/$name.safetensors" --emit-python "$OUT/$name.py" | grep -E "torch parameters|ok|MISMATCH"
done
echo "== train cnn_digits on the built-in 8x8 digits (its train: section; about a minute on 2 CPU cores)"
$NN train specs/cnn_digits.yaml --out "$OUT/train/cnn_digits" | grep -E "^(training|stopped|test)"
echo "== export the trained model to ONNX (parity-checked against torch) and run it with ONNX Runtime"
$NN export specs/cnn_digits.yaml --weights "$OUT/train/cnn_digits/best_model.safetensors" -o "$OUT/cnn_digits.onnx" | tail -n 3
.venv/bin/python scripts/demo_ort_eval.py "$OUT/cnn_digits.onnx"
echo "demo finished: outputs in $OUT/"
