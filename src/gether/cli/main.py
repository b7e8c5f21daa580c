"""The ``gether`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from gether.cli.demo import run_demo
from gether.cli.inspect import inspect_document, replay_document
from gether.cli.log import show_log
from gether.errors import GetherError
from gether.sync.connection import Limits

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
@click.version_option(package_name="gether")
def main() -> None:
    """Gether: offline-first sync of JSON-like state."""


@main.command()
@click.option("--rounds", default=5, show_default=True, help="Rounds of concurrent edits.")
def demo(rounds: int) -> None:
    """A server and three replica processes edit a todo list, a text and a counter,
    one of them offline, then converge."""
    result = run_demo(Console(), rounds=rounds)
    if not result["identical"]:
        sys.exit(1)


@main.command("demo-replica", hidden=True)
@click.argument("server")
@click.argument("store")
@click.argument("name")
@click.argument("role", type=click.Choice(["seed", "online", "offline", "sync"]))
@click.argument("rounds", type=int)
def demo_replica(server: str, store: str, name: str, role: str, rounds: int) -> None:
    """One replica of ``gether demo`` (run in its own process)."""
    from gether.cli.demo import run_replica

    run_replica(server, store, name, role, rounds)


def _guarded(action: Callable[[], None]) -> None:
    """Gether errors become a one-line message and exit status 1, not a traceback."""
    try:
        action()
    except GetherError as exc:
        raise click.ClickException(f"[{exc.code}] {exc}") from exc


@main.command()
@click.argument("where", nargs=-1, required=True, metavar="[URL] DOC_ID")
@click.option("--store", "store_url", help="The store's URL (instead of the URL argument).")
@click.option("--limit", type=int, default=None, help="Show only the newest N rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
def log(where: tuple[str, ...], store_url: str | None, limit: int | None, as_json: bool) -> None:
    """Who (key id, token subject) did what to a document, when, and whether
    the server accepted it; oldest first."""
    if len(where) != (1 if store_url else 2):
        raise click.UsageError("give URL DOC_ID, or --store URL DOC_ID")
    url, doc_id = (store_url, where[0]) if store_url else where
    _guarded(lambda: show_log(Console(stderr=as_json), url, doc_id, limit, as_json))


@main.command()
@click.argument("url")
@click.argument("doc_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def inspect(url: str, doc_id: str, as_json: bool) -> None:
    """The current state of a document, its version, event count and size."""
    _guarded(lambda: inspect_document(Console(stderr=as_json), url, doc_id, as_json))


@main.command()
@click.argument("url")
@click.argument("doc_id")
@click.option(
    "--at", "at", required=True, help="A version (alice@3,bob@5), or N: the log's first N events."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def replay(url: str, doc_id: str, at: str, as_json: bool) -> None:
    """The state of a document as of a version."""
    _guarded(lambda: replay_document(Console(stderr=as_json), url, doc_id, at, as_json))


@main.command()
@click.argument("target")
def schema(target: str) -> None:
    """Print the JSON Schema of a typed model: TARGET is module:Class (a dataclass)."""
    from gether.cli.schema import schema_json

    def show() -> None:
        click.echo(schema_json(target))

    _guarded(show)


@main.group()
def keys() -> None:
    """Ed25519 identities (a replica signs its events with one) and document
    keys (they seal x-encrypt fields)."""


@keys.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    help="Folder for NAME.key, NAME.pub.",
)
def keys_new(name: str, directory: str) -> None:
    """Create NAME.key (private, mode 0600) and NAME.pub; print the key id."""
    from gether.keys import new_key_pair

    def create() -> None:
        made = new_key_pair(name, directory)
        click.echo(made.key_id)
        click.echo(f"private key: {made.private}\npublic key:  {made.public}", err=True)

    _guarded(create)


@keys.command("document")
@click.argument("doc_id")
@click.argument("path", type=click.Path(dir_okay=False))
def keys_document(doc_id: str, path: str) -> None:
    """Create PATH (mode 0600): a key for the x-encrypt fields of DOC_ID, to
    share with the replicas that may read them; print its key id."""
    from gether.keys import new_document_key

    def create() -> None:
        made = new_document_key(doc_id, path)
        click.echo(made.key_id.hex())
        click.echo(f"document key for {doc_id!r}: {path}", err=True)

    _guarded(create)


_SECURITY_OPTIONS = [
    click.option("--jwt-secret", type=click.Path(dir_okay=False), help="File: an HS256 secret."),
    click.option(
        "--jwt-public-key",
        type=click.Path(dir_okay=False),
        help="File: an Ed25519 PEM key (EdDSA).",
    ),
    click.option("--jwt-audience", help="The aud claim tokens must carry (required with JWTs)."),
    click.option("--jwt-issuer", help="The iss claim tokens must carry, if any."),
    click.option(
        "--psk-file",
        type=click.Path(dir_okay=False),
        help="File: subject:secret per line (devices).",
    ),
    click.option(
        "--tls-cert", type=click.Path(dir_okay=False), help="File: the PEM certificate chain."
    ),
    click.option("--tls-key", type=click.Path(dir_okay=False), help="File: its PEM private key."),
    click.option(
        "--tls-client-ca",
        type=click.Path(dir_okay=False),
        help="File: require client certificates signed by this CA (mutual TLS).",
    ),
    click.option(
        "--hello-timeout",
        default=5.0,
        show_default=True,
        help="Seconds a connection has to say hello and authenticate.",
    ),
    click.option(
        "--messages-per-second",
        default=Limits().messages_per_second,
        show_default=True,
        help="Frames a connection may send per second (bursts of 10x); over it, it is closed.",
    ),
    click.option(
        "--bytes-per-second",
        default=Limits().bytes_per_second,
        show_default=True,
        help="Bytes a connection may send per second (bursts of 64 MiB); over it, it is closed.",
    ),
    click.option(
        "--max-queued-bytes",
        default=Limits().max_queued_bytes,
        show_default=True,
        help="Bytes waiting to be sent to a connection before it is cut off as too slow.",
    ),
]


def _security_options(command: F) -> F:
    """The authentication and TLS options of ``serve`` and ``peer``."""
    for option in reversed(_SECURITY_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.option(
    "--store",
    "store_url",
    default="sqlite:///gether.db",
    show_default=True,
    help="Where events live: sqlite:///path.db, postgresql://..., memory://name.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="WebSocket (ASGI) port.")
@click.option("--tcp-port", type=int, default=None, help="Also listen for raw TCP here.")
@click.option(
    "--snapshot-every",
    default=1000,
    show_default=True,
    help="Store a snapshot of a document every N new events.",
)
@click.option(
    "--coalesce",
    default=0.0,
    show_default=True,
    help="Seconds a document gathers new events at least before sending them, packed "
    "once, to all its subscribers (longer with many subscribers).",
)
@click.option(
    "--unsigned",
    multiple=True,
    metavar="PATTERN",
    help="Host documents whose id matches this glob without per-event signatures (repeatable).",
)
@click.option(
    "--authorize",
    is_flag=True,
    help="Connections read and write only as their roles claim allows (reader, writer:/path, "
    "admin@doc-glob, relay) and push only events of the keys their keys claim names.",
)
@click.option("--no-audit", is_flag=True, help="Keep no audit record of received events.")
@_security_options
def serve(
    store_url: str,
    host: str,
    port: int,
    tcp_port: int | None,
    snapshot_every: int,
    coalesce: float,
    unsigned: tuple[str, ...],
    authorize: bool,
    no_audit: bool,
    **security: object,
) -> None:
    """Run a sync server: WebSocket on --port, raw TCP on --tcp-port. With
    --tls-cert/--tls-key they are wss:// and tls://; with --jwt-* or
    --psk-file (or --tls-client-ca alone) every connection authenticates."""
    from gether.cli import serving
    from gether.cli.security import SecurityOptions

    _guarded(
        lambda: serving.run(
            serving.serve(
                store_url,
                host,
                port,
                tcp_port,
                snapshot_every,
                coalesce,
                SecurityOptions(**security),  # type: ignore[arg-type]
                unsigned,
                authorize=authorize,
                audit=not no_audit,
            )
        )
    )


@main.command()
@click.option(
    "--store",
    "store_url",
    default="sqlite:///peer.db",
    show_default=True,
    help="This peer's own store.",
)
@click.option("--id", "peer_id", default="peer", show_default=True, help="A name for logs.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="WebSocket port.")
@click.option("--tcp-port", default=8766, show_default=True, help="TCP port.")
@click.option("--link", "links", multiple=True, help="Another peer to dial (ws:// or tcp://).")
@click.option("--doc", "docs", multiple=True, help="A document to hold and sync.")
@click.option("--anti-entropy", default=5.0, show_default=True, help="Seconds between pings.")
@_security_options
@click.option(
    "--token-file", type=click.Path(dir_okay=False), help="File: the token we send when dialling."
)
@click.option(
    "--tls-ca", type=click.Path(dir_okay=False), help="File: the CA to trust when dialling."
)
def peer(
    store_url: str, peer_id: str, host: str, port: int, tcp_port: int,
    links: tuple[str, ...], docs: tuple[str, ...], anti_entropy: float,
    token_file: str | None, tls_ca: str | None, **security: Any,
) -> None:  # fmt: skip
    """Run a peer: listen, dial other peers, sync every document with all of them.
    The security options check who dials us, as for ``serve``; --token-file and
    --tls-ca (with --tls-cert/--tls-key as our client certificate) are for dialling."""
    from gether.cli import serving
    from gether.cli.security import SecurityOptions

    options = SecurityOptions(**security, token_file=token_file, tls_ca=tls_ca)
    _guarded(
        lambda: serving.run(
            serving.peer(store_url, peer_id, host, port, tcp_port, links, docs, anti_entropy,
                         options)
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
