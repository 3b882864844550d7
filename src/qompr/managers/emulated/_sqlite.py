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

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Final
from typing import NamedTuple

import attrs

from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._state import KEEP
from qompr.managers.emulated._state import POWER_ON_OCCURRED
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import Registration
from qompr.managers.emulated._state import Reservation
from qompr.managers.emulated._state import StateSnapshot
from qompr.managers.emulated._store import Decide
from qompr.managers.emulated._store import StateFileError
from qompr.managers.emulated._store import StoreFailureError
from qompr.managers.emulated._store import StoreUnavailableError
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


class _Cached(NamedTuple):
    """A published state: never mutated once in the cache (writers work on copies)."""

    version: int
    state: LUState


@attrs.define(eq=False)
class _Work:
    """A logical unit inside the batch being written: a private copy until COMMIT."""

    version: int
    next_seq: int
    state: LUState


@attrs.define(eq=False)
class _Pending:
    """One command waiting for (or in) a group commit."""

    lu: str
    decide: Decide
    deadline: float
    outcome: EngineOutcome | None = None
    error: BaseException | None = None
    taken: bool = False
    done: bool = False


class _Together(threading.local):
    """One thread's part in :meth:`SqliteStore.reads_together`."""

    def __init__(self) -> None:
        self.inside = False  # in a reads_together() block
        self.looked = False  # a read of that block has looked at data_version


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (and their extended codes): another connection holds a
    lock past our wait.  Anything else is not a matter of waiting."""
    return exc.sqlite_errorcode & 0xFF in (5, 6)


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
    :param timeout: the longest a command waits for the file (another process's write lock,
        this process's queue), in seconds, when :meth:`transact` is given no deadline; past
        it the command fails with :class:`~._store.StoreUnavailableError` and nothing is applied.
    :raises StateFileError: if the file cannot be opened as a state file.

    **Reads** (PR IN, a command that may only report a unit attention) run on their own
    connection without a write transaction: ``PRAGMA data_version`` tells whether any other
    connection committed since the last look, and only then is the logical unit's
    ``version`` compared and, if changed, its state re-read in one read transaction (WAL:
    readers never wait for writers).  A read that finds a unit attention to clear becomes a
    write.  **Writes** are group-committed: the commands that arrive while a transaction is
    being written wait, and the next one to run takes all of them into one ``BEGIN
    IMMEDIATE`` ... ``COMMIT``, each deciding on the state the previous ones left; every one
    is answered only after that COMMIT (so with ``synchronous=full`` only once it is on
    disk), and if the COMMIT fails none of them applied anything.
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
        self.timeout = timeout
        self._cache: dict[str, _Cached] = {}
        self._cache_lock = threading.Lock()
        # The read connection, its last data_version and the LUs checked since.
        self._read_lock = threading.Lock()
        self._data_version = -1
        self._checked: set[str] = set()
        self._together = _Together()
        # The write side: one leader at a time takes the queue into one transaction.
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Pending] = []
        self._leading = False
        self._busy_ms = -1
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect(path, timeout)
            self._rconn = self._connect(path, timeout)
        except sqlite3.Error as exc:
            self.close()
            raise StateFileError(f"Could not open PR state file '{path}': {exc}") from exc
        try:
            self._setup(self._conn, synchronous, timeout)
            self._rconn.execute(f"PRAGMA synchronous={synchronous.upper()}")
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
    def _connect(path: str, timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)

    @staticmethod
    def _setup(conn: sqlite3.Connection, synchronous: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                # Turning a new file to WAL needs it alone, and SQLite answers BUSY at once
                # instead of calling the busy handler: two daemons opening one new file at
                # the same moment (a cluster's first start) must wait for each other here.
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
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
        self._power_on(self._write_connection(), None)
        fcntl.flock(fd, fcntl.LOCK_SH)

    def _write_connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateFileError(f"PR state file '{self.path}' is closed")
        return self._conn

    def _read_connection(self) -> sqlite3.Connection:
        if self._rconn is None:
            raise StateFileError(f"PR state file '{self.path}' is closed")
        return self._rconn

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _load(conn: sqlite3.Connection, lu: str) -> _Work | None:
        """The stored state of *lu* (in the caller's transaction), or ``None`` if it has none."""
        row = conn.execute(
            "SELECT version, generation, aptpl, res_type, res_scope, res_holder, res_label,"
            " legacy_holder, legacy_label, next_seq FROM lu WHERE name = ?",
            (lu,),
        ).fetchone()
        if row is None:
            return None
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
        return _Work(version, next_seq, state)

    def _publish(self, lu: str, version: int, state: LUState) -> None:
        """Make *state* (never to be mutated again) the cached state of *lu*, unless the cache
        already holds a newer one (versions only grow)."""
        with self._cache_lock:
            cached = self._cache.get(lu)
            if cached is None or cached.version < version:
                self._cache[lu] = _Cached(version, state)

    def _read_state(self, lu: str, deadline: float) -> LUState:
        """The committed state of *lu*, without a write transaction (see the class doc)."""
        lock = self._read_lock
        # Uncontended (the daemon's loop reads alone): skip the clock and the timed wait.
        if not lock.acquire(False) and not lock.acquire(
            timeout=max(0.0, deadline - time.monotonic())
        ):
            raise StoreUnavailableError(f"PR state file '{self.path}': no answer in time")
        try:
            conn = self._read_connection()
            together = self._together
            if not (together.inside and together.looked):
                (data_version,) = conn.execute("PRAGMA data_version").fetchone()
                if data_version != self._data_version:
                    self._data_version = data_version
                    self._checked.clear()
                together.looked = together.inside
            cached = self._cache.get(lu)
            if cached is not None and lu in self._checked:
                return cached.state
            row = conn.execute("SELECT version FROM lu WHERE name = ?", (lu,)).fetchone()
            if row is None:
                return LUState()  # nothing stored yet; the first write creates it
            if cached is None or cached.version != row[0]:
                conn.execute("BEGIN")
                try:
                    work = self._load(conn, lu)
                finally:
                    conn.execute("COMMIT")
                if work is None:
                    return LUState()
                self._publish(lu, work.version, work.state)
                cached = _Cached(work.version, work.state)
            self._checked.add(lu)
            return cached.state
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc
        finally:
            lock.release()

    @contextlib.contextmanager
    def reads_together(self) -> Iterator[None]:
        """Reads on this thread inside the block share one look at ``PRAGMA data_version``,
        the first one's, for commands that had all been received when the block was entered
        (:meth:`qompr.managers.PRManager.batch`).  That look comes after each of them was
        sent, so each still sees every commit acknowledged before it was sent; a logical
        unit not checked since is still compared by its ``version``, and this process's own
        writes update the cache as they commit.  It saves two ``fcntl`` calls (the WAL
        read-mark lock) and a statement per read.  Other threads look every time."""
        together = self._together
        if together.inside:  # nested: the outer block began first and decides
            yield
            return
        together.inside = True
        together.looked = False
        try:
            yield
        finally:
            together.inside = False

    # -- writing -------------------------------------------------------------------------

    def _current(self, conn: sqlite3.Connection, lu: str) -> _Work:
        """A private copy of the state of *lu* to write on (inside the write transaction)."""
        row = conn.execute("SELECT version, next_seq FROM lu WHERE name = ?", (lu,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO lu (name) VALUES (?)", (lu,))
            return _Work(0, 0, LUState())
        cached = self._cache.get(lu)
        if cached is not None and cached.version == row[0]:
            return _Work(row[0], row[1], cached.state.copy())
        work = self._load(conn, lu)
        assert work is not None
        return work

    @staticmethod
    def _write(conn: sqlite3.Connection, lu: str, work: _Work, ch: Changes) -> None:
        """Write *ch* (not yet applied to ``work.state``) in the open transaction."""
        state = work.state
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
        next_seq = work.next_seq
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
        work.next_seq = next_seq
        work.version += 1

    def _run_batch(self, batch: list[_Pending]) -> None:
        """One transaction for every command of *batch*; sets each one's outcome or error."""
        conn = self._write_connection()
        wait = max(0.0, min(p.deadline for p in batch) - time.monotonic())
        working: dict[str, _Work] = {}
        try:
            # SQLite's wait for another process's lock: the batch's time left, set only when
            # it moved to another 50 ms step (one statement less per command when idle).
            busy_ms = int(wait * 20) * 50
            if busy_ms != self._busy_ms:
                conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
                self._busy_ms = busy_ms
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            busy = _store_error(self.path, exc)
            for pending in batch:
                pending.error = busy
            return
        try:
            for pending in batch:
                work = working.get(pending.lu)
                if work is None:
                    work = working[pending.lu] = self._current(conn, pending.lu)
                try:
                    outcome = pending.decide(work.state)
                except Exception as exc:  # a bug in one command must not fail the others
                    pending.error = exc
                    continue
                changes = outcome.changes
                if changes is not None:
                    self._write(conn, pending.lu, work, changes)
                    work.state.apply(changes)
                pending.outcome = outcome
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            error = _store_error(self.path, exc) if isinstance(exc, sqlite3.Error) else exc
            for pending in batch:
                pending.outcome = None
                if pending.error is None:
                    pending.error = error
            return
        for lu, work in working.items():
            self._publish(lu, work.version, work.state)

    def _lead(self, batch: list[_Pending]) -> None:
        try:
            self._run_batch(batch)
        finally:
            with self._cond:
                for pending in batch:
                    pending.done = True
                self._leading = False
                self._cond.notify_all()

    def _write_command(self, lu: str, decide: Decide, deadline: float) -> EngineOutcome:
        pending = _Pending(lu, decide, deadline)
        with self._cond:
            self._queue.append(pending)
            while not pending.done:
                if not self._leading:
                    self._leading = True
                    batch, self._queue = self._queue, []
                    for item in batch:
                        item.taken = True
                    break
                if pending.taken:
                    # In the batch being written: its fate is decided at COMMIT, so wait for
                    # it (the leader's own wait is bounded by the earliest deadline).
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._queue.remove(pending)
                    raise StoreUnavailableError(f"PR state file '{self.path}': no answer in time")
                self._cond.wait(remaining)
            else:
                batch = []
        if batch:
            self._lead(batch)
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _exclusive(self, deadline: float) -> None:
        """Become the only writer of this process (for a power cycle), or time out."""
        with self._cond:
            while self._leading:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailableError(f"PR state file '{self.path}': no answer in time")
                self._cond.wait(remaining)
            self._leading = True

    def _release(self) -> None:
        with self._cond:
            self._leading = False
            self._cond.notify_all()

    # -- power cycles ----------------------------------------------------------------------

    @staticmethod
    def _power_on(conn: sqlite3.Connection, lu: str | None) -> None:
        # SPC-4 §5.12.5 / docs/reference/spc4-pr.md §2.4, for *lu* or every LU at once: what
        # LUState.power_on does, in SQL.  The nexuses to tell are read before anything is dropped.
        where, args = ("", ()) if lu is None else (" WHERE lu = ?", (lu,))
        named = "" if lu is None else " AND name = ?"
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

    # -- the Store interface ----------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """False: processes of one host (a file system's locks across hosts are not
        trusted; use PostgreSQL)."""
        return False

    @property
    def cannot_block(self) -> bool:
        """False: a command may wait for the file's lock and for fsync."""
        return False

    def transact(
        self, lu: str, decide: Decide, *, deadline: float | None = None, read_first: bool = False
    ) -> EngineOutcome:
        """Run one command (see the class docstring).

        :param deadline: ``time.monotonic()`` by which to give up waiting (default: now +
            ``timeout``).
        :param read_first: try *decide* on the committed state without a write transaction
            first (PR IN); if it has changes to make, it runs again as a write.
        :raises StoreUnavailableError: the file stayed locked past the deadline; nothing applied.
        :raises StoreFailureError: the file cannot be read or written; nothing was applied.
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        if read_first:
            outcome = decide(self._read_state(lu, deadline))
            if outcome.changes is None:
                return outcome
        return self._write_command(lu, decide, deadline)

    def snapshot(self, lu: str) -> StateSnapshot:
        return self._read_state(lu, time.monotonic() + self.timeout).snapshot()

    def logical_units(self) -> list[str]:
        with self._read_lock:
            rows = self._read_connection().execute("SELECT name FROM lu ORDER BY name")
            return [name for (name,) in rows.fetchall()]

    def power_on(self, lu: str | None = None) -> None:
        """Play a power cycle of *lu* (or of every logical unit) now, for every process
        sharing the file."""
        self._exclusive(time.monotonic() + self.timeout)
        try:
            conn = self._write_connection()
            self._busy_ms = int(self.timeout * 1000)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            try:
                self._power_on(conn, lu)
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc
        finally:
            self._release()

    def close(self) -> None:
        """Close the database and drop the shared lock (idempotent)."""
        with self._cond:
            while self._leading:
                self._cond.wait()
            self._leading = True
        try:
            with self._read_lock:
                for conn in (self._conn, self._rconn):
                    if conn is not None:
                        conn.close()
                self._conn = self._rconn = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            with self._cache_lock:
                self._cache.clear()
        finally:
            self._release()


def _store_error(path: str, exc: sqlite3.Error) -> StoreUnavailableError | StoreFailureError:
    """A busy file is worth retrying; any other SQLite error is a failure of the file."""
    if _is_busy(exc):
        return StoreUnavailableError(f"PR state file '{path}' is locked by another process: {exc}")
    return StoreFailureError(f"PR state file '{path}': {exc}")
