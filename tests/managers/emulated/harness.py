# SPDX-License-Identifier: MIT
"""Helpers shared by the emulated-engine tests: CDB builders and an in-process target."""

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
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import TransportID

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


def pr_out(
    action: PrOutAction | int,
    *,
    rk: int = 0,
    sark: int = 0,
    pr_type: int = 0,
    scope: int = 0,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    transport_ids: Sequence[TransportID] = (),
) -> tuple[bytes, bytes]:
    """A PR OUT CDB and its basic parameter list."""
    data = PrOutParameters(
        reservation_key=rk,
        sa_key=sark,
        aptpl=aptpl,
        all_tg_pt=all_tg_pt,
        spec_i_pt=bool(transport_ids),
        transport_ids=tuple(transport_ids),
    ).to_bytes()
    return PrOutCdb(action, scope, pr_type, len(data)).to_bytes(), data


def pr_in(action: PrInAction | int, alloc: int = 8192) -> bytes:
    """A PR IN CDB."""
    return PrInCdb(action, alloc).to_bytes()


def iscsi_nexus(name: str, index: int, port: int = 1) -> Nexus:
    """An initiator with an iSCSI port TransportID (IQN plus ISID), as LIO reports them."""
    tid = TransportID.iscsi(f"iqn.1994-05.com.example:{name.lower()}", isid=0x23D000000000 + index)
    return Nexus(name, port, transport_id=tid)


class EmulatedTarget:
    """A :class:`scenario.Target` backed by a ``pr-manager-emulated`` object.

    Initiator names map to iSCSI initiator ports with ISIDs, or to the TransportIDs given in
    *transport_ids* (the LIO replay uses the SAS TransportIDs tcm_loop reports, so that both
    sides' PR IN data have the same layout); port indexes are RTPIs.
    """

    def __init__(
        self,
        manager: PRManagerEmulated,
        initiators: Sequence[str],
        ports: int,
        *,
        transport_ids: Mapping[str, TransportID] | None = None,
    ) -> None:
        self.manager = manager
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
        return self._nexus[(initiator, port)]

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        nexus = self._nexus[(initiator, port)]
        if cdb[0] in ENGINE_OPCODES:
            return self.manager.execute(-1, cdb, data, nexus=nexus)
        result = self.manager.check_command(-1, cdb, nexus=nexus)
        return result if result is not None else ScsiResult.good()

    def transport_id(self, initiator: str) -> TransportID:
        return self._nexus[(initiator, 1)].transport_id

    def rtpi(self, port: int, initiator: str) -> int:
        return port

    def initiator_of(self, tid: TransportID) -> str | None:
        return self._names.get(tid)


def new_manager(tree: ObjectTree, obj_id: str = "emu0", **props: Any) -> PRManagerEmulated:
    """A completed ``pr-manager-emulated`` (``lu-name`` defaults to ``lu0``)."""
    props.setdefault("lu_name", "lu0")
    obj = tree.object_add("pr-manager-emulated", obj_id, **props)
    assert isinstance(obj, PRManagerEmulated)
    return obj
