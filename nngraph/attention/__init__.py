"""Attention, resolved once in the front end: layout, masks, positions, bands.

* :mod:`.layout` — the q/k/v/out projection params and the head layout (heads, kv_heads, head_dim);
* :mod:`.masks` — the mask registry (predicates plus every fact a back end needs about a mask);
* :mod:`.positions` — the position-encoding registry (each entry with its back-end hooks);
* :mod:`.bands` — where a mask can be non-zero (banded kernels);
* :mod:`.resolved` — :class:`~.resolved.ResolvedAttention`, the frozen description shape inference
  stores on every attention node and every back end reads (:func:`~.resolved.resolved`).

Torch-free: back ends import this package, never the other way round.
"""
