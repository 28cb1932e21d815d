"""The ONNX attention kernels' code, one module per kernel, named by the kernel registry's ``emit``.

Each kernel's decision (check, why, preference) is its file in :mod:`nngraph.compilers.kernels`; the class
here (an :class:`~nngraph.compilers.onnx.kernels.base.Emitter`) is imported only when an export uses it:
``forward`` (the attention module's forward while exporting), ``reference`` (the placeholder's value in
torch) and ``emit`` (the ONNX node(s) replacing the placeholder).
"""
