"""A throwaway PostgreSQL cluster on 127.0.0.1, for the load benchmark and the store tests.

It uses the server binaries of Debian's ``postgresql`` package (``make test`` installs it when
missing). ``initdb`` refuses to run as root, so as root every server command runs as the
``postgres`` user that the package creates. The cluster lives in a temporary directory, on a
free port, with trust authentication on the loopback only, and is deleted on :meth:`stop`.
A cluster that cannot start raises :class:`PostgresUnavailable` with the reason and the log:
callers fail loudly, they never skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_pg_bin"]

_INSTALL = "install Debian's package: apt-get install -y postgresql (make test does this)"


class PostgresUnavailable(RuntimeError):
    """The throwaway PostgreSQL cluster could not be set up or started."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest installed major version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {_INSTALL}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; :meth:`stop` removes it all.

    Example:
        >>> with PostgresCluster() as pg:  # doctest: +SKIP
        ...     url = pg.create_database()  # postgresql+psycopg://datashunt@127.0.0.1:PORT/t_...
    """

    user = "datashunt"

    def __init__(self, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="datashunt-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable(
                    f"running as root, and initdb refuses root, but there is no 'postgres' "
                    f"user to run it as: {_INSTALL}"
                ) from exc
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            out = getattr(exc, "stdout", "") or ""
            err = getattr(exc, "stderr", "") or ""
            raise PostgresUnavailable(
                f"`{' '.join(cmd)}` failed: {exc}\n{out}\n{err}\n{self.log_tail()}"
            ) from exc

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log (for error messages)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "server log:\n" + "\n".join(text.splitlines()[-lines:])

    def start(self) -> PostgresCluster:
        """Create the cluster on first use, then start the server and wait until it answers."""
        if not (self.data / "PG_VERSION").is_file():
            self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data),
                "-U", self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )  # fmt: skip
        # fsync off: a test cluster is thrown away, and killing the server (not the machine)
        # loses nothing that the OS has been handed.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -F -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.log),
            "-o", options,
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        return self

    def kill(self) -> None:
        """Stop the server the hard way (``-m immediate``: no checkpoint, like a crash)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        """Stop the server if it runs and delete the cluster directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):  # already gone: the directory goes
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh random name by default) and return its URL."""
        import sqlalchemy as sa

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
