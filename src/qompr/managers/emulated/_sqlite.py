# SPDX-License-Identifier: MIT
"""The SQLite store: the state in a file (WAL) that several processes share safely.

* **One transaction per command.**  ``BEGIN IMMEDIATE`` takes SQLite's write lock, the state
  is re-read if another connection (another process) changed it since our last look (a
  per-LU ``version`` counter), the engine decides, the changes are written, ``COMMIT``.  Only
  then is the in-memory copy updated and the result returned, so an acknowledged command is
  on disk and a ``kill -9`` at any moment leaves either the state before a command or the
  state after it (WAL journal; ``synchronous=FULL`` by default also survives power loss).
* **Power cycles are explicit.**  Opening the file joins the state as it is, whatever
  processes came and went: a daemon restarted by its supervisor finds its initiators'
  registrations where they were.  :meth:`SqliteStore.power_on` plays a power cycle (SPC-4
  §5.7.5) for every process sharing the file; with ``power_on=True`` (the manager's
  ``start=power-cycle``) the first process to open the file plays one, told apart by an
  ``flock`` on ``FILE.lock`` that every serving process holds shared.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import threading
from typing import Final

from qompr.managers.emulated._engine import Outcome
from qompr.managers.emulated._state import KEEP
from qompr.managers.emulated._state import POWER_ON_OCCURRED
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import Registration
from qompr.managers.emulated._state import Reservation
from qompr.managers.emulated._state import StateSnapshot
from qompr.managers.emulated._store import Decide
from qompr.managers.emulated._store import StateFileError
from qompr.scsi import Nexus
from qompr.scsi import PrType
from qompr.scsi import SenseCode
from qompr.scsi import TransportID

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

#: Version of the state-file layout (``PRAGMA user_version``).
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS lu (
    name          TEXT PRIMARY KEY,
    version       INTEGER NOT NULL DEFAULT 0,
    generation    INTEGER NOT NULL DEFAULT 0,
    aptpl         INTEGER NOT NULL DEFAULT 0,
    res_type      INTEGER,
    res_scope     INTEGER NOT NULL DEFAULT 0,
    res_holder    BLOB,
    res_label     TEXT,
    legacy_holder BLOB,
    legacy_label  TEXT,
    next_seq      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS registration (
    lu        TEXT NOT NULL,
    nexus     BLOB NOT NULL,
    label     TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    key       INTEGER NOT NULL,
    all_tg_pt INTEGER NOT NULL,
    aptpl     INTEGER NOT NULL,
    PRIMARY KEY (lu, nexus)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS registration_order ON registration (lu, seq);
CREATE TABLE IF NOT EXISTS unit_attention (
    id        INTEGER PRIMARY KEY,
    lu        TEXT NOT NULL,
    nexus     BLOB NOT NULL,
    label     TEXT NOT NULL,
    sense_key INTEGER NOT NULL,
    asc       INTEGER NOT NULL,
    ascq      INTEGER NOT NULL,
    UNIQUE (lu, nexus, sense_key, asc, ascq)
);
"""

# -- SQLite encoding --------------------------------------------------------------------------

_SIGN: Final = 1 << 63


def _to_sql_key(key: int) -> int:
    """A 64-bit unsigned key as SQLite's signed 64-bit INTEGER."""
    return key - (1 << 64) if key >= _SIGN else key


def _from_sql_key(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


@functools.lru_cache(maxsize=65536)
def _nexus_blob(nexus: Nexus) -> bytes:
    """The stored identity of an I_T nexus: RTPI (2 bytes) then the TransportID."""
    return nexus.target_port.to_bytes(2, "big") + nexus.transport_id.to_bytes()


@functools.lru_cache(maxsize=65536)
def _blob_nexus(blob: bytes, label: str) -> Nexus:
    tid = TransportID.from_bytes(blob[2:])
    return Nexus(label or tid.identifier, int.from_bytes(blob[:2], "big"), transport_id=tid)


def _optional_nexus(blob: bytes | None, label: str | None) -> Nexus | None:
    return None if blob is None else _blob_nexus(bytes(blob), label or "")


class SqliteStore:
    """State in an SQLite file (WAL), shared safely by several processes.

    :param path: the state file; created if missing.
    :param synchronous: ``"full"`` (fsync at every commit: an acknowledged command survives
        power loss) or ``"normal"`` (survives a crash of the process, not of the machine).
    :param power_on: play a power cycle if this is the first process to open the file
        (no other process serves from it).  By default the state is joined as it is.
    :param join: take the users' shared lock (``FILE.lock``), as a serving process does, so
        that a later ``power_on=True`` opener knows it is not alone.  ``False`` is for
        inspection and administration (``qompr emulated``).
    :param timeout: how long to wait for another process's transaction, in seconds.
    :raises StateFileError: if the file cannot be opened as a state file.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        power_on: bool = False,
        join: bool = True,
        timeout: float = 30.0,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        self.path = path
        self._lock = threading.Lock()
        self._cache: dict[str, LUState] = {}
        self._versions: dict[str, int] = {}
        self._next_seq: dict[str, int] = {}
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateFileError(f"Could not open PR state file '{path}': {exc}") from exc
        self._conn = conn
        try:
            self._setup(conn, synchronous)
            if join or power_on:
                self._join(path, power_on=power_on)
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StateFileError(f"Could not open PR state file '{path}': {exc}") from exc
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------

    @staticmethod
    def _setup(conn: sqlite3.Connection, synchronous: str) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StateFileError(
                    f"PR state file layout {version} is not supported (expected {SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _join(self, path: str, *, power_on: bool) -> None:
        """Take a shared lock on ``FILE.lock``; with *power_on* the first process plays a
        power cycle (holding the lock exclusively meanwhile)."""
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock_fd = fd
        if not power_on:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_SH)  # others run: wait for any power on, then join
            return
        self._power_on(None)
        fcntl.flock(fd, fcntl.LOCK_SH)

    def _power_on(self, lu: str | None) -> None:
        # SPC-4 §5.7.5 / spc4-pr.md §2.4, for *lu* or every LU at once: what LUState.power_on
        # does, in SQL.  The nexuses to tell are read before anything is dropped.
        where, args = ("", ()) if lu is None else (" WHERE lu = ?", (lu,))
        named = "" if lu is None else " AND name = ?"
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            known = conn.execute(
                f"SELECT lu, nexus, label FROM registration{where}"
                f" UNION SELECT name, res_holder, res_label FROM lu"
                f" WHERE res_holder IS NOT NULL{named}"
                f" UNION SELECT name, legacy_holder, legacy_label FROM lu"
                f" WHERE legacy_holder IS NOT NULL{named}"
                f" UNION SELECT lu, nexus, label FROM unit_attention{where}",
                args * 4,
            ).fetchall()
            conn.execute(f"DELETE FROM unit_attention{where}", args)
            conn.execute(
                "DELETE FROM registration WHERE lu IN (SELECT name FROM lu WHERE aptpl = 0"
                f"{named})",
                args,
            )
            conn.execute(
                "UPDATE lu SET res_type = NULL, res_holder = NULL, res_label = NULL"
                f" WHERE aptpl = 0{named}",
                args,
            )
            conn.execute(
                "UPDATE lu SET generation = 0, legacy_holder = NULL, legacy_label = NULL,"
                f" version = version + 1{' WHERE name = ?' if lu is not None else ''}",
                args,
            )
            code = POWER_ON_OCCURRED
            conn.executemany(
                "INSERT OR IGNORE INTO unit_attention (lu, nexus, label, sense_key, asc, ascq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                sorted(
                    (name, blob, label or "", int(code.key), code.asc, code.ascq)
                    for name, blob, label in known
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if lu is None:
            self._cache.clear()
            self._versions.clear()
        else:
            self._cache.pop(lu, None)
            self._versions.pop(lu, None)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateFileError(f"PR state file '{self.path}' is closed")
        return self._conn

    # -- reading -------------------------------------------------------------------------

    def _load(self, conn: sqlite3.Connection, lu: str) -> LUState:
        row = conn.execute(
            "SELECT version, generation, aptpl, res_type, res_scope, res_holder, res_label,"
            " legacy_holder, legacy_label, next_seq FROM lu WHERE name = ?",
            (lu,),
        ).fetchone()
        if row is None:
            conn.execute("INSERT INTO lu (name) VALUES (?)", (lu,))
            self._versions[lu] = 0
            self._next_seq[lu] = 0
            state = self._cache[lu] = LUState()
            return state
        (version, generation, aptpl, res_type, res_scope, holder, holder_label, legacy,
         legacy_label, next_seq) = row  # fmt: skip
        registrations = {
            _blob_nexus(bytes(blob), label): Registration(
                _from_sql_key(key), all_tg_pt=bool(all_tg_pt), aptpl=bool(reg_aptpl)
            )
            for blob, label, key, all_tg_pt, reg_aptpl in conn.execute(
                "SELECT nexus, label, key, all_tg_pt, aptpl FROM registration"
                " WHERE lu = ? ORDER BY seq",
                (lu,),
            )
        }
        unit_attentions: dict[Nexus, list[SenseCode]] = {}
        for blob, label, key, asc, ascq in conn.execute(
            "SELECT nexus, label, sense_key, asc, ascq FROM unit_attention"
            " WHERE lu = ? ORDER BY id",
            (lu,),
        ):
            nexus = _blob_nexus(bytes(blob), label)
            unit_attentions.setdefault(nexus, []).append(SenseCode(key, asc, ascq))
        holder_nexus = _optional_nexus(holder, holder_label)
        reservation = None
        if res_type is not None and holder_nexus is not None:
            reservation = Reservation(PrType(res_type), holder_nexus, scope=res_scope)
        state = LUState(
            generation=generation,
            registrations=registrations,
            reservation=reservation,
            aptpl=bool(aptpl),
            legacy_holder=_optional_nexus(legacy, legacy_label),
            unit_attentions=unit_attentions,
        )
        self._cache[lu] = state
        self._versions[lu] = version
        self._next_seq[lu] = next_seq
        return state

    def _current(self, conn: sqlite3.Connection, lu: str) -> LUState:
        """The state of *lu*, re-read if another connection changed it (in a transaction)."""
        row = conn.execute("SELECT version FROM lu WHERE name = ?", (lu,)).fetchone()
        state = self._cache.get(lu)
        if state is None or row is None or row[0] != self._versions.get(lu):
            return self._load(conn, lu)
        return state

    # -- writing -------------------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, lu: str, state: LUState, ch: Changes) -> None:
        """Write *ch* (not yet applied to *state*) in the open transaction."""
        execute = conn.execute
        if ch.consume_ua is not None and ch.consume_all_ua:
            execute(
                "DELETE FROM unit_attention WHERE lu = ? AND nexus = ?",
                (lu, _nexus_blob(ch.consume_ua)),
            )
        elif ch.consume_ua is not None:
            execute(
                "DELETE FROM unit_attention WHERE id = (SELECT id FROM unit_attention"
                " WHERE lu = ? AND nexus = ? ORDER BY id LIMIT 1)",
                (lu, _nexus_blob(ch.consume_ua)),
            )
        if ch.clear:
            execute("DELETE FROM registration WHERE lu = ?", (lu,))
        removed = set(ch.remove)
        for nexus in ch.remove:
            execute("DELETE FROM registration WHERE lu = ? AND nexus = ?", (lu, _nexus_blob(nexus)))
        next_seq = self._next_seq.get(lu, 0)
        for nexus, reg in ch.put:
            values = (_to_sql_key(reg.key), int(reg.all_tg_pt), int(reg.aptpl), nexus.initiator)
            if not ch.clear and nexus not in removed and nexus in state.registrations:
                execute(
                    "UPDATE registration SET key = ?, all_tg_pt = ?, aptpl = ?, label = ?"
                    " WHERE lu = ? AND nexus = ?",
                    (*values, lu, _nexus_blob(nexus)),
                )
            else:
                execute(
                    "INSERT INTO registration (key, all_tg_pt, aptpl, label, lu, nexus, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*values, lu, _nexus_blob(nexus), next_seq),
                )
                next_seq += 1
        reservation = state.reservation if ch.reservation is KEEP else ch.reservation
        legacy = state.legacy_holder if ch.legacy_holder is KEEP else ch.legacy_holder
        execute(
            "UPDATE lu SET version = version + 1, generation = ?, aptpl = ?, res_type = ?,"
            " res_scope = ?, res_holder = ?, res_label = ?, legacy_holder = ?,"
            " legacy_label = ?, next_seq = ? WHERE name = ?",
            (
                state.generation if ch.generation is None else ch.generation,
                int(state.aptpl if ch.aptpl is None else ch.aptpl),
                None if reservation is None else int(reservation.type),
                0 if reservation is None else reservation.scope,
                None if reservation is None else _nexus_blob(reservation.holder),
                None if reservation is None else reservation.holder.initiator,
                None if legacy is None else _nexus_blob(legacy),
                None if legacy is None else legacy.initiator,
                next_seq,
                lu,
            ),
        )
        for nexus, code in ch.add_ua:
            execute(
                "INSERT OR IGNORE INTO unit_attention (lu, nexus, label, sense_key, asc, ascq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (lu, _nexus_blob(nexus), nexus.initiator, int(code.key), code.asc, code.ascq),
            )
        self._next_seq[lu] = next_seq

    # -- the Store interface ----------------------------------------------------------------

    def transact(self, lu: str, decide: Decide) -> Outcome:
        """Run one command in one SQLite transaction (see the module docstring).

        :raises sqlite3.Error: if the file cannot be read or written; nothing was applied.
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._current(conn, lu)
                outcome = decide(state)
                changes = outcome.changes
                if changes is not None:
                    self._write(conn, lu, state, changes)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._cache.pop(lu, None)  # re-read next time
                raise
            if changes is not None:
                state.apply(changes)
                self._versions[lu] += 1
            return outcome

    def snapshot(self, lu: str) -> StateSnapshot:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                row = conn.execute("SELECT 1 FROM lu WHERE name = ?", (lu,)).fetchone()
                if row is None:
                    return StateSnapshot()
                return self._current(conn, lu).snapshot()
            finally:
                conn.execute("ROLLBACK")

    def logical_units(self) -> list[str]:
        with self._lock:
            rows = self._connection().execute("SELECT name FROM lu ORDER BY name").fetchall()
            return [name for (name,) in rows]

    def power_on(self, lu: str | None = None) -> None:
        """Play a power cycle of *lu* (or of every logical unit) now, for every process
        sharing the file."""
        with self._lock:
            self._power_on(lu)

    def close(self) -> None:
        """Close the database and drop the shared lock (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._cache.clear()
            self._versions.clear()
