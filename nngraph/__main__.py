"""``python -m nngraph`` runs the CLI."""

from cli import main

main()
