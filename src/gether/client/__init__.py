"""Clients: ``connect`` keeps one document in sync with a server."""

from gether.client.session import ClientSession, connect

__all__ = ["ClientSession", "connect"]
