"""What a saved run holds, read by the trainer and by the exporters alike.

* :mod:`.checkpoint`: the checkpoint file format (safetensors + a JSON state, a manifest with digests,
  atomic writes, verified discovery and pruning);
* :mod:`.ckstate`: checks of the state fields a checkpoint carries (counters, optimizer state, resumability);
* :mod:`.lora`: LoRA adapters on linear layers (applied for training, merged for export).

Below both compilers/train and compilers/onnx, so exporting a training checkpoint does not import the trainer.
"""
