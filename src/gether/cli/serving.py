"""``gether serve``: run the server until SIGTERM or SIGINT, then shut down
gracefully (going-away to every client, flush, close the store) and exit 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from gether.cli.security import SecurityOptions
from gether.server.authz import Authorization
from gether.server.hub import HubConfig
from gether.server.serve import start_server


async def serve(
    store_url: str,
    host: str,
    port: int,
    tcp_port: int | None,
    snapshot_every: int,
    coalesce: float,
    security: SecurityOptions | None = None,
    unsigned: tuple[str, ...] = (),
    *,
    authorize: bool = False,
    audit: bool = True,
) -> None:
    security = security or SecurityOptions()
    authenticator = security.authenticator()
    if authenticator is None and host not in ("127.0.0.1", "::1", "localhost"):
        print("warning: anyone who can reach this server may connect", file=sys.stderr)
    limits = security.limits()
    server = await start_server(
        store_url,
        host,
        port,
        tcp_port,
        HubConfig(
            snapshot_every=snapshot_every,
            coalesce=coalesce,
            limits=limits,
            unsigned=unsigned,
            authorization=Authorization() if authorize else None,
            audit=audit,
        ),
        handle_signals=False,
        authenticator=authenticator,
        tls=security.tls(),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server.web, "should_exit", True))
    where = server.ws_url + (f" and {server.tcp_url}" if server.tcp_url else "")
    print(f"gether serving {store_url} on {where}", file=sys.stderr, flush=True)
    await server.wait()
    print("gether server stopped", file=sys.stderr, flush=True)


async def peer(
    store_url: str,
    peer_id: str,
    host: str,
    port: int,
    tcp_port: int,
    links: tuple[str, ...],
    docs: tuple[str, ...],
    anti_entropy: float,
    security: SecurityOptions | None = None,
) -> None:
    from gether.peer import Peer

    security = security or SecurityOptions()
    peer = await Peer(
        store_url,
        peer_id,
        anti_entropy=anti_entropy,
        authenticator=security.authenticator(),
        token=security.token(),
        tls=security.tls(),
        ssl_context=security.dial_context(),
        limits=security.limits(),
    ).start(host, port, tcp_port)
    for doc_id in docs:
        await peer.document(doc_id)
    for url in links:
        peer.link(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"gether peer {peer_id} on {peer.ws_url} and {peer.tcp_url}", file=sys.stderr, flush=True)
    await stop.wait()
    await peer.stop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server or peer coroutine with warnings logged to stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_collector()
    asyncio.run(main)


def tune_collector() -> None:
    """The garbage collector of a server process. What is loaded so far
    (modules, configuration: some 40,000 objects) lives as long as the
    process: frozen, the collector's full passes, which stop every
    connection while they run, need not walk it each time. And a young
    collection every 50,000 new objects, not 700: under load a batch lives
    a few ms to tens of ms (queued, fanned out), long enough to outlive a
    young collection every few ms and reach the oldest generation, whose
    full passes then ran every few seconds for 50-350 ms (`bench/latency.py`
    at 250 writers: 17 full passes in 25 s; with this, none). Cycles are
    still collected, in bounded batches."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
