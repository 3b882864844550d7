# SPDX-License-Identifier: MIT
"""The words of the report: types, keys, reservations, and a hint for each kind of answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from qompr.scsi import Asc
from qompr.scsi import PrType
from qompr.scsi import ReadReservationData
from qompr.scsi import SenseKey
from qompr.validate._nodes import Answer
from qompr.validate._nodes import Node
from qompr.validate._nodes import PathKind

__all__ = ["answer_hint", "keys_text", "nexus_hint", "reservation_text", "type_text"]

_TYPE_NAMES: Final = {
    PrType.WE: "Write Exclusive",
    PrType.EA: "Exclusive Access",
    PrType.WE_RO: "Write Exclusive - Registrants Only",
    PrType.EA_RO: "Exclusive Access - Registrants Only",
    PrType.WE_AR: "Write Exclusive - All Registrants",
    PrType.EA_AR: "Exclusive Access - All Registrants",
}


def type_text(type_: PrType | int) -> str:
    """``Write Exclusive - Registrants Only (WE_RO, 5)``."""
    try:
        member = PrType(type_)
    except ValueError:
        return f"type {int(type_)}"
    return f"{_TYPE_NAMES[member]} ({member.name}, {int(member)})"


def keys_text(keys: Sequence[int]) -> str:
    """``no registrations``, ``1 registration (key 0xa)``, ``2 registrations (keys ...)``."""
    if not keys:
        return "no registrations"
    listed = ", ".join(f"0x{k:x}" for k in keys)
    if len(keys) == 1:
        return f"1 registration (key {listed})"
    return f"{len(keys)} registrations (keys {listed})"


def reservation_text(res: ReadReservationData) -> str:
    if not res.has_reservation or res.type is None:
        return "no reservation"
    return f"{type_text(res.type)} with key 0x{res.reservation_key:x}"


def answer_hint(node: Node, answer: Answer, type_: PrType | None = None) -> str:
    """What to look at when *node*'s command ended with *answer*."""
    if answer.wedged:
        return (
            "The LU or the path to it stopped answering; a cluster would hang here.  Check the "
            "target and the path (multipath failover, a gateway), then run validate again"
        )
    if answer.result is None:
        if node.kind is PathKind.HELPER:
            return (
                "The helper could not be asked: is it running, may this user connect to its "
                "socket, and may the helper open the device?"
            )
        return "The command could not be sent; see the message"
    if answer.conflict:
        return (
            "RESERVATION CONFLICT: another initiator holds a reservation, or this node's I_T "
            "nexus is registered with a key that is not its own"
        )
    code = answer.sense
    if code is None:
        return "See docs/validate.md for what each answer means"
    extra = code.additional
    if node.kind is PathKind.DEVICE and extra is Asc.IO_PROCESS_TERMINATED:
        return (
            "SG_IO failed on the device (QEMU's mapping of an errno): it is no SCSI device "
            "(a file, a partition, a virtio-blk disk), or this user may not send SG_IO to it"
        )
    if extra is Asc.INVALID_COMMAND_OPERATION_CODE:
        if node.kind is PathKind.HELPER:
            return (
                "The helper refused the command: it needs the device opened read-write and "
                "must reach it (qemu-pr-helper runs as root with CAP_SYS_RAWIO); without a "
                "helper QEMU answers this for every PR command"
            )
        if node.kind is PathKind.MANAGER:
            return "The manager does not execute this command"
        return (
            "The device does not support persistent reservations (not a SCSI device, or PR "
            "switched off on the target)"
        )
    if extra is Asc.INVALID_FIELD_IN_CDB and type_ is not None:
        return f"The target refuses {type_text(type_)}; the cluster needs it"
    if extra is Asc.INVALID_FIELD_IN_PARAMETER_LIST:
        return "The target refuses a field of the parameter list (APTPL, ALL_TG_PT)"
    if code.key == SenseKey.NOT_READY and extra is Asc.LUN_COMMUNICATION_FAILURE:
        return (
            "LIO answers this when the node is not registered, and for every state change "
            "when it cannot write its APTPL file (/var/target/pr must exist)"
        )
    if code.key == SenseKey.ABORTED_COMMAND and extra is Asc.LUN_COMMUNICATION_FAILURE:
        return (
            "pr-manager-helper answers this when the helper is gone or did not answer in "
            "time: is the helper running, and can it reach the device?"
        )
    return "See docs/validate.md for what each answer means"


def nexus_hint(first: Node, second: Node) -> str:
    """What to do when *first* and *second* turned out to be one I_T nexus."""
    if first.kind is PathKind.MULTIPATH or second.kind is PathKind.MULTIPATH:
        return (
            "A path of one node is a path of the other's multipath map: give each node "
            "paths of its own (another host, another initiator port)"
        )
    if first.kind is PathKind.MANAGER and second.kind is PathKind.MANAGER:
        return "The manager gives both nodes one I_T nexus: give each --node its own name"
    if first.device == second.device:
        return (
            "Both reach the LU through the same device path, i.e. through this host's one "
            "initiator port: VMs on one host sharing a helper are one initiator (why KubeVirt "
            "keeps such VMs apart).  Give each VM an initiator of its own (an iSCSI session "
            "or FC NPIV port, one DEVICE per node here), or put the VMs on different hosts"
        )
    return (
        "The two device paths lead through one initiator port to one target port: give each "
        "node an initiator port (or target port) of its own"
    )
