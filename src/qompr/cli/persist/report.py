# SPDX-License-Identifier: MIT
"""``qompr persist --json``: the command, the answer and the decoded data as one JSON object.

The data are decoded with qompr's own codecs (:mod:`qompr.scsi`), not from sg_persist's text.
"""

from __future__ import annotations

import os
from typing import Any

from qompr.cli.persist.prin import PR_TYPE_TEXT
from qompr.cli.sglib.passthrough import Response
from qompr.cli.sglib.texts import asc_text
from qompr.errors import ScsiError
from qompr.scsi import FullStatusDescriptor
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.scsi import decode_pr_in_data
from qompr.scsi import decode_pr_out_parameters

__all__ = ["prin_json", "prout_json", "response_json"]


def _key(value: int) -> str:
    return f"0x{value:x}"


def _type_json(value: PrType | int) -> dict[str, Any]:
    return {"type": int(value), "type_name": PR_TYPE_TEXT[int(value) & 0x0F]}


def _scope_json(value: PrScope | int) -> str | int:
    return "LU_SCOPE" if value == PrScope.LU_SCOPE else int(value)


def _tid_json(tid: TransportID) -> dict[str, Any]:
    return {
        "protocol": tid.protocol.name,
        "identifier": tid.identifier,
        "format_code": tid.format_code,
    }


def _descriptor_json(desc: FullStatusDescriptor) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": _key(desc.reservation_key),
        "all_tg_pt": desc.all_tg_pt,
        "relative_target_port": None if desc.all_tg_pt else desc.relative_target_port,
        "reservation_holder": desc.r_holder,
        "transport_id": _tid_json(desc.transport_id),
    }
    if desc.r_holder:
        out["scope"] = _scope_json(desc.scope)
        out.update(_type_json(desc.type))
    return out


def prin_json(sa: int, data: bytes) -> dict[str, Any]:
    """The PR IN data decoded with qompr's codecs."""
    decoded = decode_pr_in_data(sa, data)
    if isinstance(decoded, ReadKeysData):
        return {"generation": decoded.generation, "keys": [_key(k) for k in decoded.keys]}
    if isinstance(decoded, ReadReservationData):
        reservation: dict[str, Any] | None = None
        if decoded.type is not None:
            reservation = {"key": _key(decoded.reservation_key)}
            reservation["scope"] = _scope_json(decoded.scope)
            reservation.update(_type_json(decoded.type))
        return {"generation": decoded.generation, "reservation": reservation}
    if isinstance(decoded, ReportCapabilitiesData):
        return {
            "rlr_c": decoded.rlr_c,
            "crh": decoded.crh,
            "sip_c": decoded.sip_c,
            "atp_c": decoded.atp_c,
            "ptpl_c": decoded.ptpl_c,
            "tmv": decoded.tmv,
            "allow_commands": decoded.allow_commands,
            "ptpl_a": decoded.ptpl_a,
            "types": [PR_TYPE_TEXT[t] for t in sorted(decoded.types)] if decoded.tmv else [],
        }
    assert isinstance(decoded, ReadFullStatusData)
    return {
        "generation": decoded.generation,
        "registrations": [_descriptor_json(d) for d in decoded.descriptors],
    }


def prout_json(sa: int, params: bytes) -> dict[str, Any]:
    """The PR OUT parameter list decoded with qompr's codecs."""
    decoded = decode_pr_out_parameters(sa, params)
    out: dict[str, Any] = {
        "reservation_key": _key(decoded.reservation_key),
        "sa_key": _key(decoded.sa_key),
        "aptpl": decoded.aptpl,
    }
    if isinstance(decoded, RegisterAndMoveParameters):
        out["unreg"] = decoded.unreg
        out["relative_target_port"] = decoded.relative_target_port
        out["transport_id"] = _tid_json(decoded.transport_id)
    else:
        out["all_tg_pt"] = decoded.all_tg_pt
        out["spec_i_pt"] = decoded.spec_i_pt
        out["transport_ids"] = [_tid_json(t) for t in decoded.transport_ids]
    return out


def response_json(resp: Response) -> dict[str, Any]:
    status: str | int | None = None
    if resp.status is not None:
        known = resp.status in ScsiStatus._value2member_map_
        status = ScsiStatus(resp.status).name if known else resp.status
    sense: dict[str, Any] | None = None
    if resp.sense and any(resp.sense) and (resp.sense[0] & 0x7F) in (0x70, 0x71, 0x72, 0x73):
        try:
            decoded = SenseData.from_bytes(resp.sense)
        except ScsiError:
            decoded = None
        if decoded is not None:
            sense = {
                "key": decoded.key.description,
                "asc": decoded.asc,
                "ascq": decoded.ascq,
                "text": asc_text(decoded.asc, decoded.ascq).removeprefix("Additional sense: "),
                "deferred": decoded.deferred,
            }
    return {
        "status": status,
        "sense": sense,
        "os_error": os.strerror(resp.os_error) if resp.os_error else None,
        "failure": resp.failure,
    }
