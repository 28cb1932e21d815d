"""The ``nngraph`` command line, for a source checkout: ``python cli.py ARGS`` = ``nngraph ARGS``.

The typer app lives in :mod:`nngraph.cli` so that an installed nngraph puts nothing generic
(``cli``, ``compilers``) at the top level of site-packages; this file is not installed.
"""

from nngraph.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
