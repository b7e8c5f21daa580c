"""A server in its own process with the given ``Limits``, for the resource
test (its memory is measured apart from the clients'): prints its URLs, logs
session closings to stderr, serves until its stdin closes.

    python limits_server.py STORE_URL '{"max_queued_bytes": 262144}'
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from gether.server.hub import HubConfig
from gether.server.serve import start_server
from gether.sync.connection import Limits


async def main(store_url: str, limits: dict[str, float]) -> None:
    server = await start_server(
        store_url,
        port=0,
        tcp_port=0,
        config=HubConfig(limits=Limits(**limits)),  # type: ignore[arg-type]
        handle_signals=False,
    )
    print(server.ws_url, server.tcp_url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gether.server.session").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
