# SPDX-License-Identifier: MIT
"""Who is who: the logical unit behind a file descriptor, and the initiator behind a peer.

* **Logical unit.**  Persistent reservations belong to a logical unit, which for the
  emulation is the file the fd refers to: ``st_rdev`` for block and character devices (two
  device nodes of one disk are one LU), else ``st_dev``/``st_ino`` (two paths or hard links of
  one image are one LU).  The ``lu-name`` property overrides this.
* **Initiator.**  In process the caller passes the I_T nexus.  Behind the helper daemon each
  client process is its own initiator, named by a rule applied to its SO_PEERCRED pid:
  ``pid`` (``pid:<pid>``) or ``vm-name`` (``vm:<name>`` from QEMU's ``-name guest=<name>`` or
  ``-name <name>`` on the peer's command line, falling back to the pid).  The name then gives
  a stable iSCSI TransportID (:func:`qompr.scsi.derive_transport_id`), so READ FULL
  STATUS shows the same initiator for the same VM across reconnections.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qompr.scsi import Nexus

if TYPE_CHECKING:
    import socket

__all__ = [
    "InitiatorRule",
    "initiator_name",
    "lu_identity",
    "nexus_for_peer",
    "nexus_for_pid",
    "process_cmdline",
    "split_qemu_options",
    "vm_name",
]


def lu_identity(fd: int) -> str:
    """The logical unit behind *fd*: ``rdev:MAJ:MIN`` for devices, else ``ino:DEV:INO``.

    :raises OSError: if *fd* is not an open file descriptor.
    """
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return f"rdev:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"ino:{st.st_dev}:{st.st_ino}"


class InitiatorRule(enum.Enum):
    """How a client process is named as an initiator (the ``initiator-rule`` property)."""

    #: Each process is its own initiator: ``pid:<pid>``.
    PID = "pid"
    #: The VM name from QEMU's ``-name`` option: ``vm:<name>`` (``pid:<pid>`` without one).
    VM_NAME = "vm-name"


def process_cmdline(pid: int, *, proc: str = "/proc") -> list[str]:
    """The argument vector of process *pid*, from ``/proc/PID/cmdline``.

    :raises OSError: if the process is gone or not readable.
    """
    with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
        raw = f.read()
    return [arg.decode(errors="surrogateescape") for arg in raw.split(b"\0")[:-1]]


def split_qemu_options(value: str) -> list[tuple[str | None, str]]:
    """Split a QemuOpts value ``a=1,b=2,implied`` into (key, value) pairs.

    A doubled comma is a literal comma (QEMU's escaping); a part without ``=`` has key
    ``None`` (the implied key).
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == ",":
            if value[i + 1 : i + 2] == ",":
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    out: list[tuple[str | None, str]] = []
    for part in parts:
        key, sep, val = part.partition("=")
        out.append((key, val) if sep else (None, part))
    return out


def vm_name(argv: Sequence[str]) -> str | None:
    """The guest name QEMU's ``-name`` gives in *argv*, or ``None``.

    ``-name guest=NAME,...`` and the legacy ``-name NAME,...`` (the implied key is ``guest``)
    are understood, with ``--name`` as well; the last one wins, as QEMU merges ``-name``.
    """
    name: str | None = None
    for index, arg in enumerate(argv[:-1]):
        if arg not in ("-name", "--name"):
            continue
        for position, (key, value) in enumerate(split_qemu_options(argv[index + 1])):
            if key == "guest" or (key is None and position == 0):
                name = value
    return name or None


def initiator_name(pid: int, rule: InitiatorRule | str, *, proc: str = "/proc") -> str:
    """The initiator name *rule* gives the process *pid* (``pid:123`` or ``vm:guest1``)."""
    if InitiatorRule(rule) is InitiatorRule.VM_NAME:
        try:
            name = vm_name(process_cmdline(pid, proc=proc))
        except OSError:
            name = None
        if name:
            return f"vm:{name}"
    return f"pid:{pid}"


def nexus_for_pid(
    pid: int, rule: InitiatorRule | str, *, target_port: int = 1, proc: str = "/proc"
) -> Nexus:
    """The I_T nexus of the client process *pid* through *target_port*."""
    return Nexus(initiator_name(pid, rule, proc=proc), target_port)


def nexus_for_peer(
    sock: socket.socket, rule: InitiatorRule | str, *, target_port: int = 1
) -> Nexus:
    """The I_T nexus of the peer of the unix socket *sock* (SO_PEERCRED pid, then *rule*)."""
    # Loaded here: a manager in process (qompr persist --object) has no peer, nor socket.
    from qompr.linux import peer_credentials

    return nexus_for_pid(peer_credentials(sock).pid, rule, target_port=target_port)
