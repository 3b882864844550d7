# SPDX-License-Identifier: MIT
"""A throw-away PostgreSQL cluster for tests: :class:`PostgresCluster`.

It runs the distribution's own server binaries (Debian: package ``postgresql``, binaries in
``/usr/lib/postgresql/VERSION/bin``; or ``$QOMPR_PG_BINDIR``): ``initdb`` makes a cluster in
a fresh temporary directory, ``pg_ctl`` starts, stops and restarts it.  PostgreSQL refuses to
run as root, so when the tests run as root the server runs as the ``postgres`` system user
(made by Debian's package) or, failing that, ``nobody``.

The cluster listens on 127.0.0.1 at a free port and on a Unix socket in its directory, trusts
local connections (a throw-away cluster: no passwords), and keeps the durability a
deployment would have: ``fsync=on``, ``synchronous_commit=on``.  Its superuser and first
database are both named ``qompr``::

    with PostgresCluster.create() as pg:
        uri = pg.uri()                       # postgresql://qompr@127.0.0.1:PORT/qompr
        other = pg.create_database("lu_a")   # a fresh, empty database
        pg.restart(mode="immediate")         # a crash: uncommitted work is lost

Nothing here imports a PostgreSQL driver: the cluster's own ``createdb``/``psql`` do the
little SQL the helper needs, so the kit works whether or not ``qompr[postgresql]`` is
installed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Literal
from typing import Self

from qompr.testing._errors import TestingError

__all__ = [
    "PostgresCluster",
    "PostgresUnavailableError",
    "StopMode",
    "find_postgres_bindir",
]

#: ``pg_ctl -m``: ``smart`` waits for clients, ``fast`` disconnects them (rolling back open
#: transactions), ``immediate`` is a crash (recovery at the next start).
StopMode = Literal["smart", "fast", "immediate"]

_SETTINGS = {
    # Durability as a deployment has it: GOOD after commit means on disk.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # Room for several daemons' connections and the tests' own.
    "max_connections": "200",
    # A small machine runs several of these at once.
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}
_VERSION_DIR = re.compile(r"^\d+$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailableError(TestingError):
    """PostgreSQL's server programs are not installed, or the cluster could not start."""


def find_postgres_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: ``$QOMPR_PG_BINDIR``, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian), else the one holding ``initdb`` on ``$PATH``;
    ``None`` when PostgreSQL's server is not installed."""
    env = os.environ.get("QOMPR_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "pg_ctl").exists() else None
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if _VERSION_DIR.match(p.name)),
            key=lambda p: int(p.name),
            reverse=True,
        )
        for version in versions:
            if (version / "bin" / "pg_ctl").exists():
                return version / "bin"
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as, or ``None`` to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailableError(
        "PostgreSQL cannot run as root and there is no 'postgres' or 'nobody' user"
    )


class PostgresCluster:
    """One throw-away PostgreSQL cluster (use :meth:`create`).

    :param bindir: where ``initdb``/``pg_ctl`` are (see :func:`find_postgres_bindir`).
    :param base: an empty directory the cluster owns (data, socket, log); removed by
        :meth:`close`.
    """

    SUPERUSER = "qompr"
    DATABASE = "qompr"

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.datadir = base / "data"
        self.socket_dir = base / "socket"
        self.logfile = base / "server.log"
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._user = _server_user()
        self._databases = 0

    # -- life cycle --------------------------------------------------------------------

    @classmethod
    def create(cls, bindir: Path | None = None) -> Self:
        """Make a cluster in a new temporary directory, start it and create the ``qompr``
        database.

        :raises PostgresUnavailableError: no PostgreSQL server programs, or the cluster did
            not start (the message holds the server's log).
        """
        found = bindir if bindir is not None else find_postgres_bindir()
        if found is None:
            raise PostgresUnavailableError(
                "PostgreSQL is not installed (no initdb/pg_ctl)",
                hint="Debian: apt-get install postgresql (scripts/run-tests does), "
                "or set QOMPR_PG_BINDIR",
            )
        # /tmp, not a pytest directory: the server's user must reach the data directory.
        base = Path(tempfile.mkdtemp(prefix="qompr-pg-"))
        cluster = cls(found, base)
        try:
            cluster._initdb()
            cluster.start()
            cluster._run("createdb", *cluster._client_args(), cls.DATABASE)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _initdb(self) -> None:
        self.datadir.mkdir(mode=0o700)
        self.socket_dir.mkdir(mode=0o700)
        if self._user is not None:
            for path in (self.base, self.datadir, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.datadir),
            "--username",
            self.SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-instructions",
            # A throw-away cluster: initdb's own files need no fsync (the server's commits
            # still do, fsync=on).
            "--no-sync",
        )
        conf = "".join(f"{key} = {value}\n" for key, value in _SETTINGS.items())
        conf += f"listen_addresses = '{self.host}'\nport = {self.port}\n"
        conf += f"unix_socket_directories = '{self.socket_dir}'\n"
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# qompr.testing.postgres\n" + conf)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start", "--log", str(self.logfile))

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server (see :data:`StopMode`) and wait until it is down."""
        self._pg_ctl("stop", "--mode", mode)

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop the server with *mode* and start it again; ``immediate`` is a crash and a
        recovery: what was committed survives, nothing else."""
        self._pg_ctl("restart", "--mode", mode, "--log", str(self.logfile))

    @property
    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``)."""
        status = self._run("pg_ctl", "status", "--pgdata", str(self.datadir), check=False)
        return status.returncode == 0

    def close(self) -> None:
        """Stop the server (``immediate``: nothing is worth keeping) and remove its files."""
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(
                    "pg_ctl", "stop", "--pgdata", str(self.datadir), "-m", "immediate", check=False
                )
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting ----------------------------------------------------------------------

    def uri(self, database: str | None = None) -> str:
        """A ``postgresql://`` connection URI over TCP to *database* (default ``qompr``)."""
        name = database if database is not None else self.DATABASE
        return f"postgresql://{self.SUPERUSER}@{self.host}:{self.port}/{name}"

    def socket_uri(self, database: str | None = None) -> str:
        """The same over the cluster's Unix socket."""
        name = database if database is not None else self.DATABASE
        return f"postgresql://{self.SUPERUSER}@/{name}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name when *name* is ``None``) and return its
        :meth:`uri`."""
        if name is None:
            self._databases += 1
            name = f"t{os.getpid()}_{self._databases}"
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._run("createdb", *self._client_args(), name)
        return self.uri(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients (``DROP DATABASE ... WITH (FORCE)``)."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run *sql* with ``psql`` and return its unaligned, tuples-only output."""
        name = database if database is not None else self.DATABASE
        done = self._run(
            "psql", *self._client_args(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-c", sql, name,
        )  # fmt: skip
        return done.stdout

    # -- plumbing ------------------------------------------------------------------------

    def _client_args(self) -> tuple[str, ...]:
        return ("-h", str(self.socket_dir), "-p", str(self.port), "-U", self.SUPERUSER)

    def _pg_ctl(self, action: str, *args: str) -> None:
        done = self._run(
            "pg_ctl", action, "--pgdata", str(self.datadir), "--wait", "--timeout", "120",
            *args, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-4000:] if self.logfile.exists() else ""
            raise PostgresUnavailableError(
                f"pg_ctl {action} failed (status {done.returncode})",
                hint=(done.stdout + done.stderr + log).strip() or None,
            )

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        user = self._user
        done = subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user is not None else None,
            group=user.pw_gid if user is not None else None,
            extra_groups=[] if user is not None else None,
            env={**os.environ, "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"},
            timeout=180,
        )
        if check and done.returncode != 0:
            raise PostgresUnavailableError(
                f"{program} failed (status {done.returncode})",
                hint=(done.stdout + done.stderr).strip() or None,
            )
        return done
