# SPDX-License-Identifier: MIT
"""Nodes: the cluster members a validation plays, each reaching the LU the way a guest would.

=============  ============================================================  ======================
path           how a node's commands travel                                  manager
=============  ============================================================  ======================
``device``     SG_IO on a SCSI device (``/dev/sdX``, ``/dev/sgN``)          pr-manager-direct
``multipath``  libmpathpersist on a dm-multipath map, as qemu-pr-helper     pr-manager-multipath
``helper``     a helper socket, from a process of its own (below)            pr-manager-helper
``manager``    any manager (``--object``), with the node's I_T nexus         as given
=============  ============================================================  ======================

Every command runs through a :class:`~qompr.managers.PRManager` in a worker thread, and the
caller waits at most a timeout for it: a LU that stops answering (LIO deadlocks on PREEMPT
AND ABORT on some kernels, docs/vm-testbed.md) ends as "no answer" instead of hanging the
run.  A node whose command never came back is *wedged*: it is sent nothing more.

**Helper nodes run in processes of their own.**  Behind ``qompr-pr-helper`` with an emulated
backend every client process is an initiator (named by pid, or by the VM name from QEMU's
``-name``), as every QEMU is a process of its own.  So each helper node is a small agent
process (:mod:`qompr.validate._agent`) started with ``-name guest=qompr-validate-...`` on its
command line; it opens the device itself, as QEMU does, and passes the fd to the helper with
each command.  A real device behind the helper ignores all this: there the device path decides
the I_T nexus, and two nodes on one path are one nexus (which the suite detects).
"""

from __future__ import annotations

import abc
import contextlib
import enum
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

import attrs

from qompr._compat import override
from qompr.errors import ConnectError
from qompr.errors import QomprError
from qompr.linux.devmapper import is_multipath
from qompr.linux.sgio import SG_ERR_DRIVER_TIMEOUT
from qompr.linux.sgio import Direction
from qompr.linux.sgio import sg_io
from qompr.managers import PRManager
from qompr.scsi import Asc
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import sense_length

if TYPE_CHECKING:
    from qompr.qom import ObjectTree
    from qompr.scsi import Nexus

__all__ = [
    "AgentNode",
    "Answer",
    "ManagerNode",
    "Node",
    "PathKind",
    "device_node",
    "helper_node",
    "helper_nodes",
    "manager_node",
    "open_device",
]

T = TypeVar("T")

#: How much longer than the command timeout the caller waits for an answer: the managers'
#: own timeouts (SG_IO, the helper connection) end first and answer with sense.
GRACE = 5.0
#: READ CAPACITY(10): the block length, to read and write back exactly one block.
READ_CAPACITY10 = bytes((0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0))
#: READ(10) and WRITE(10) of one block at LBA 0.  A WRITE of zero blocks would write nothing,
#: but LIO completes it with GOOD without looking at the reservation (seen on Linux 6.1), so
#: the probe writes back the very bytes it has just read.
READ10_BLOCK0 = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
WRITE10_BLOCK0 = bytes((0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0))


class PathKind(enum.Enum):
    """How a node reaches the LU (the table in the module docstring)."""

    DEVICE = "device"
    MULTIPATH = "multipath"
    HELPER = "helper"
    MANAGER = "manager"


@attrs.frozen
class Answer:
    """What a command came back with.

    :param result: status, sense and data; ``None`` when nothing came back.
    :param elapsed: seconds from sending to the answer (or to giving up).
    :param error: why there is no result (a transport error, or no answer in time).
    :param timed_out: no answer within the timeout (the LU or its path may be wedged).
    """

    result: ScsiResult | None
    elapsed: float
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def status(self) -> ScsiStatus | None:
        return None if self.result is None else self.result.status

    @property
    def conflict(self) -> bool:
        return self.status == ScsiStatus.RESERVATION_CONFLICT

    @property
    def sense(self) -> SenseCode | None:
        if self.result is None or self.result.status != ScsiStatus.CHECK_CONDITION:
            return None
        try:
            return self.result.sense_code
        except QomprError:
            return None

    @property
    def unit_attention(self) -> SenseCode | None:
        """The unit attention this answer reports, if it is one."""
        code = self.sense
        if code is not None and code.key == 6:
            return code
        return None

    @property
    def wedged(self) -> bool:
        """No answer in time, or the kernel's own timeout (COMMAND TIMEOUT, 0B/2E/02)."""
        if self.timed_out:
            return True
        code = self.sense
        return code is not None and code == SenseCode.COMMAND_TIMEOUT

    def describe(self) -> str:
        """One line: ``GOOD``, ``RESERVATION CONFLICT``, the sense, or the error."""
        if self.result is None:
            return self.error or "no answer"
        status = self.result.status
        if status == ScsiStatus.CHECK_CONDITION:
            code = self.sense
            return "CHECK CONDITION" if code is None else f"CHECK CONDITION, {code}"
        return status.name.replace("_", " ")


class Node(abc.ABC):
    """One cluster member.

    :param name: how the report calls it.
    :param kind: how it reaches the LU.
    :param description: one line for the report.
    """

    def __init__(self, name: str, kind: PathKind, description: str) -> None:
        self.name = name
        self.kind = kind
        self.description = description
        #: The multipath map or device path, when there is one.
        self.device: str | None = None
        #: Set once a command never came back; the node is then sent nothing more.
        self.wedged = False

    @abc.abstractmethod
    def execute(self, cdb: bytes, data: bytes, timeout: float, *, shield: bool = False) -> Answer:
        """Send one PERSISTENT RESERVE IN/OUT command and wait at most *timeout* seconds.

        :param shield: keep waiting through KeyboardInterrupt (the clean-up must not be cut
            short); the interruption is re-raised once the answer is in.
        """

    def test_unit_ready(self, timeout: float, *, shield: bool = False) -> Answer | None:
        """TEST UNIT READY, or ``None`` when the path cannot send it (a helper socket)."""
        return None

    def write_probe(self, timeout: float, *, shield: bool = False) -> Answer | None:
        """WRITE(10) of block 0 with the bytes READ(10) just read there (nothing changes), or
        ``None`` when the path cannot send one (only PR commands go through a helper or a
        manager).  A result-less answer says why the block could not be read."""
        return None

    def settle(self, timeout: float) -> bool:
        """Wait for a command still running (after an interruption); False if it did not end."""
        return True

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the node holds (fds, connections, its process)."""


class _Worker:
    """Runs one call at a time in a thread; the caller waits a bounded time for it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._done: threading.Event | None = None

    def call(self, fn: Callable[[], T], timeout: float, *, shield: bool) -> tuple[T | None, str]:
        """(value, "") or (None, error text); "timeout" when *fn* did not return in time."""
        if self._done is not None and not self._done.is_set():
            return None, "the previous command on this node never finished"
        done = threading.Event()
        box: list[Any] = []

        def work() -> None:
            try:
                box.append(fn())
            except BaseException as exc:  # handed to the caller
                box.append(exc)
            finally:
                done.set()

        self._done = done
        # A daemon thread: a command the kernel never finishes must not hold up the exit.
        threading.Thread(target=work, name=self.label, daemon=True).start()
        if not _wait(done, timeout, shield=shield):
            return None, "timeout"
        value = box[0]
        if isinstance(value, BaseException):
            if isinstance(value, QomprError | OSError):
                return None, str(value)
            raise value
        return value, ""

    def settle(self, timeout: float) -> bool:
        return self._done is None or _wait(self._done, timeout, shield=True)


def _wait(event: threading.Event, timeout: float, *, shield: bool) -> bool:
    """``event.wait(timeout)``; with *shield*, a KeyboardInterrupt is held until the end."""
    deadline = time.monotonic() + timeout
    interrupted: BaseException | None = None
    while True:
        try:
            ok = event.wait(max(0.0, deadline - time.monotonic()))
            break
        except KeyboardInterrupt as exc:
            if not shield:
                raise
            interrupted = exc
    if interrupted is not None:
        raise interrupted
    return ok


def _sgio_answer(
    fd: int,
    cdb: bytes,
    timeout: float,
    direction: Direction = Direction.NONE,
    *,
    data_out: bytes = b"",
    data_in_size: int = 0,
) -> ScsiResult:
    """One command through SG_IO; only the device's own answer is a result.

    :raises OSError: the ioctl failed, or the host adapter reported an error.
    """
    outcome = sg_io(
        fd, cdb, direction, data_out=data_out, data_in_size=data_in_size,
        cmd_len=len(cdb), timeout_ms=int(timeout * 1000),
    )  # fmt: skip
    if outcome.errno:
        raise OSError(outcome.errno, f"SG_IO failed: {os.strerror(outcome.errno)}")
    if outcome.host_status or outcome.driver_status & SG_ERR_DRIVER_TIMEOUT:
        raise OSError(
            f"SG_IO failed: host status {outcome.host_status:#x}, "
            f"driver status {outcome.driver_status:#x}"
        )
    sense = outcome.sense
    status = ScsiStatus(outcome.status)
    if status != ScsiStatus.GOOD:
        checked = status == ScsiStatus.CHECK_CONDITION
        return ScsiResult(status, sense[: sense_length(sense)] if checked else b"")
    return ScsiResult.good(outcome.data[: max(0, data_in_size - outcome.resid)])


def _rewrite_block0(fd: int, timeout: float) -> ScsiResult:
    """WRITE(10) of block 0 with its own bytes: the answer says whether writing is allowed.

    :raises OSError: the block could not be read first.
    """
    capacity = _sgio_answer(fd, READ_CAPACITY10, timeout, Direction.FROM_DEV, data_in_size=8)
    if not capacity.ok or len(capacity.data) < 8:
        raise OSError(f"READ CAPACITY(10) answered {Answer(capacity, 0.0).describe()}")
    size = int.from_bytes(capacity.data[4:8], "big")
    if not 0 < size <= 8192:
        raise OSError(f"a block length of {size} bytes is not supported")
    block = _sgio_answer(fd, READ10_BLOCK0, timeout, Direction.FROM_DEV, data_in_size=size)
    if not block.ok or len(block.data) != size:
        raise OSError(f"READ(10) of block 0 answered {Answer(block, 0.0).describe()}")
    return _sgio_answer(fd, WRITE10_BLOCK0, timeout, Direction.TO_DEV, data_out=block.data)


class ManagerNode(Node):
    """A node whose commands go to a manager in this process.

    :param manager: the manager (completed).
    :param fd: the LU's file descriptor, owned by the node from now on.
    :param nexus: the I_T nexus to give with each command (named initiators), or ``None``.
    :param sgio: the fd is a SCSI device (or a multipath map) on which this node may send a
        WRITE of nothing for the write-conflict check.
    """

    def __init__(
        self,
        name: str,
        kind: PathKind,
        description: str,
        manager: PRManager,
        fd: int,
        *,
        nexus: Nexus | None = None,
        sgio: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name, kind, description)
        self.manager = manager
        self.fd = fd
        self.nexus = nexus
        self.sgio = sgio
        self._on_close = on_close
        self._worker = _Worker(f"validate {name}")

    def _answer(self, fn: Callable[[], ScsiResult], timeout: float, shield: bool) -> Answer:
        start = time.monotonic()
        result, error = self._worker.call(fn, timeout + GRACE, shield=shield)
        elapsed = time.monotonic() - start
        if result is None:
            timed_out = error == "timeout"
            if timed_out:
                self.wedged = True
                error = f"no answer within {timeout + GRACE:g} s"
            return Answer(None, elapsed, error, timed_out=timed_out)
        answer = Answer(result, elapsed)
        if answer.wedged:
            self.wedged = True
        return answer

    @override
    def execute(self, cdb: bytes, data: bytes, timeout: float, *, shield: bool = False) -> Answer:
        manager, fd, nexus = self.manager, self.fd, self.nexus
        return self._answer(lambda: manager.execute(fd, cdb, data, nexus=nexus), timeout, shield)

    @override
    def test_unit_ready(self, timeout: float, *, shield: bool = False) -> Answer | None:
        manager, fd, nexus = self.manager, self.fd, self.nexus
        answer = self._answer(lambda: manager.test_unit_ready(fd, nexus=nexus), timeout, shield)
        code = answer.sense
        if code is not None and code.additional is Asc.INVALID_COMMAND_OPERATION_CODE:
            return None  # the manager sends only PR commands
        return answer

    @override
    def write_probe(self, timeout: float, *, shield: bool = False) -> Answer | None:
        if not self.sgio:
            return None
        fd = self.fd
        return self._answer(lambda: _rewrite_block0(fd, timeout), timeout, shield)

    @override
    def settle(self, timeout: float) -> bool:
        return self._worker.settle(timeout)

    @override
    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def open_device(path: str) -> int:
    """Open *path* read-write as QEMU and sg3_utils open a disk (``O_NONBLOCK``).

    :raises ConnectError: if it cannot be opened.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        raise ConnectError(f"Could not open '{path}': {exc.strerror}", cause=exc) from None


def _remover(tree: ObjectTree, obj_id: str) -> Callable[[], None]:
    def remove() -> None:
        with contextlib.suppress(QomprError):
            tree.object_del(obj_id)

    return remove


def device_node(tree: ObjectTree, name: str, path: str, *, timeout: float) -> ManagerNode:
    """A node that sends SG_IO to *path* itself (``--device``).

    A dm-multipath map gets ``pr-manager-multipath`` (libmpathpersist registers every path),
    as qemu-pr-helper and ``qompr-pr-helper`` do for such an fd; anything else gets
    ``pr-manager-direct``.

    :raises ConnectError: if the device cannot be opened or its manager not created.
    """
    fd = open_device(path)
    try:
        multipath = is_multipath(fd)
        obj_id = f"validate-{name}"
        if multipath:
            # multipathd being down is the multipath check's to report, not a reason to stop.
            manager = tree.object_add("pr-manager-multipath", obj_id, require_multipathd=False)
            kind, what = PathKind.MULTIPATH, "dm-multipath map, pr-manager-multipath"
        else:
            manager = tree.object_add(
                "pr-manager-direct", obj_id, timeout=max(1, int(timeout * 1000))
            )
            kind, what = PathKind.DEVICE, "SG_IO, pr-manager-direct"
    except BaseException:
        os.close(fd)
        raise
    assert isinstance(manager, PRManager)
    node = ManagerNode(
        name, kind, f"{path} ({what})", manager, fd, sgio=True, on_close=_remover(tree, obj_id)
    )
    node.device = path
    return node


def manager_node(
    name: str, manager: PRManager, path: str, *, nexus: Nexus | None, fd: int | None = None
) -> ManagerNode:
    """A node whose commands go to *manager* with *nexus* (``--object`` with ``--node``).

    :param fd: an fd of *path* to use (owned by the node from now on); opened if omitted.
    """
    if fd is None:
        fd = open_device(path)
    who = f" as {nexus.initiator}" if nexus is not None else ""
    description = f"{path} ({manager.typename} '{manager.id}'{who})"
    node = ManagerNode(name, PathKind.MANAGER, description, manager, fd, nexus=nexus)
    node.device = path
    return node


class AgentNode(Node):
    """A node whose commands go through a helper socket from an agent process of its own.

    :param socket_path: the helper's socket.
    :param device: the device the agent opens and passes with each command.
    :param vm_name: the name the agent carries on its command line (``-name guest=...``).
    :param timeout: the helper manager's command timeout.
    :param initiator: the initiator name its connection gives the helper (qompr's protocol
        extension, ``qompr-pr-helper`` only), or ``None`` to be named by the helper.

    The process starts at once; :meth:`connect` then has it connect and open the device
    (:func:`helper_nodes` starts several before connecting any).
    """

    def __init__(
        self,
        name: str,
        socket_path: str,
        device: str,
        *,
        vm_name: str,
        timeout: float,
        initiator: str | None = None,
    ) -> None:
        who = f" as {initiator}" if initiator is not None else ""
        super().__init__(name, PathKind.HELPER, f"{device} through helper {socket_path}{who}")
        self.initiator = initiator
        self.device = device
        self.socket_path = socket_path
        self.vm_name = vm_name
        self._buffer = b""
        # A session of its own: a Ctrl-C meant for validate must not kill the node before
        # the clean-up has used it.  It exits when its stdin closes.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "qompr.validate._agent", "-name", f"guest={vm_name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._busy = False
        self._timeout = timeout

    def connect(self) -> None:
        """Have the agent connect to the helper and open the device.

        :raises ConnectError: if it cannot (the node is closed then).
        """
        request = {
            "op": "open",
            "socket": self.socket_path,
            "device": self.device,
            "timeout": self._timeout,
            "initiator": self.initiator,
        }
        try:
            reply = self._ask(request, self._timeout + GRACE, shield=False)
        except BaseException:
            self.close()
            raise
        if reply is None or "error" in reply:
            self.close()
            why = "no answer" if reply is None else reply["error"]
            raise ConnectError(f"node {self.name}: {why}")

    @property
    def pid(self) -> int:
        """The agent process's pid (what the helper's SO_PEERCRED sees)."""
        return self._proc.pid

    def _ask(self, request: dict[str, Any], timeout: float, *, shield: bool) -> Any:
        """Send one request line and read one reply line; ``None`` if none came in time."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        if self._busy:
            return {"error": "the previous command on this node never finished"}
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            return {"error": f"the node's process is gone ({exc.strerror})"}
        self._busy = True
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        interrupted: BaseException | None = None
        try:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    ready, _, _ = select.select([fd], [], [], left)
                except KeyboardInterrupt as exc:
                    if not shield:
                        raise
                    interrupted = exc
                    continue
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        return {"error": "the node's process exited"}
                    self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
            self._busy = False
            return json.loads(line)
        finally:
            if interrupted is not None:
                raise interrupted

    @override
    def execute(self, cdb: bytes, data: bytes, timeout: float, *, shield: bool = False) -> Answer:
        start = time.monotonic()
        reply = self._ask(
            {"op": "run", "cdb": cdb.hex(), "data": data.hex()}, timeout + GRACE, shield=shield
        )
        elapsed = time.monotonic() - start
        if reply is None:
            self.wedged = True
            return Answer(None, elapsed, f"no answer within {timeout + GRACE:g} s", timed_out=True)
        if "error" in reply:
            return Answer(None, elapsed, str(reply["error"]))
        result = ScsiResult(
            reply["status"], bytes.fromhex(reply["sense"]), bytes.fromhex(reply["data"])
        )
        answer = Answer(result, elapsed)
        if answer.wedged:
            self.wedged = True
        return answer

    @override
    def settle(self, timeout: float) -> bool:
        if not self._busy:
            return True
        proc = self._proc
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout.fileno()], [], [], timeout)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            self._buffer += chunk
            if b"\n" in self._buffer:
                _, _, self._buffer = self._buffer.partition(b"\n")
                self._busy = False
        return not self._busy

    @override
    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def helper_node(
    name: str,
    socket_path: str,
    device: str,
    *,
    timeout: float,
    vm_name: str | None = None,
    initiator: str | None = None,
) -> AgentNode:
    """A node that reaches *device* through the helper at *socket_path* (``--helper``).

    :param vm_name: the VM name its agent shows (default ``qompr-validate-<pid>-<name>``).
    :param initiator: an initiator name for the helper to use (qompr's protocol extension:
        ``qompr-pr-helper`` lets root and ``--allow-naming-uid`` uids name themselves;
        ``qemu-pr-helper`` refuses, and the node fails to connect saying so).
    :raises ConnectError: if the agent cannot connect to the helper, name its initiator, or
        open the device.
    """
    return helper_nodes(
        [(name, socket_path, device)], timeout=timeout, vm_names=[vm_name], initiators=[initiator]
    )[0]


def helper_nodes(
    specs: Sequence[tuple[str, str, str]],
    *,
    timeout: float,
    vm_names: Sequence[str | None] = (),
    initiators: Sequence[str | None] = (),
) -> list[AgentNode]:
    """Nodes (name, socket, device) through helpers, their agents started side by side.

    :param initiators: for each node, the initiator name it gives the helper, or ``None``.

    :raises ConnectError: if one cannot connect (none is left running then).
    """
    nodes: list[AgentNode] = []
    try:
        for index, (name, socket_path, device) in enumerate(specs):
            given = vm_names[index] if index < len(vm_names) else None
            vm = given or f"qompr-validate-{os.getpid()}-{name}"
            initiator = initiators[index] if index < len(initiators) else None
            nodes.append(
                AgentNode(
                    name, socket_path, device, vm_name=vm, timeout=timeout, initiator=initiator
                )
            )
        for node in nodes:
            node.connect()
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return nodes
