"""A server in its own process, as deployed: ``gether serve`` in a subprocess on
free loopback ports, started and stopped with signals (tests, the demo)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gether


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class ServerProcess:
    """``gether serve --store URL`` in a subprocess, WebSocket and TCP."""

    def __init__(self, store_url: str, port: int | None = None, tcp_port: int | None = None,
                 extra: list[str] | None = None) -> None:  # fmt: skip
        self.store_url = store_url
        self.port = port or free_port()
        self.tcp_port = tcp_port or free_port()
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr = ""

    @property
    def tls(self) -> bool:
        return "--tls-cert" in self.extra

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    @property
    def tcp_url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.tcp_port}"

    def start(self) -> ServerProcess:
        src = str(Path(gether.__file__).parents[1])
        env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gether", "serve", "--store", self.store_url,
             "--port", str(self.port), "--tcp-port", str(self.tcp_port), *self.extra],
            env=env,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_for_port(self.port)
            wait_for_port(self.tcp_port)
        except TimeoutError as exc:
            self.kill()
            raise TimeoutError(f"gether serve did not start: {self.stderr[-2000:]}") from exc
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait: the exit status of a graceful shutdown is 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._reap()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reap()

    def _reap(self) -> None:
        stream = self.process.stderr if self.process is not None else None
        if stream is not None and not stream.closed:
            self.stderr = stream.read().decode(errors="replace")
            stream.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
