"""The sync server: documents hosted on an ``EventStore``, reached over
WebSocket (an ASGI application) or raw TCP, all speaking ``gether.sync``."""

from gether.server.asgi import GetherApp
from gether.server.authz import Authorization
from gether.server.hub import DocumentHub, HubConfig
from gether.server.serve import GetherServer, start_server
from gether.server.tcp import TCPServer

__all__ = [
    "Authorization",
    "DocumentHub",
    "GetherApp",
    "GetherServer",
    "HubConfig",
    "TCPServer",
    "start_server",
]
