# SPDX-License-Identifier: MIT
"""``pr-manager-emulated``: a software SPC-4 persistent-reservation device server.

Instead of passing PR commands to a disk, this manager answers them itself, for any file
(an image, a block device), as LIO would (``mode=lio``, the default) or as the letter of
SPC-4 says (``mode=spc4``).  The state is kept in memory, with ``state=FILE`` in an SQLite
file that several processes may share, or with ``state=postgresql://...`` in a PostgreSQL
database that several hosts share (see :mod:`._store`, :mod:`._sqlite`, :mod:`._postgres`).
``check_command()`` lets a software target built on qompr enforce the reservations on other
commands.

Example::

    -object pr-manager-emulated,id=emu0,state=/var/lib/qompr/pr.db
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import Final
from typing import TypeGuard
from typing import final

from qompr._compat import override
from qompr.errors import ObjectError
from qompr.errors import StateError
from qompr.managers._base import TEST_UNIT_READY_CDB
from qompr.managers._base import ClientIdentity
from qompr.managers._base import PRManager
from qompr.managers.emulated._engine import Engine
from qompr.managers.emulated._engine import EngineConfig
from qompr.managers.emulated._identity import InitiatorRule
from qompr.managers.emulated._identity import nexus_for_pid
from qompr.managers.emulated._luid import LuIdRule
from qompr.managers.emulated._luid import LuNamer
from qompr.managers.emulated._open import open_store
from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._policy import Policy
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import StateSnapshot
from qompr.managers.emulated._store import Store
from qompr.managers.emulated._store import StoreFailureError
from qompr.managers.emulated._store import StoreOptions
from qompr.managers.emulated._store import StoreUnavailableError
from qompr.qom import BoolProperty
from qompr.qom import EnumProperty
from qompr.qom import IntProperty
from qompr.qom import LifeState
from qompr.qom import Object
from qompr.qom import StringProperty
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    import logging

    from qompr.managers.emulated._sqlite import SqliteStore

__all__ = ["DEFAULT_MAX_REGISTRATIONS", "DEFAULT_TIMEOUT_MS", "PRManagerEmulated"]

#: Registrations one logical unit keeps by default: far above any cluster (64 nodes, each with
#: a few target ports), far below what makes a root daemon's memory a client's to spend
#: (one client once made a million, 300 MB, and slowed every other client's READ KEYS).
DEFAULT_MAX_REGISTRATIONS: Final = 4096
#: The default bound on a command's wait for its store (ms): well below the SCSI command
#: timeouts of guests (Linux sd 30 s, Windows disk 60 s), so a stalled store is answered with
#: a retryable CHECK CONDITION before the guest gives up on the command and resets the LU.
DEFAULT_TIMEOUT_MS: Final = 5000
_READS: Final = frozenset({Opcode.PERSISTENT_RESERVE_IN, Opcode.REQUEST_SENSE})
_PR_IN: Final = bytes([Opcode.PERSISTENT_RESERVE_IN])


def _log() -> logging.Logger:
    """This module's logger: logging loads with the first warning (a manager whose commands
    succeed logs nothing, and qompr persist --object does not import it)."""
    import logging

    return logging.getLogger(__name__)


_SQLITE_MODULE: Final = "qompr.managers.emulated._sqlite"


def _is_sqlite(store: Store) -> TypeGuard[SqliteStore]:
    """Whether *store* is an SQLite file, without importing the SQLite store (and sqlite3)
    for a store in memory: no SqliteStore exists before its module is loaded."""
    module = sys.modules.get(_SQLITE_MODULE)
    return module is not None and isinstance(store, module.SqliteStore)


def _until_complete(name: str) -> Callable[[Object, Any], None]:
    """A property setter that refuses changes once the object is complete.

    The engine and the store are built from the properties in ``complete()``; changing them
    afterwards would silently do nothing, so it is an error instead.
    """

    def setter(obj: Object, value: Any) -> None:
        if obj.life_state is not LifeState.CREATED:
            raise ObjectError(f"Property '{obj.typename}.{name}' can only be set at creation")
        obj.__dict__.setdefault("_qom_values", {})[name] = value

    return setter


@final
class PRManagerEmulated(PRManager, qom_type="pr-manager-emulated"):
    """The emulated persistent-reservation manager (see the module docstring)."""

    state = StringProperty(
        description="where the PR state lives: an SQLite file, a postgresql:// URI shared "
        "by several hosts, or a plugin's SCHEME:// URI (in memory if unset)",
        setter=_until_complete("state"),
    )
    mode = EnumProperty(
        "PrEmulationMode",
        ["lio", "spc4"],
        default="lio",
        description="answer as Linux LIO does (lio) or as the letter of SPC-4 says (spc4)",
        setter=_until_complete("mode"),
    )
    lu_id = EnumProperty(
        "PrLuId",
        [rule.value for rule in LuIdRule],
        default="inode",
        description="how an fd becomes a logical unit: its device or inode numbers (inode, "
        "this host only), its file's canonical path (path), or its SCSI LUN's VPD 83h "
        "designator (wwn)",
        setter=_until_complete("lu-id"),
    )
    create_schema = BoolProperty(
        default=False,
        description="create the PR state database's tables if missing (else 'qompr "
        "emulated schema --apply URI' must have)",
        setter=_until_complete("create-schema"),
    )
    lu_name = StringProperty(
        description="name of the one logical unit every fd refers to "
        "(default: the file behind each fd)",
        setter=_until_complete("lu-name"),
    )
    initiator = StringProperty(
        description="initiator of commands given without an I_T nexus "
        "(default: this process, named by initiator-rule)",
        setter=_until_complete("initiator"),
    )
    initiator_rule = EnumProperty(
        "PrInitiatorRule",
        [rule.value for rule in InitiatorRule],
        default="pid",
        description="how a client process is named as an initiator: "
        "its pid, or the VM name from its -name option",
        setter=_until_complete("initiator-rule"),
    )
    target_ports = IntProperty(
        minimum=1,
        maximum=0xFFFF,
        default=1,
        description="number of target ports (RELATIVE TARGET PORT IDENTIFIERs 1..N)",
        setter=_until_complete("target-ports"),
    )
    max_registrations = IntProperty(
        minimum=0,
        maximum=0xFFFF_FFFF,
        default=DEFAULT_MAX_REGISTRATIONS,
        description="most registrations per logical unit (0: no limit)",
        setter=_until_complete("max-registrations"),
    )
    timeout = IntProperty(
        minimum=1,
        maximum=24 * 3600 * 1000,
        default=DEFAULT_TIMEOUT_MS,
        description="longest wait for the state store, in milliseconds; past it a command "
        "answers CHECK CONDITION ABORTED COMMAND (retried by initiators), applying nothing",
        setter=_until_complete("timeout"),
    )
    start = EnumProperty(
        "PrEmulatedStart",
        ["resume", "power-cycle"],
        default="resume",
        description="what opening the state does: resume it as it is (resume), or play a "
        "power cycle when no other process uses it (power-cycle)",
        setter=_until_complete("start"),
    )
    state_sync = EnumProperty(
        "PrStateSync",
        ["full", "normal"],
        default="full",
        description="fsync the state file at every command (full) or only survive "
        "process crashes (normal)",
        setter=_until_complete("state-sync"),
    )

    @override
    def instance_init(self) -> None:
        self._engine: Engine | None = None
        self._store: Store | None = None
        self._default_nexus: Nexus | None = None
        # Read once at complete() (they cannot change after): a QOM property read costs
        # more than the rest of a READ KEYS.
        self._lu_name: str | None = None
        self._namer = LuNamer(LuIdRule.INODE)
        self._timeout = DEFAULT_TIMEOUT_MS / 1000
        self._abort_lock = threading.Lock()
        #: Called with the I_T nexuses whose tasks a PREEMPT AND ABORT aborts.
        self.abort_handler: Callable[[frozenset[Nexus]], None] | None = None

    def instance_finalize(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @override
    def complete(self) -> None:
        """Build the engine and open the state (the file, if ``state`` is set)."""
        try:
            config = EngineConfig(
                Policy.for_mode(self.mode),
                tuple(range(1, self.target_ports + 1)),
                max_registrations=self.max_registrations,
            )
            if self.initiator:
                default = Nexus(self.initiator)
            else:
                default = nexus_for_pid(os.getpid(), self.initiator_rule)
        except ValueError as exc:
            raise ObjectError(f"Invalid pr-manager-emulated configuration: {exc}") from exc
        options = StoreOptions(
            timeout=self.timeout / 1000,
            power_on=self.start == "power-cycle",
            synchronous=self.state_sync,
            create_schema=self.create_schema,
        )
        store = open_store(self.state or "", options, self.tree.hook)
        if store.shared and self.lu_id == "inode" and not self.lu_name:
            store.close()
            raise ObjectError(
                f"Property 'pr-manager-emulated.lu-id' cannot be 'inode' with a shared PR "
                f"state ('{self.id}'): device and inode numbers are this host's own",
                hint="Use lu-id=path (a shared file system) or lu-id=wwn (a shared SCSI "
                "LUN), or name the one logical unit with lu-name",
            )
        if store.shared and self.initiator_rule == "pid":
            _log().warning(
                "%s: initiator-rule=pid names initiators by this host's process ids; with a "
                "shared PR state use initiator-rule=vm-name or named initiators",
                self.id,
            )
        self._engine = Engine(config)
        self._namer = LuNamer(self.lu_id)
        self._default_nexus = default
        self._lu_name = self.lu_name
        self._timeout = self.timeout / 1000
        self._store = store

    # -- identity ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine (after ``complete()``)."""
        engine, _ = self._ready()
        return engine

    @property
    @override
    def default_nexus(self) -> Nexus:
        """The I_T nexus of commands given without one."""
        self._ready()
        assert self._default_nexus is not None
        return self._default_nexus

    def logical_unit(self, fd: int) -> str:
        """The name of the logical unit *fd* refers to (``lu-name`` if set, else by
        ``lu-id``).

        :raises OSError: if *fd* is not open and ``lu-name`` is unset.
        """
        name = self._lu_name if self._lu_name is not None else self.lu_name
        return name or self._namer(fd)

    @override
    def logical_unit_id(self, fd: int) -> str:
        """The logical unit's name: ``lu-name``, else the file behind *fd*."""
        return self.logical_unit(fd)

    def nexus_for_pid(self, pid: int, *, target_port: int = 1) -> Nexus:
        """The I_T nexus of client process *pid*, named by ``initiator-rule``."""
        return nexus_for_pid(pid, self.initiator_rule, target_port=target_port)

    @override
    def nexus_for_client(self, client: ClientIdentity) -> Nexus:
        """The I_T nexus of a helper client: the initiator it named, if it is trusted to
        name one, else its process named by ``initiator-rule``; through the target port it
        chose (default 1)."""
        port = client.target_port if client.target_port is not None else 1
        if client.initiator is not None:
            return Nexus(client.initiator, port)
        return nexus_for_pid(client.pid, self.initiator_rule, target_port=port)

    @override
    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        """Whether a command on *fd* finishes at once: the store says so (memory: yes; a
        file or a database: no, a command may wait for a lock, fsync or the network), or
        *cdb* is a PR IN and the store is an SQLite file, which reads its committed state
        without a write transaction (WAL: readers never wait for writers); and no
        ``abort_handler`` is set.  ``qompr-pr-helper --backend`` then runs commands on its
        event loop instead of handing each to a worker thread.  (A PR IN that reports a
        unit attention clears it, which writes: rare, bounded by ``timeout``, and the
        daemon moves commands off its loop for a while after one that took long.)"""
        store = self._store
        if store is None or self.abort_handler is not None:
            return False
        if store.cannot_block:
            return True
        return cdb is not None and cdb[:1] == _PR_IN and _is_sqlite(store)

    @override
    def batch(self) -> contextlib.AbstractContextManager[None]:
        """For an SQLite state file, PR IN commands received together share one look at
        whether another process committed (:meth:`.SqliteStore.reads_together`); the other
        stores need nothing (memory: one process) or read in their own transaction."""
        store = self._store
        if store is not None and _is_sqlite(store):
            return store.reads_together()
        return super().batch()

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY: a pending unit attention is reported and cleared (as LIO does)."""
        answer = self.check_command(fd, TEST_UNIT_READY_CDB, nexus=nexus)
        return answer if answer is not None else ScsiResult.good()

    # -- commands ---------------------------------------------------------------------------

    def _ready(self) -> tuple[Engine, Store]:
        if self._engine is None or self._store is None:
            raise StateError(
                f"pr-manager-emulated '{self.id}' is not complete",
                state=self.life_state.value,
                required=LifeState.COMPLETED.value,
            )
        return self._engine, self._store

    def _transact(
        self, fd: int, decide: Callable[[LUState], EngineOutcome], *, read_first: bool = False
    ) -> EngineOutcome:
        _, store = self._ready()
        deadline = time.monotonic() + self._timeout
        try:
            lu = self.logical_unit(fd)
        except OSError as exc:
            _log().warning("%s: cannot identify the logical unit of fd %d: %s", self.id, fd, exc)
            return EngineOutcome(ScsiResult.check(SenseCode.LUN_NOT_SUPPORTED))
        try:
            outcome = store.transact(lu, decide, deadline=deadline, read_first=read_first)
        except StoreUnavailableError as exc:
            # Nothing was applied, and waiting longer may help: ABORTED COMMAND, LOGICAL UNIT
            # COMMUNICATION FAILURE, which Linux (scsi_check_sense: NEEDS_RETRY), Windows
            # (classpnp) and QEMU (guest-recoverable: passed to the guest whatever rerror/
            # werror say) retry, and which QEMU itself reports when its PR helper is away.
            _log().warning("%s: %s", self.id, exc)
            return EngineOutcome(ScsiResult.check(SenseCode.LUN_COMM_FAILURE))
        except StoreFailureError as exc:
            # Nothing was applied, and waiting will not help: a target failure, as when LIO
            # cannot write its APTPL file.
            _log().error("%s: %s", self.id, exc)
            return EngineOutcome(ScsiResult.check(SenseCode.TARGET_FAILURE))
        if outcome.aborted and self.abort_handler is not None:
            with self._abort_lock:
                self.abort_handler(outcome.aborted)
        return outcome

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """Execute PR IN/OUT (also SPC-2 RESERVE/RELEASE and REQUEST SENSE) on *fd*.

        :param nexus: the I_T nexus; :attr:`default_nexus` if omitted.
        """
        engine, _ = self._ready()
        who = nexus if nexus is not None else self.default_nexus
        cdb = bytes(cdb)
        data = bytes(data)
        # PR IN and REQUEST SENSE only read, but for a unit attention to clear.
        reads = bool(cdb) and cdb[0] in _READS
        outcome = self._transact(
            fd, lambda state: engine.execute(state, who, cdb, data), read_first=reads
        )
        assert outcome.result is not None
        return outcome.result

    def check_command(
        self, fd: int, cdb: bytes, *, nexus: Nexus | None = None
    ) -> ScsiResult | None:
        """May another command (READ, WRITE, TEST UNIT READY...) run on *fd*?

        A pending unit attention is reported (and cleared) first, as LIO does, then the
        reservation is checked (SPC-4 §5.12.1 table, or LIO's).

        :returns: ``None`` if the command may proceed, else the result to complete it with
            (CHECK CONDITION UNIT ATTENTION or RESERVATION CONFLICT).
        """
        engine, _ = self._ready()
        who = nexus if nexus is not None else self.default_nexus
        cdb = bytes(cdb)

        def decide(state: LUState) -> EngineOutcome:
            return engine.admit(state, who, cdb)

        return self._transact(fd, decide, read_first=True).result

    def unit_attentions(self, fd: int, nexus: Nexus | None = None) -> tuple[SenseCode, ...]:
        """The unit attentions queued for *nexus* on *fd*, oldest first (not cleared)."""
        who = nexus if nexus is not None else self.default_nexus
        snapshot = self.snapshot(fd)
        for owner, codes in snapshot.unit_attentions:
            if owner == who:
                return codes
        return ()

    def snapshot(self, fd: int) -> StateSnapshot:
        """An immutable copy of the PR state of the logical unit *fd* refers to."""
        _, store = self._ready()
        return store.snapshot(self.logical_unit(fd))

    def power_cycle(self, fd: int | None = None) -> None:
        """Play a power loss and return of the logical unit *fd* refers to, or of every one.

        What APTPL keeps survives; every I_T nexus the logical unit knew gets UNIT ATTENTION
        29h/01h POWER ON OCCURRED on its next command.  With a state file this affects every
        process that shares it.  Nothing else is a power cycle (``start=power-cycle`` aside).
        """
        _, store = self._ready()
        store.power_on(None if fd is None else self.logical_unit(fd))
