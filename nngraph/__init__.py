"""nngraph: declarative, graph-based neural networks.

The front end (this package) never imports torch or onnx::

    from nngraph import load_spec
    graph = load_spec("specs/gpt2_small.yaml", overrides=["layers=2"])
    graph.total_params
"""

from .errors import Diagnostic, SourcePos, SpecError
from .ir import Graph, Node, Ref
from .spec import check_spec, load_spec

__version__ = "0.1.0"

__all__ = ["Diagnostic", "Graph", "Node", "Ref", "SourcePos", "SpecError", "check_spec", "load_spec", "__version__"]
