"""The sync server: documents hosted on an ``EventStore``, reached over
WebSocket (an ASGI application) or raw TCP, all speaking ``gether.sync``."""

from gether.server.asgi import GetherApp
from gether.server.hub import DocumentHub, HubConfig
from gether.server.tcp import serve_tcp

__all__ = ["DocumentHub", "GetherApp", "HubConfig", "serve_tcp"]
