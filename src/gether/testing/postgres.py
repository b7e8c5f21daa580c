"""A throwaway PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` in a
temporary directory, listening on a free loopback port, removed afterwards::

    with PostgresCluster() as cluster:
        url = cluster.create_database("test_1")
        ...
        cluster.stop("immediate")   # a crash
        cluster.start()             # recovery

The binaries are looked up in ``/usr/lib/postgresql/*/bin`` (newest first),
then on ``PATH``; ``PostgresNotFoundError`` says when there are none.
PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user if there is one, else as ``nobody``. The server keeps
``fsync=on`` (crash tests rely on it; the crash recovery flushes the data
directory with one ``syncfs`` rather than a ``fsync`` per file, which is as
safe and much quicker on a busy disk) and trusts every connection, which only
loopback and its own socket directory can open. The superuser is ``gether``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

SUPERUSER = "gether"
SERVER_USERS = ("postgres", "nobody")
START_ATTEMPTS = 3
TIMEOUT = 120  # seconds for initdb, or for a start with crash recovery


class ClusterError(Exception):
    """The test cluster could not be set up, started or stopped."""


class PostgresNotFoundError(ClusterError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""

    def release(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=release, reverse=True)
    found = shutil.which("initdb")
    if found is not None:
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) are neither in "
        "/usr/lib/postgresql/*/bin nor on PATH; install them, e.g. "
        "`apt-get install postgresql`"
    )


def server_account() -> tuple[int, int] | None:
    """The (uid, gid) the server must run as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise ClusterError(f"running as root and there is no {' or '.join(SERVER_USERS)} user")


def reachable_by(path: Path, uid: int) -> bool:
    """Whether the user ``uid`` may pass through every directory above ``path``."""
    for directory in path.resolve().parents:
        mode = directory.stat()
        if mode.st_uid != uid and not mode.st_mode & stat.S_IXOTH:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresCluster:
    """One PostgreSQL cluster in a temporary directory (see the module doc)."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else find_bin_dir()
        self.account = server_account()
        self.root: Path | None = None
        self.port = 0

    # -- paths ------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def log_file(self) -> Path:
        return self._root() / "server.log"

    def _root(self) -> Path:
        if self.root is None:
            raise ClusterError("this cluster was never started (or was removed)")
        return self.root

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster on first use, and start the server if it is down."""
        if self.root is None:
            self._initdb()
        elif self.running:
            return
        for _ in range(START_ATTEMPTS):
            if self._pg_ctl("start", "-w", "-t", str(TIMEOUT), "-l", str(self.log_file)) == 0:
                return
            if not self._port_taken():
                break
            self._configure(free_port())  # somebody took the port before the first start
        raise ClusterError(f"PostgreSQL did not start:\n{self._log_tail()}")

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server; ``immediate`` kills it as a crash would (recovery on
        the next start)."""
        if self.root is None or not self.running:
            return
        if self._pg_ctl("stop", "-w", "-t", str(TIMEOUT), "-m", mode) != 0:
            raise ClusterError(f"PostgreSQL did not stop:\n{self._log_tail()}")

    @property
    def running(self) -> bool:
        return self.root is not None and self._pg_ctl("status") == 0

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        if self.root is None:
            return
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    # -- databases ------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing its connections (keeps the cluster small:
        a crash recovery syncs every file of it)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- helpers ----------------------------------------------------------------------

    def _initdb(self) -> None:
        base = Path(tempfile.gettempdir())
        if self.account is not None and not reachable_by(base / "x", self.account[0]):
            base = Path("/tmp")
        root = Path(tempfile.mkdtemp(prefix="gether-pg-", dir=base))
        self.root = root
        try:
            if self.account is not None:
                os.chown(root, *self.account)
            command = [
                str(self.bin_dir / "initdb"),
                *("-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"),
                *("--encoding=UTF8", "--locale=C", "--no-sync"),
            ]
            if self._run(command) != 0:
                raise ClusterError(f"initdb failed:\n{self._output_tail()}")
            self._configure(free_port())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            self.root = None
            raise

    def _configure(self, port: int) -> None:
        self.port = port
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self._root()}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "shared_buffers": "32MB",
            "max_connections": "100",
            "logging_collector": "off",
            "recovery_init_sync_method": "syncfs",
        }
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# gether.testing.postgres (later lines win)\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl(self, *args: str) -> int:
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _run(self, command: list[str]) -> int:
        """Run a server tool as the server's account; its output goes to a file."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        root = self._root()
        with open(root / "tool.log", "wb") as output:
            if self.account is None:
                done = subprocess.run(
                    command, cwd=root, env=env, stdout=output, stderr=output, timeout=TIMEOUT + 30
                )
            else:
                uid, gid = self.account
                done = subprocess.run(
                    command,
                    cwd=root,
                    env=env,
                    stdout=output,
                    stderr=output,
                    timeout=TIMEOUT + 30,
                    user=uid,
                    group=gid,
                    extra_groups=[],
                )
        return done.returncode

    def _port_taken(self) -> bool:
        log = self._log_tail()
        return "could not bind" in log or "Address already in use" in log

    def _output_tail(self) -> str:
        return _tail(self._root() / "tool.log")

    def _log_tail(self) -> str:
        return _tail(self.log_file) + _tail(self._root() / "tool.log")


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except FileNotFoundError:
        return ""


__all__ = ["ClusterError", "PostgresCluster", "PostgresNotFoundError", "find_bin_dir"]
