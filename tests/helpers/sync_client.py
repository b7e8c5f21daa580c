"""A client process for the sync crash test: a durable replica that edits and
syncs, printing each committed event (``replica seq``) as it returns.

    python sync_client.py SERVER_URL STORE_URL DOC SEED [sync-only]
"""

from __future__ import annotations

import asyncio
import random
import sys

import gether
from gether.testing.histories import edit


async def main(server: str, store: str, doc_id: str, seed: int, sync_only: bool) -> None:
    rng = random.Random(seed)
    doc = gether.Document.open(store, doc_id)
    async with gether.connect(server, doc_id, doc=doc, backoff=(0.02, 0.2)) as session:
        if sync_only:
            await session.sync()
            print("synced", flush=True)
            return
        while True:
            edit(doc, rng)
            print(doc.replica_id, doc.version[doc.replica_id], flush=True)
            await asyncio.sleep(0.002)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), len(sys.argv) > 5))
