"""``python -m nngraph`` runs the CLI."""

from nngraph.cli import main

main()
