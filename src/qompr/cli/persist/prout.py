# SPDX-License-Identifier: MIT
"""The PR OUT parameter lists sg_persist sends (its ``prout_work`` and ``prout_reg_move_work``).

The TransportIDs given with ``-X`` travel byte for byte as given: through qompr's codecs when
they encode back to the same bytes, as raw bytes in the same layout otherwise.
"""

from __future__ import annotations

from qompr.cli.persist.options import Opts
from qompr.errors import ScsiError
from qompr.scsi import PrOutParameters
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import TransportID

__all__ = ["PROUT_SA_TEXT", "basic_parameters", "register_and_move_parameters"]

PROUT_SA_TEXT = (
    "Register",
    "Reserve",
    "Release",
    "Clear",
    "Preempt",
    "Preempt and abort",
    "Register and ignore existing key",
    "Register and move",
    "Replace lost reservation",
)


def _as_transport_ids(tids: bytes) -> tuple[TransportID, ...] | None:
    """*tids* as qompr TransportIDs, if they encode back to exactly these bytes (FC, SAS and
    iSCSI in SPC-4 form do; other protocols and odd hex input do not)."""
    try:
        decoded = TransportID.decode_list(tids)
    except ScsiError:
        return None
    return decoded if b"".join(t.to_bytes() for t in decoded) == tids else None


def basic_parameters(op: Opts, tids: bytes) -> bytes:
    """The basic parameter list sg_persist sends: 24 bytes, then with TransportIDs SPEC_I_PT=1,
    their length and the TransportIDs, byte for byte as given."""
    decoded = _as_transport_ids(tids) if tids else ()
    carried = decoded is not None
    params = PrOutParameters(
        reservation_key=op.param_rk,
        sa_key=op.param_sark,
        spec_i_pt=bool(tids) and carried,
        all_tg_pt=op.param_alltgpt,
        aptpl=op.param_aptpl,
        transport_ids=decoded or (),
    ).to_bytes()
    if carried:
        return params
    # TransportIDs the codec cannot carry: SPEC_I_PT, their length and the bytes as given.
    head = bytearray(params)
    head[20] |= 0x08
    return bytes(head) + len(tids).to_bytes(4, "big") + tids


def register_and_move_parameters(op: Opts, tids: bytes) -> bytes:
    """The REGISTER AND MOVE list sg_persist sends, its TransportID byte for byte as given."""
    decoded = _as_transport_ids(tids)
    if decoded is not None and len(decoded) == 1:
        return RegisterAndMoveParameters(
            transport_id=decoded[0],
            reservation_key=op.param_rk,
            sa_key=op.param_sark,
            unreg=op.param_unreg,
            aptpl=op.param_aptpl,
            relative_target_port=op.param_rtp,
        ).to_bytes()
    # The same layout (RegisterAndMoveParameters') with a TransportID the codec cannot carry.
    params = bytearray(24)
    params[0:8] = op.param_rk.to_bytes(8, "big")
    params[8:16] = op.param_sark.to_bytes(8, "big")
    params[17] = (0x02 if op.param_unreg else 0) | (0x01 if op.param_aptpl else 0)
    params[18:20] = op.param_rtp.to_bytes(2, "big")
    params[20:24] = len(tids).to_bytes(4, "big")
    return bytes(params) + tids
