"""``python -m gether`` runs the command line."""

from gether.cli.main import main

main()
