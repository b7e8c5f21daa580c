"""Real server processes for tests (see ``gether.server.process``)."""

from gether.server.process import ServerProcess, free_port, wait_for_port

__all__ = ["ServerProcess", "free_port", "wait_for_port"]
