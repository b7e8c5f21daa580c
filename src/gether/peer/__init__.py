"""Peer-to-peer: replicas that listen and dial each other, with no server."""

from gether.peer.peer import Peer

__all__ = ["Peer"]
