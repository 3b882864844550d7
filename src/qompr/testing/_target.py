# SPDX-License-Identifier: MIT
"""A multi-initiator harness: one logical unit behind a pr-manager, reached by several named
initiators through numbered target ports.

Persistent reservations are about who sends a command, so a test of a manager needs several
initiators on one logical unit.  :class:`ManagerTarget` names them (``"A"``, ``"B"``...),
gives each an I_T nexus (an iSCSI initiator port with its own ISID, or the TransportIDs a
test chooses), and sends their commands to the manager with that nexus: what
``qompr-pr-helper`` does for its clients, without a daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

from qompr.managers import PR_IN
from qompr.managers import PR_OUT
from qompr.managers import PRManager
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import ScsiResult
from qompr.scsi import TransportID
from qompr.testing._errors import UnsupportedCommandError

__all__ = ["MANAGER_OPCODES", "ManagerTarget", "iscsi_nexus"]

#: The commands that reach a pr-manager: PR IN/OUT (``execute``) and TEST UNIT READY
#: (``test_unit_ready``, which reports a pending unit attention).
MANAGER_OPCODES: frozenset[int] = frozenset({PR_IN, PR_OUT, Opcode.TEST_UNIT_READY})


def iscsi_nexus(name: str, index: int, port: int = 1) -> Nexus:
    """The I_T nexus of initiator *name* through target port *port*: an iSCSI initiator
    port (IQN ``iqn.1994-05.com.example:NAME`` and ISID ``23D000000000h + index``), as LIO
    reports iSCSI initiators in READ FULL STATUS."""
    tid = TransportID.iscsi(f"iqn.1994-05.com.example:{name.lower()}", isid=0x23D000000000 + index)
    return Nexus(name, port, transport_id=tid)


class ManagerTarget:
    """One logical unit (*fd*) behind *manager*, reached by *initiators* through target
    ports ``1..ports``.

    Port indexes are RELATIVE TARGET PORT IDENTIFIERs.  This is the target
    :func:`qompr.testing.scenario.run` drives.

    :param manager: a completed pr-manager that honours the ``nexus`` of its commands.
    :param fd: the logical unit's open file (for ``pr-manager-emulated`` any file: a fresh
        one is a fresh logical unit unless ``lu-name`` is set).
    :param initiators: the initiator names.
    :param ports: the number of target ports.
    :param transport_ids: each initiator's TransportID, instead of :func:`iscsi_nexus`'s.
    """

    #: The opcodes :meth:`command` sends; scenarios with other commands do not apply.
    opcodes: frozenset[int] = MANAGER_OPCODES

    def __init__(
        self,
        manager: PRManager,
        fd: int,
        initiators: Sequence[str] = ("A", "B", "C"),
        ports: int = 1,
        *,
        transport_ids: Mapping[str, TransportID] | None = None,
    ) -> None:
        self.manager = manager
        self.fd = fd
        if transport_ids is None:
            self._nexus = {
                (name, port): iscsi_nexus(name, index, port)
                for index, name in enumerate(initiators)
                for port in range(1, ports + 1)
            }
        else:
            self._nexus = {
                (name, port): Nexus(name, port, transport_id=transport_ids[name])
                for name in initiators
                for port in range(1, ports + 1)
            }
        self._names = {n.transport_id: n.initiator for n in self._nexus.values()}

    def nexus(self, initiator: str, port: int = 1) -> Nexus:
        """The I_T nexus of *initiator* through target port *port*.

        :raises KeyError: for an initiator or port the target was not made with.
        """
        return self._nexus[(initiator, port)]

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes = b"") -> ScsiResult:
        """Send one command from *initiator* through target port *port*.

        :raises UnsupportedCommandError: for an opcode outside :attr:`opcodes`.
        """
        nexus = self.nexus(initiator, port)
        if cdb[0] in (PR_IN, PR_OUT):
            return self.manager.execute(self.fd, cdb, data, nexus=nexus)
        if cdb[0] == Opcode.TEST_UNIT_READY:
            return self.manager.test_unit_ready(self.fd, nexus=nexus)
        return self.other_command(nexus, cdb, data)

    def other_command(self, nexus: Nexus, cdb: bytes, data: bytes) -> ScsiResult:
        """A command other than PR IN/OUT and TEST UNIT READY.  A pr-manager cannot carry
        one; a subclass for a manager with more to offer overrides this (and
        :attr:`opcodes`).

        :raises UnsupportedCommandError: always, here.
        """
        raise UnsupportedCommandError(
            f"{self.manager.typename} '{self.manager.id}' cannot carry opcode "
            f"{cdb[0]:02x}h (only PR IN/OUT and TEST UNIT READY reach a pr-manager)"
        )

    def transport_id(self, initiator: str) -> TransportID:
        """The TransportID of *initiator* (as READ FULL STATUS reports it)."""
        return self._nexus[(initiator, 1)].transport_id

    def rtpi(self, port: int, initiator: str) -> int:
        """The RELATIVE TARGET PORT IDENTIFIER of port index *port*: the index itself."""
        return port

    def initiator_of(self, tid: TransportID) -> str | None:
        """The initiator whose TransportID *tid* is, or ``None``."""
        return self._names.get(tid)
