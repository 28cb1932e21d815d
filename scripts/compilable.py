"""Print the specs (from the arguments) whose every op has a torch implementation; report the others on stderr."""

import sys

from nngraph.compilers.torch import missing_ops
from nngraph import load_spec

for path in sys.argv[1:]:
    missing = missing_ops(load_spec(path))
    if missing:
        print(f"not compilable yet: {path} (no torch implementation of {', '.join(missing)})", file=sys.stderr)
    else:
        print(path)
