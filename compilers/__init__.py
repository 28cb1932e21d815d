"""Back ends for nngraph graphs.

``nngraph.compilers.torch`` turns a validated :class:`nngraph.ir.Graph` into a
``torch.nn.Module`` whose ``forward`` is generated Python source. Other back
ends (ONNX export, lowering passes, hardware targets) live beside it. Unlike
:mod:`nngraph`, these packages import torch.
"""
