"""Test accuracy of an exported digits classifier run by ONNX Runtime (the demo's quality figure).

Usage: python scripts/demo_ort_eval.py MODEL.onnx [--seed S]
The test split is the trainer's own (builtin digits, val 0.1, test 0.2, the run's seed).
"""

import argparse

import numpy as np
import onnxruntime as ort

from nngraph.compilers.train.data.builtin import digits

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

data = digits(val=0.1, test=0.2, seed=args.seed)
idx = data.splits["test"]
images = data.fields["x"][idx].numpy().reshape(-1, 1, 8, 8).astype(np.float32)
labels = data.fields["y"][idx].numpy()
session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
logits = session.run(None, {name: images})[0]
accuracy = float((logits.argmax(axis=1) == labels).mean())
print(f"ONNX Runtime test accuracy on {len(labels)} held-out digits: {accuracy:.1%}")
