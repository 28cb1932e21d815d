"""Cost of a model from its spec, without running it: parameters, FLOPs, memory, time per target.

:mod:`.rules` (what an op's registered FLOP rule sees), :mod:`.model` (per node and graph-wide quantities),
:mod:`.report` (``nngraph cost``'s data and text). The time estimate is the planner's
(:mod:`nngraph.compilers.passes.roofline`): it needs the target profiles and the kernel choice.
"""
