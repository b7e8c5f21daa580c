"""Byte channels the sync protocol travels on (asyncio edges)."""
