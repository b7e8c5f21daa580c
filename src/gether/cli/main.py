"""The ``gether`` command line."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from gether.cli.demo import run_demo


@click.group()
@click.version_option(package_name="gether")
def main() -> None:
    """Gether: offline-first sync of JSON-like state."""


@main.command()
@click.option("--rounds", default=5, show_default=True, help="Rounds of concurrent edits.")
def demo(rounds: int) -> None:
    """Three replicas edit a todo list, a text and a counter, one offline, then converge."""
    result = run_demo(Console(), rounds=rounds)
    if not result["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
