# SPDX-License-Identifier: MIT
"""Reservations that follow a live-migrating VM: what a VM manager runs at the switch-over.

For QEMU before 11 (no ``migrate-pr``), the VM manager does what QEMU 11's destination does,
better (``docs/migration.md``):

1. before (or at) the switch-over, learn the guest's key and reservation type from the
   *source* helper's tracking (:func:`query_tracking` on its control socket), or know them;
2. at the switch-over, with the guest paused, :func:`take_over` through the *destination*:
   the destination nexus registers the guest's key, takes its reservation, and the source's
   registration goes (:class:`Migration` wraps the three steps);
3. if the migration fails after that, :func:`roll_back`: the same through the source.

The destination path is the destination helper's socket and an fd of the disk that the VM
manager already holds (:func:`helper_path`): the helper never opens a path for a caller.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any
from typing import Final

import attrs

from qompr.errors import QomprError
from qompr.managers import PRManager
from qompr.managers import PRManagerHelper
from qompr.managers._handover import HandoverError
from qompr.managers._handover import HandoverReason
from qompr.managers._handover import HandoverResult
from qompr.managers._handover import PRPath
from qompr.managers._handover import take_over
from qompr.qom import ObjectTree
from qompr.qom import TypeRegistry

__all__ = [
    "ControlError",
    "HandoverError",
    "HandoverReason",
    "HandoverResult",
    "Migration",
    "PRPath",
    "TrackedReservation",
    "close_path",
    "helper_path",
    "query_tracking",
    "roll_back",
    "take_over",
]

#: How long a control-socket exchange may take.
CONTROL_TIMEOUT: Final = 5.0


class ControlError(QomprError):
    """The helper's control socket could not be reached, or answered an error."""


@attrs.frozen
class TrackedReservation:
    """What a helper knows of one client VM's registration on one logical unit, learnt from
    the guest's successful PR OUT commands as QEMU 11 learns it (``query-pr-tracking``).

    :param pid: the client (QEMU) process id.
    :param uid: its user id.
    :param vm: the guest name from its ``-name`` option, or ``None``.
    :param initiator: the initiator name the helper's backend gave the connection (emulated
        backends), ``None`` for a real device (the host's initiator).
    :param target_port: its RELATIVE TARGET PORT IDENTIFIER, or ``None``.
    :param lu: the logical unit (``rdev:MAJ:MIN``, ``ino:DEV:INO``, or an emulated
        ``lu-name``).
    :param key: the guest's reservation key (0: not registered).
    :param type: the reservation type it holds (0: none).
    :param updated: :func:`time.time` of the last change.
    :param connected: whether the client's connection is open.
    :param stale: a REGISTER AND MOVE succeeded since: not tracked (as in QEMU), so the key
        and type may be wrong.
    """

    pid: int
    uid: int
    vm: str | None
    initiator: str | None
    target_port: int | None
    lu: str
    key: int
    type: int
    updated: float
    connected: bool
    stale: bool = False

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TrackedReservation:
        """From one entry of ``query-pr-tracking``'s answer."""
        return cls(
            pid=int(value["pid"]),
            uid=int(value["uid"]),
            vm=value.get("vm"),
            initiator=value.get("initiator"),
            target_port=value.get("target-port"),
            lu=str(value["lu"]),
            key=int(value["key"], 16),
            type=int(value["type"]),
            updated=float(value["updated"]),
            connected=bool(value["connected"]),
            stale=bool(value.get("stale", False)),
        )


def _control_exchange(path: str, command: dict[str, Any], timeout: float) -> Any:
    """One QMP-shaped command on a helper's control socket; its ``return`` value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise ControlError(f"Failed to connect to '{path}': {exc.strerror}") from exc
        lines = _lines(sock, path)
        try:
            next(lines)  # the greeting
            sock.sendall(b'{"execute": "qmp_capabilities"}\n')
            _answer(next(lines), path)
            sock.sendall(json.dumps(command).encode() + b"\n")
            return _answer(next(lines), path)
        except OSError as exc:
            raise ControlError(f"Control socket '{path}': {exc}") from exc


def _lines(sock: socket.socket, path: str) -> Iterator[bytes]:
    buf = b""
    while True:
        while b"\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ControlError(f"Control socket '{path}' closed the connection")
            buf += data
        line, buf = buf.split(b"\n", 1)
        yield line


def _answer(line: bytes, path: str) -> Any:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"Control socket '{path}' sent bad JSON: {exc}") from exc
    if "error" in message:
        raise ControlError(message["error"].get("desc", "error"))
    return message.get("return")


def query_tracking(
    control: str,
    *,
    pid: int | None = None,
    vm: str | None = None,
    lu: str | None = None,
    initiator: str | None = None,
    timeout: float = CONTROL_TIMEOUT,
) -> list[TrackedReservation]:
    """``query-pr-tracking`` on a helper's control socket (``qompr-pr-helper --control``).

    :param control: the control socket's path (mode 0600: its owner, root, asks).
    :param pid: only this client process.
    :param vm: only clients with this guest name.
    :param lu: only this logical unit.
    :param initiator: only this initiator name.
    :raises ControlError: unreachable, or an error answer.
    """
    arguments: dict[str, Any] = {}
    for name, value in (("pid", pid), ("vm", vm), ("lu", lu), ("initiator", initiator)):
        if value is not None:
            arguments[name] = value
    answer = _control_exchange(
        control, {"execute": "query-pr-tracking", "arguments": arguments}, timeout
    )
    return [TrackedReservation.from_json(entry) for entry in answer]


def helper_path(
    socket_path: str,
    fd: int,
    *,
    initiator: str | None = None,
    target_port: int | None = None,
    command_timeout: float = 30.0,
) -> PRPath:
    """A path through a helper's socket with an fd the caller holds (the VM manager's own fd
    of the disk, as QEMU passes its own with every command).

    The helper sends the commands on the fd it receives: for a real device, through that
    host's initiator port, the destination's nexus whoever sends them.  With an emulated
    backend each client is its own initiator, so the VM manager speaks as the destination
    QEMU's by naming it (*initiator*, e.g. ``pid:4242`` or ``vm:guest1``), which
    ``qompr-pr-helper`` grants to root and ``--allow-naming-uid`` users only.  The caller
    closes the fd; :func:`close_path` closes the connection.

    :raises ConnectError: the helper cannot be reached (QEMU's texts).
    """
    types = TypeRegistry()
    types.register_all([PRManager, PRManagerHelper])
    tree = ObjectTree(types)
    manager = tree.object_add("pr-manager-helper", "migration", path=socket_path, complete=False)
    assert isinstance(manager, PRManagerHelper)
    manager.command_timeout = command_timeout
    if initiator is not None or target_port is not None:
        manager.use_extension(initiator=initiator, target_port=target_port)
    tree.complete(manager)
    return PRPath(manager, fd)


def close_path(path: PRPath) -> None:
    """Close what :func:`helper_path` opened (not the fd)."""
    with contextlib.suppress(QomprError):
        path.manager.tree.object_del(path.manager.id or "migration")


def roll_back(source: PRPath, key: int, reservation_type: int = 0) -> HandoverResult:
    """Give the registration and reservation back to the source (a migration that failed
    after :func:`take_over`): :func:`take_over` through the *source*.  When the destination
    never took over, this finds the source holding the key and changes nothing
    (``already-held``)."""
    return take_over(source, key, reservation_type)


class Migration:
    """One disk's reservation across one live migration.

    :param destination: the path through the destination (:func:`helper_path`).
    :param source: the path through the source, for :meth:`roll_back`; ``None`` when the
        source is gone.
    :param key: the guest's key; ``None``: learn it with :meth:`prepare`.
    :param reservation_type: the type it holds (0: none); ``None``: learn it.
    """

    def __init__(
        self,
        destination: PRPath,
        *,
        source: PRPath | None = None,
        key: int | None = None,
        reservation_type: int | None = None,
    ) -> None:
        self.destination = destination
        self.source = source
        self.key = key
        self.reservation_type = reservation_type
        #: The handover's result, once :meth:`switch_over` ran.
        self.handed_over: HandoverResult | None = None

    def prepare(
        self,
        control: str,
        *,
        pid: int | None = None,
        vm: str | None = None,
        lu: str | None = None,
    ) -> TrackedReservation:
        """Learn the key and type from the source helper's tracking (one entry must match).

        :raises ControlError: unreachable, or not exactly one entry with a key matches.
        """
        entries = [
            e for e in query_tracking(control, pid=pid, vm=vm, lu=lu) if e.key and not e.stale
        ]
        if len(entries) != 1:
            raise ControlError(
                f"{len(entries)} tracked registrations match on '{control}' (need exactly one)"
            )
        (entry,) = entries
        self.key = entry.key
        self.reservation_type = entry.type
        return entry

    def switch_over(self) -> HandoverResult:
        """At the switch-over (the guest paused): the destination takes over."""
        if self.key is None:
            raise HandoverError(
                "the guest's key is unknown (prepare() or key=)", reason=HandoverReason.INVALID
            )
        self.handed_over = take_over(self.destination, self.key, self.reservation_type or 0)
        return self.handed_over

    def roll_back(self) -> HandoverResult | None:
        """The migration failed: the source gets everything back.  ``None`` when the
        handover never ran (the source still holds it all)."""
        if self.handed_over is None:
            return None
        if self.source is None:
            raise HandoverError(
                "cannot roll back: no path through the source", reason=HandoverReason.INVALID
            )
        assert self.key is not None
        result = roll_back(self.source, self.key, self.handed_over.type)
        self.handed_over = None
        return result
