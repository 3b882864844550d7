# SPDX-License-Identifier: MIT
"""Helpers shared by the emulated-engine tests: the engine's own target (every command, not
only what reaches a pr-manager) and a manager factory.  The CDB builders and the generic
multi-initiator harness are :mod:`qompr.testing`'s."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import ScsiResult
from qompr.scsi import TransportID
from qompr.testing import ManagerTarget
from qompr.testing import pr_out_command as pr_out

__all__ = ["ENGINE_OPCODES", "EmulatedTarget", "new_manager", "pr_in", "pr_out"]

#: Commands the engine executes itself (the rest go through ``check_command``).
ENGINE_OPCODES = frozenset(
    {
        Opcode.PERSISTENT_RESERVE_IN,
        Opcode.PERSISTENT_RESERVE_OUT,
        Opcode.RESERVE_6,
        Opcode.RELEASE_6,
        Opcode.RESERVE_10,
        Opcode.RELEASE_10,
        Opcode.REQUEST_SENSE,
    }
)


def pr_in(action: PrInAction | int, alloc: int = 8192) -> bytes:
    """A PR IN CDB."""
    return PrInCdb(action, alloc).to_bytes()


class EmulatedTarget(ManagerTarget):
    """A :class:`qompr.testing.ManagerTarget` on a ``pr-manager-emulated`` object that
    also carries every other command: the engine executes SPC-2 RESERVE/RELEASE and
    REQUEST SENSE, and ``check_command`` decides whether any other may run.

    Initiator names map to iSCSI initiator ports with ISIDs, or to the TransportIDs given in
    *transport_ids* (the LIO replay uses the SAS TransportIDs tcm_loop reports, so that both
    sides' PR IN data have the same layout); port indexes are RTPIs.  The fd is -1: the
    manager names its one logical unit with ``lu-name``.
    """

    opcodes = frozenset(range(256))

    def __init__(
        self,
        manager: PRManagerEmulated,
        initiators: Sequence[str],
        ports: int,
        *,
        transport_ids: Mapping[str, TransportID] | None = None,
    ) -> None:
        super().__init__(manager, -1, initiators, ports, transport_ids=transport_ids)
        self.emulated = manager

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes = b"") -> ScsiResult:
        nexus = self.nexus(initiator, port)
        if cdb[0] in ENGINE_OPCODES:
            return self.emulated.execute(self.fd, cdb, data, nexus=nexus)
        return self.other_command(nexus, cdb, data)

    def other_command(self, nexus: Nexus, cdb: bytes, data: bytes) -> ScsiResult:
        result = self.emulated.check_command(self.fd, cdb, nexus=nexus)
        return result if result is not None else ScsiResult.good()


def new_manager(tree: ObjectTree, obj_id: str = "emu0", **props: Any) -> PRManagerEmulated:
    """A completed ``pr-manager-emulated`` (``lu-name`` defaults to ``lu0``)."""
    props.setdefault("lu_name", "lu0")
    obj = tree.object_add("pr-manager-emulated", obj_id, **props)
    assert isinstance(obj, PRManagerEmulated)
    return obj
