"""Spec loading: YAML -> vars, imports, blocks -> expanded, validated IR."""

from .document import check_spec, load_spec

__all__ = ["check_spec", "load_spec"]
