"""``python -m gether`` runs the command line."""

from gether.cli.main import main

if __name__ == "__main__":  # not when a worker process (snapshots) imports it again
    main()
