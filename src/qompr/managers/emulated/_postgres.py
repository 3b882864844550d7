# SPDX-License-Identifier: MIT
"""The PostgreSQL store: one state shared by every host (``state=postgresql://...``).

Imported only when a ``postgresql://`` state is used: it needs psycopg 3 (the extra
``qompr[postgresql]``).

* **Layout.**  One row per logical unit in ``qompr.lu``: its name, a ``version`` bumped by
  every committed change, and the whole state as one JSON document (:mod:`._codec`).  The
  schema is qompr's and versioned (``qompr.meta``); ``qompr emulated schema URI [--apply]``
  prints or applies it, and the store creates it only with ``create-schema=on``.
* **Serial per logical unit.**  A command that may change the state runs in a transaction
  that takes the logical unit's row lock (``SELECT ... FOR UPDATE``) before reading it, so
  the commands of every host on one logical unit run one after the other; the commands that
  arrive in this process while a transaction is being written are taken into the next one
  together (group commit), each deciding on the state the previous ones left.  It is
  answered only after ``COMMIT`` returned (with ``synchronous_commit=on``: on disk).
* **Reads take no lock.**  PR IN runs one plain ``SELECT`` (a snapshot of the committed
  state, skipping the document when the cached version is current); a read that finds a unit
  attention to clear runs again as a write.
* **Bounded.**  Connections belong to worker threads; a command waits for its answer only
  until its deadline, so a database that is down, failing over or frozen makes each command
  fail in time with :class:`~._store.StoreUnavailableError` (retryable), never hang.  A
  transaction whose command gave up is rolled back, not committed.  Broken connections are
  replaced on the next command; serialization failures and deadlocks are retried while time
  is left.  When the connection is lost while ``COMMIT`` is in flight, the store reconnects
  and looks for its transaction's token among the last ones the row keeps (``recent`` in
  the document): committed, its answers stand; not committed, it runs again if time is left.
  Such a command (and only such) waits up to one more timeout for that answer rather than
  answer "failed" for what may have taken effect; only when even that is not enough (the
  database still away) is the outcome unknown, and the answer the retryable one.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import Final
from typing import TypeVar

import attrs
import psycopg
from psycopg.types.json import Jsonb

from qompr.managers.emulated._codec import CodecError
from qompr.managers.emulated._codec import state_from_document
from qompr.managers.emulated._codec import state_to_document
from qompr.managers.emulated._open import redact
from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import StateSnapshot
from qompr.managers.emulated._store import Decide
from qompr.managers.emulated._store import StateFileError
from qompr.managers.emulated._store import StoreFailureError
from qompr.managers.emulated._store import StoreUnavailableError

__all__ = ["SCHEMA_VERSION", "PostgresStore", "apply_schema", "redact", "schema_sql"]

#: The version of the tables below (``qompr.meta``, key ``schema_version``).
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = f"""\
-- pr-manager-emulated's persistent-reservation state (qompr), schema version {SCHEMA_VERSION}.
CREATE SCHEMA IF NOT EXISTS qompr;
CREATE TABLE IF NOT EXISTS qompr.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- One row per logical unit: every command on it locks this row (SELECT ... FOR UPDATE).
CREATE TABLE IF NOT EXISTS qompr.lu (
    name    text PRIMARY KEY,                  -- the lu-id (path:..., wwn:...) or lu-name
    version bigint NOT NULL DEFAULT 0,         -- bumped by every committed change
    state   jsonb NOT NULL DEFAULT '{{}}',     -- registrations, reservation, UAs (docs)
    changed timestamptz NOT NULL DEFAULT now()
);
INSERT INTO qompr.meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')
    ON CONFLICT (key) DO NOTHING;
"""

_READ: Final = (
    "SELECT version, CASE WHEN version = %s THEN NULL ELSE state END FROM qompr.lu WHERE name = %s"
)
_LOCK: Final = _READ + " FOR UPDATE"
_CREATE: Final = "INSERT INTO qompr.lu (name) VALUES (%s) ON CONFLICT (name) DO NOTHING"
_UPDATE: Final = "UPDATE qompr.lu SET version = %s, state = %s, changed = now() WHERE name = %s"
_WORKERS: Final = 4
#: How many of the last transactions' tokens a row keeps (to tell, after a connection lost
#: during COMMIT, whether that commit happened).
_RECENT: Final = 32
_TOKENS: Final = itertools.count()
#: A logical unit's version, its state (never mutated) and its last transactions' tokens.
_Cached = tuple[int, LUState, list[str]]
_RETRY_PAUSE: Final = 0.05
#: The first and the longest pause between attempts to reconnect after a cut COMMIT.
_RESOLVE_PAUSE: Final = (0.01, 0.2)
_T = TypeVar("_T")


def schema_sql() -> str:
    """The SQL that creates the schema (idempotent)."""
    return _SCHEMA


def _connect(uri: str, timeout: float) -> psycopg.Connection[Any]:
    ms = max(1000, int(timeout * 1000))
    return psycopg.connect(
        uri,
        autocommit=True,
        # libpq's own bounds: the connection attempt, a server that stops answering (TCP
        # keepalives, unacknowledged data), and the server's work on one statement.
        connect_timeout=max(2, round(timeout)),
        keepalives=1,
        keepalives_idle=max(1, round(timeout)),
        keepalives_interval=1,
        keepalives_count=3,
        tcp_user_timeout=ms,
        options=f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={2 * ms}",
        application_name="qompr",
    )


def _schema_version(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(
        "SELECT to_regclass('qompr.meta') IS NOT NULL AND to_regclass('qompr.lu') IS NOT NULL"
    ).fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT value FROM qompr.meta WHERE key = 'schema_version'").fetchone()
    return None if found is None else int(found[0])


def apply_schema(uri: str, *, timeout: float = 30.0) -> None:
    """Create qompr's tables in the database *uri* (nothing if they are there).

    :raises StateFileError: if the database cannot be reached, holds another schema
        version, or refuses the statements.
    """
    try:
        with _connect(uri, timeout) as conn, conn.transaction():
            found = _schema_version(conn)
            if found is not None and found != SCHEMA_VERSION:
                raise StateFileError(
                    f"PR state database '{redact(uri)}' has schema version {found}, "
                    f"qompr uses {SCHEMA_VERSION}"
                )
            conn.execute(_SCHEMA)
    except psycopg.Error as exc:
        raise StateFileError(f"Could not apply the schema to '{redact(uri)}': {exc}") from exc


@attrs.define(eq=False)
class _Job:
    """One command, or one call (:meth:`PostgresStore._call`), waiting for a worker."""

    lu: str
    deadline: float
    decide: Decide | None = None
    call: Callable[[psycopg.Connection[Any]], Any] | None = None
    reads: bool = False
    result: Any = None
    error: BaseException | None = None
    taken: bool = False
    abandoned: bool = False
    committing: bool = False
    #: The token and new version of the transaction writing this batch (its first job's).
    txn: tuple[str, int] | None = None
    done: threading.Event = attrs.field(factory=threading.Event)


class _AbandonedError(Exception):
    """A command of the batch gave up: roll back instead of committing."""


class PostgresStore:
    """State in a PostgreSQL database shared by every host (see the module docstring).

    :param uri: a libpq connection URI (``postgresql://user@host/db?...``); point it at the
        primary (several hosts with ``target_session_attrs=read-write`` follow a failover).
    :param timeout: the default deadline of a command, in seconds.
    :param create_schema: create the tables if missing (else they must be there).
    :param power_on: refused: a shared logical unit is power-cycled explicitly.
    :raises StateFileError: if the database cannot be reached or has no usable schema.
    """

    def __init__(
        self,
        uri: str,
        *,
        timeout: float = 5.0,
        create_schema: bool = False,
        power_on: bool = False,
        workers: int = _WORKERS,
    ) -> None:
        if power_on:
            raise StateFileError(
                "start=power-cycle is not supported with a shared PR state database",
                hint="Power-cycle its logical units with 'qompr emulated power-cycle URI'",
            )
        self.uri = uri
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        # Work for the workers: a call, or a logical unit's turn to read or to write.
        self._items: collections.deque[tuple[bool, str] | _Job] = collections.deque()
        #: Reads waiting, per logical unit: one SELECT answers all that wait together
        #: (each arrived before it was sent, so each sees the state at or after its arrival).
        self._reads: dict[str, list[_Job]] = {}
        self._writes: dict[str, list[_Job]] = {}
        #: Logical units a worker is writing: their new commands wait for its commit and
        #: go together into the next transaction (group commit).
        self._busy: set[str] = set()
        #: Logical units a worker is reading: their new reads wait for that SELECT and go
        #: together into the next one (one SELECT in flight per LU; with a free worker per
        #: read, batches stayed small and 16 readers got 4,944 reads/s from 8 workers
        #: against 14,247 from one).
        self._reading: set[str] = set()
        self._cache: dict[str, _Cached] = {}
        self._closing = False
        name = redact(uri)
        try:
            if create_schema:
                apply_schema(uri, timeout=timeout)
            with _connect(uri, timeout) as conn:
                found = _schema_version(conn)
        except psycopg.Error as exc:
            raise StateFileError(f"Could not open PR state database '{name}': {exc}") from exc
        if found != SCHEMA_VERSION:
            what = "has no qompr schema" if found is None else f"has schema version {found}"
            raise StateFileError(
                f"PR state database '{name}' {what} (qompr uses {SCHEMA_VERSION})",
                hint=f"Create it with 'qompr emulated schema --apply {name}', "
                "or set create-schema=on",
            )
        self._threads = [
            threading.Thread(target=self._work, name=f"qompr-pg-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- the Store interface ------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """True: every host using the database shares its logical units."""
        return True

    @property
    def cannot_block(self) -> bool:
        """False: a command waits for the network and the database."""
        return False

    def transact(
        self, lu: str, decide: Decide, *, deadline: float | None = None, read_first: bool = False
    ) -> EngineOutcome:
        """Run one command (see the module docstring)."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        if read_first:
            outcome = decide(self._read_state(lu, deadline))
            if outcome.changes is None:
                return outcome
        result: EngineOutcome = self._queue(_Job(lu, deadline, decide=decide))
        return result

    def snapshot(self, lu: str) -> StateSnapshot:
        return self._read_state(lu, time.monotonic() + self.timeout).snapshot()

    def _read_state(self, lu: str, deadline: float) -> LUState:
        state: LUState = self._queue(_Job(lu, deadline, reads=True))
        return state

    def logical_units(self) -> list[str]:
        def names(conn: psycopg.Connection[Any]) -> list[str]:
            return [str(n) for (n,) in conn.execute("SELECT name FROM qompr.lu ORDER BY name")]

        return self._call("", time.monotonic() + self.timeout, names)

    def power_on(self, lu: str | None = None) -> None:
        """Play a power cycle of *lu* (or of every logical unit) for every host, in one
        transaction that locks the rows it changes."""

        def cycle(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                where, args = ("", ()) if lu is None else (" WHERE name = %s", (lu,))
                rows = conn.execute(
                    f"SELECT name, version, state FROM qompr.lu{where} ORDER BY name FOR UPDATE",
                    args,
                ).fetchall()
                for name, version, doc in rows:
                    state = _decode(doc)
                    state.power_on()
                    conn.execute(_UPDATE, (version + 1, Jsonb(state_to_document(state)), name))
            with self._cond:
                for name, _, _ in rows:
                    self._cache.pop(name, None)

        self._call(lu or "", time.monotonic() + self.timeout, cycle)

    def close(self) -> None:
        """Stop the workers and close their connections (idempotent)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        # One bound for all: a worker stuck on a frozen server is a daemon thread.
        deadline = time.monotonic() + self.timeout + 1
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- callers' side --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise StoreFailureError(f"PR state database '{redact(self.uri)}' is closed")

    def _call(self, lu: str, deadline: float, call: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        job = _Job(lu, deadline, call=call)
        with self._cond:
            self._check_open()
            self._items.append(job)
            self._cond.notify()
        result: _T = self._wait(job)
        return result

    def _lane(self, writes: bool) -> tuple[dict[str, list[_Job]], set[str]]:
        """The commands waiting per logical unit, and the logical units a worker is on, for
        writes (group commit) or reads (one SELECT for all waiting)."""
        return (self._writes, self._busy) if writes else (self._reads, self._reading)

    def _queue(self, job: _Job) -> Any:
        """Queue a read or write *job* for its logical unit's next turn; its result."""
        writes = not job.reads
        waiting, active = self._lane(writes)
        with self._cond:
            self._check_open()
            queue = waiting.setdefault(job.lu, [])
            queue.append(job)
            if len(queue) == 1 and job.lu not in active:
                self._items.append((writes, job.lu))
                self._cond.notify()
        return self._wait(job)

    def _wait(self, job: _Job) -> Any:
        limit = job.deadline
        while not job.done.wait(max(0.0, limit - time.monotonic())):
            with self._cond:
                if job.done.is_set():
                    break
                if job.committing and limit == job.deadline:
                    # Its COMMIT is in flight: an answer now could be "failed" for a command
                    # that took effect.  Wait, at most one more timeout, for its fate.
                    limit = job.deadline + self.timeout
                    continue
                if not job.taken:
                    self._withdraw(job)
                    raise StoreUnavailableError(
                        f"PR state database '{redact(self.uri)}': no answer in time"
                    )
                job.abandoned = True
                unknown = " (its commit was in flight: outcome unknown)" if job.committing else ""
                raise StoreUnavailableError(
                    f"PR state database '{redact(self.uri)}': no answer in time{unknown}"
                )
        if job.error is not None:
            raise job.error
        return job.result

    def _withdraw(self, job: _Job) -> None:
        if job.call is not None:
            self._items.remove(job)
            return
        waiting, _ = self._lane(not job.reads)
        queue = waiting.get(job.lu, [])
        queue.remove(job)
        if not queue:
            # The LU's turn stays in _items; the worker finds no command and skips it.
            waiting.pop(job.lu, None)

    # -- workers' side --------------------------------------------------------------------

    def _work(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while True:
                with self._cond:
                    while not self._items and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        break
                    item = self._items.popleft()
                    if isinstance(item, _Job):
                        batch = [item]
                    else:
                        waiting, active = self._lane(item[0])
                        if item[1] in active:
                            continue  # the worker on it queues its next turn
                        batch = waiting.pop(item[1], [])
                        if not batch:
                            continue
                        active.add(item[1])
                    for job in batch:
                        job.taken = True
                conn = self._serve(conn, batch)
        finally:
            if conn is not None:
                conn.close()

    def _serve(
        self, conn: psycopg.Connection[Any] | None, batch: list[_Job]
    ) -> psycopg.Connection[Any] | None:
        """Run *batch* (one call, or one LU's commands), retrying what may be retried while
        its earliest deadline allows; returns the connection to keep (``None``: broken)."""
        deadline = min(job.deadline for job in batch)
        error: BaseException | None = None
        while True:
            error = None
            try:
                if conn is None:
                    conn = _connect(self.uri, max(0.5, deadline - time.monotonic()))
                if batch[0].call is not None:
                    batch[0].result = batch[0].call(conn)
                elif batch[0].reads:
                    state = self._read(conn, batch[0].lu)
                    for job in batch:
                        job.result = state
                else:
                    self._write_batch(conn, batch)
                break
            except _AbandonedError:
                error = StoreUnavailableError(
                    f"PR state database '{redact(self.uri)}': no answer in time"
                )
                break
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                error = self._unavailable(exc)  # nothing applied: try again
            except psycopg.OperationalError as exc:
                error = self._unavailable(exc)
                if conn is not None:
                    conn.close()
                    conn = None
                if any(job.committing for job in batch):
                    # The connection died with COMMIT in flight: find out whether it
                    # happened before anything runs twice.
                    committed = self._resolve(batch[0], deadline + self.timeout)
                    if committed is None:
                        error = self._unavailable(f"{exc} (commit outcome unknown)")
                        break
                    if committed:
                        error = None
                        break
                    # Not committed: nothing applied, the batch may run again.
            except (psycopg.Error, CodecError) as exc:
                error = StoreFailureError(f"PR state database '{redact(self.uri)}': {exc}")
                if conn is not None and conn.closed:
                    conn = None
                break
            except Exception as exc:  # a bug here must not cost a worker or stall its LU
                error = StoreFailureError(f"PR state database '{redact(self.uri)}': {exc!r}")
                if conn is not None:
                    conn.close()
                    conn = None
                break
            if self._closing or time.monotonic() + _RETRY_PAUSE >= deadline:
                break
            time.sleep(_RETRY_PAUSE)
        with self._cond:
            for job in batch:
                if error is not None:
                    job.result = None  # not committed (or not known to be): no answer
                    if job.error is None:
                        job.error = error
                job.done.set()
            lu = batch[0].lu
            if batch[0].call is None:
                writes = not batch[0].reads
                waiting, active = self._lane(writes)
                active.discard(lu)
                if waiting.get(lu):
                    self._items.append((writes, lu))  # what arrived meanwhile: the next turn
                    self._cond.notify()
        return conn

    def _resolve(self, job: _Job, deadline: float) -> bool | None:
        """Whether the transaction of *job*'s batch, whose COMMIT lost its connection, was
        committed (``None``: cannot tell by *deadline*).

        Each transaction leaves its token among the last ones in the logical unit's row;
        the row lock taken here waits for a transaction still finishing on the server.
        """
        if job.txn is None:
            return True  # it wrote nothing: its answers stand whether or not it committed
        token, version = job.txn
        pause = _RESOLVE_PAUSE[0]
        while True:
            try:
                wait = max(0.5, deadline - time.monotonic())
                with _connect(self.uri, wait) as conn, conn.transaction():
                    row = conn.execute(
                        "SELECT version, state->'recent' FROM qompr.lu WHERE name = %s FOR UPDATE",
                        (job.lu,),
                    ).fetchone()
                break
            except psycopg.Error:
                # Still away (a server restarting refuses connections for a while): try
                # again soon, then less often, until the deadline; the answer is "unknown"
                # only if the database is not back by then.
                left = deadline - time.monotonic()
                if self._closing or left <= 0:
                    return None
                time.sleep(min(pause, left))
                if time.monotonic() >= deadline:
                    return None
                pause = min(2 * pause, _RESOLVE_PAUSE[1])
        if row is None:
            return False
        current, recent = int(row[0]), row[1] if isinstance(row[1], list) else []
        if token in recent:
            self._forget(job.lu)
            return True
        # Not among the last len(recent) commits: not committed if ours would be one of them.
        return False if current - len(recent) < version else None

    def _forget(self, lu: str) -> None:
        with self._cond:
            self._cache.pop(lu, None)

    def _unavailable(self, exc: BaseException | str) -> StoreUnavailableError:
        return StoreUnavailableError(f"PR state database '{redact(self.uri)}': {exc}")

    def _cached(self, lu: str) -> _Cached | None:
        with self._cond:
            return self._cache.get(lu)

    def _publish(self, lu: str, entry: _Cached) -> None:
        with self._cond:
            cached = self._cache.get(lu)
            if cached is None or cached[0] < entry[0]:
                self._cache[lu] = entry

    def _state_of(self, lu: str, row: tuple[Any, ...], cached: _Cached | None) -> _Cached:
        """The state a row read with *cached*'s version holds (no document: *cached*)."""
        version, doc = int(row[0]), row[1]
        if doc is None:
            assert cached is not None and cached[0] == version
            return cached
        state = _decode(doc)
        recent = doc.get("recent") if isinstance(doc, dict) else None
        entry = (version, state, recent if isinstance(recent, list) else [])
        self._publish(lu, entry)
        return entry

    def _read(self, conn: psycopg.Connection[Any], lu: str) -> LUState:
        cached = self._cached(lu)
        row = conn.execute(_READ, (-1 if cached is None else cached[0], lu)).fetchone()
        if row is None:
            return LUState()
        return self._state_of(lu, row, cached)[1]

    def _write_batch(self, conn: psycopg.Connection[Any], batch: list[_Job]) -> None:
        lu = batch[0].lu
        for job in batch:
            job.result = job.error = None
            job.committing = False
        batch[0].txn = None
        with conn.transaction():
            cached = self._cached(lu)
            known = -1 if cached is None else cached[0]
            row = conn.execute(_LOCK, (known, lu)).fetchone()
            if row is None:
                conn.execute(_CREATE, (lu,))
                row = conn.execute(_LOCK, (known, lu)).fetchone()
                assert row is not None
            version, state, previous = self._state_of(lu, row, cached)
            state = state.copy()  # the cached state is never mutated
            with self._cond:
                # The commands that arrived while the lock was awaited (another host's
                # commit) join this transaction: one commit for all of them.
                late = self._writes.pop(lu, [])
                for job in late:
                    job.taken = True
                batch.extend(late)
            changed = False
            for job in batch:
                assert job.decide is not None
                try:
                    outcome = job.decide(state)
                except Exception as exc:  # a bug in one command must not fail the others
                    job.error = exc
                    continue
                if outcome.changes is not None:
                    state.apply(outcome.changes)
                    changed = True
                job.result = outcome
            if changed:
                token = f"{os.getpid()}.{next(_TOKENS)}.{time.time_ns() & 0xFFFFFF:x}"
                doc = state_to_document(state)
                doc["recent"] = [token, *previous[: _RECENT - 1]]
                conn.execute(_UPDATE, (version + 1, Jsonb(doc), lu))
                batch[0].txn = (token, version + 1)
            with self._cond:
                if any(job.abandoned for job in batch):
                    raise _AbandonedError  # rolls back: a command that gave up applies nothing
                for job in batch:
                    job.committing = True
        # Committed.
        if changed:
            self._publish(lu, (version + 1, state, doc["recent"]))


def _decode(doc: Any) -> LUState:
    return state_from_document(doc)
