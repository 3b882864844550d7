# SPDX-License-Identifier: MIT
"""The abstract ``pr-manager`` type: what every persistent-reservation manager offers.

QEMU's ``PRManagerClass`` has one method, ``run(fd, sg_io_hdr)``, executed in a worker thread,
and an optional ``is_connected``.  Here :meth:`PRManager.run` takes the CDB, the data-out bytes
and an optional I_T nexus, and returns a :class:`~qompr.scsi.ScsiResult`; SCSI outcomes are
values.  :meth:`PRManager.execute` wraps it with the checks and notifications every manager
shares; :meth:`PRManager.execute_async` runs it in a worker thread, as QEMU's thread pool does.

The contract
------------

Everything a server (``qompr-pr-helper``), a command (``qompr persist``) or a wrapping manager
needs to know about a manager is a typed method or property of :class:`PRManager`, with a
default that fits a real device.  Nothing is found by ``getattr`` or ``inspect``:

================================  ============================================================
:attr:`~PRManager.default_nexus`   the I_T nexus of commands given without one; ``None``: the
                                   device knows its own (a real LU sees the host's initiator)
:meth:`~PRManager.nexus_for_client`  the I_T nexus of a helper client (:class:`ClientIdentity`)
:meth:`~PRManager.cannot_block`    a command (this CDB) on this fd finishes at once (may run on a
                                   loop)
:meth:`~PRManager.batch`           commands that had all arrived when it began (reads may share
                                   one look at shared state)
:meth:`~PRManager.required_capabilities`  what a privilege drop must keep
:meth:`~PRManager.test_unit_ready`  TEST UNIT READY, which reports a pending unit attention
:meth:`~PRManager.logical_unit_id`  which logical unit an fd reaches (PR tracking, migration)
================================  ============================================================

A manager that wraps another derives from :class:`DelegatingPRManager`, which passes the whole
contract through to its ``target``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

import attrs

from qompr._compat import override
from qompr.errors import ObjectError
from qompr.qom import USER_CREATABLE
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    from qompr.linux.caps import Capability
    from qompr.scsi import Nexus

__all__ = [
    "PR_IN",
    "PR_OUT",
    "TEST_UNIT_READY_CDB",
    "ClientIdentity",
    "PRManager",
    "pr_manager_lookup",
    "query_pr_managers",
]

#: PERSISTENT RESERVE IN / OUT opcodes: the only commands a manager executes.
PR_IN = 0x5E
PR_OUT = 0x5F
#: TEST UNIT READY (SPC-4 §6.47): opcode 00h, no parameters.
TEST_UNIT_READY_CDB: Final = bytes(6)


@attrs.frozen
class ClientIdentity:
    """Who is at the other end of a helper connection, as the server knows it.

    The server fills it once per connection: the SO_PEERCRED credentials, and for a trusted
    client that named itself through qompr's protocol extension (``docs/daemon.md``,
    "Identity rules") the initiator name and target port it chose.

    :param pid: the client's process id (SO_PEERCRED).
    :param uid: its effective user id.
    :param gid: its effective group id.
    :param initiator: the initiator name a trusted client gave, or ``None``.
    :param target_port: the RELATIVE TARGET PORT IDENTIFIER it chose, or ``None``.
    """

    pid: int
    uid: int
    gid: int
    initiator: str | None = attrs.field(default=None, kw_only=True)
    target_port: int | None = attrs.field(default=None, kw_only=True)


class PRManager(Object, qom_type="pr-manager", abstract=True, interfaces=(USER_CREATABLE,)):
    """Abstract base of every persistent-reservation manager type."""

    def instance_init(self) -> None:
        self._inflight = 0
        self._inflight_lock = threading.Lock()

    # -- what a concrete manager implements ---------------------------------------------------
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """Execute one PR IN/OUT command on *fd* (QEMU's ``PRManagerClass.run``).

        Called in a worker thread for the asynchronous form; must be thread-safe.

        :param fd: the open file of the logical unit (a block device, a SCSI generic node,
            or for emulation any file).
        :param cdb: the CDB (10 bytes for PR IN/OUT; up to 16 as the helper protocol sends).
        :param data: the PR OUT parameter list (empty for PR IN).
        :param nexus: the I_T nexus the command arrives on, for managers that emulate
            several initiators; real devices know their own.
        :returns: status, sense and data-in; failures of the command are values.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    def is_connected(self) -> bool:
        """Whether the backend is reachable (QEMU: True for managers without the method)."""
        return True

    # -- the contract: what servers and wrappers may ask (defaults fit a real device) ---------
    @property
    def default_nexus(self) -> Nexus | None:
        """The I_T nexus of commands given without one.

        ``None`` (the default) means the device knows its own: a real logical unit sees the
        host's initiator port.  A manager that emulates initiators names one.
        """
        return None

    def nexus_for_client(self, client: ClientIdentity) -> Nexus | None:
        """The I_T nexus the commands of a helper client carry (asked once per connection).

        ``None`` (the default): the device knows its own, every client is the host.
        """
        return None

    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        """Whether a command on *fd* is sure to finish at once.

        A server may then run it on its event loop instead of a worker thread; so a manager
        must only say True when no I/O can wait (default False).

        :param fd: the logical unit's fd.
        :param cdb: the command, when the caller knows it (``qompr-pr-helper`` asks per
            command): a manager whose reads are quick but whose writes wait (a state file:
            PR IN reads, PR OUT fsyncs) answers for it; ``None`` asks about any command.
        """
        return False

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A context around commands that had all been received when it was entered.

        A server that runs several commands back to back enters it around them
        (``qompr-pr-helper`` does so for the commands its event loop received in one turn and
        runs there).  A manager whose reads must look at state that other processes change
        may then look once for the whole batch: the look comes after every command of the
        batch arrived, so each still sees every command acknowledged before it was sent.
        Only the thread that entered it is concerned; the default does nothing.
        """
        return contextlib.nullcontext()

    def required_capabilities(self) -> frozenset[Capability]:
        """The capabilities a privileged server must keep after dropping privileges to run
        this manager's commands, beyond what SG_IO needs (``CAP_SYS_RAWIO``, always kept)."""
        return frozenset()

    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY on *fd*: GOOD, or CHECK CONDITION with a pending unit attention
        (which it reports and so clears, SPC-4 §5.14), or NOT READY.

        The default answers ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE: the manager
        cannot send other commands than PERSISTENT RESERVE IN/OUT.
        """
        return ScsiResult.check(SenseCode.INVALID_OPCODE)

    def logical_unit_id(self, fd: int) -> str:
        """A name of the logical unit *fd* reaches, the same for every fd of it: what the
        helper's PR tracking keys on (``docs/migration.md``).

        The default names the file: ``rdev:MAJ:MIN`` for a device node (its device number),
        else ``ino:DEV:INO``.  A manager that decides otherwise (an emulated ``lu-name``)
        says so.

        :raises OSError: *fd* is not open.
        """
        st = os.fstat(fd)
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            return f"rdev:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        return f"ino:{st.st_dev}:{st.st_ino}"

    async def run_async(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """:meth:`run` for asyncio.  By default :meth:`run` in a worker thread, as QEMU's
        thread pool runs it; managers with native asyncio I/O override this."""
        import asyncio  # here: programs that never run a loop need not import it

        return await asyncio.to_thread(self.run, fd, cdb, data, nexus=nexus)

    # -- shared behaviour ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        # While a command runs the manager counts as in use, so object-del refuses it.
        with self._inflight_lock:
            self._inflight += 1
        try:
            yield
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def _announce(self, cdb: bytes, result: ScsiResult) -> ScsiResult:
        hook = self.tree.hook
        if hook is not None:
            announce = hook.qompr_command_executed
            if announce.get_hookimpls():  # nobody listening: skip the call
                announce(manager=self, cdb=bytes(cdb), result=result)
        return result

    def execute(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """Run a command and announce it through the ``qompr_command_executed`` hook."""
        # _in_use() spelt out: this is every command's path (qompr-pr-helper's included).
        lock = self._inflight_lock
        with lock:
            self._inflight += 1
        try:
            result = self.run(fd, cdb, data, nexus=nexus)
        finally:
            with lock:
                self._inflight -= 1
        return self._announce(cdb, result)

    async def execute_async(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """:meth:`execute` for asyncio (QEMU's ``pr_manager_execute`` coroutine), through
        :meth:`run_async`."""
        with self._in_use():
            result = await self.run_async(fd, cdb, data, nexus=nexus)
        return self._announce(cdb, result)

    @override
    def can_be_deleted(self) -> bool:
        """Unlike QEMU, refuse deletion while a command runs or another object links here."""
        return self._inflight == 0 and super().can_be_deleted()

    def status_changed(self, connected: bool) -> None:
        """Emit ``PR_MANAGER_STATUS_CHANGED`` through the plugin hook."""
        hook = self.tree.hook
        if hook is not None and self.id is not None:
            hook.qompr_pr_manager_status_changed(manager=self, id=self.id, connected=connected)


def pr_manager_lookup(tree: ObjectTree, obj_id: str) -> PRManager:
    """QEMU's ``pr_manager_lookup``: the manager ``/objects/<id>``, with QEMU's errors."""
    obj = tree.find_object(obj_id)
    if obj is None:
        raise ObjectError(f"No persistent reservation manager with id '{obj_id}'")
    if not isinstance(obj, PRManager):
        raise ObjectError(f"Object with id '{obj_id}' is not a persistent reservation manager")
    return obj


def query_pr_managers(tree: ObjectTree) -> list[dict[str, Any]]:
    """QMP ``query-pr-managers``: ``[{"id": str, "connected": bool}]``."""
    return [
        {"id": obj.id, "connected": obj.is_connected()}
        for obj in tree.user_objects()
        if isinstance(obj, PRManager)
    ]
