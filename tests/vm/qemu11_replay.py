# SPDX-License-Identifier: MIT
"""QEMU 11's ``migrate-pr`` destination sequence, replayed on LIO (standard library only).

QEMU 11.0's ``scsi-block`` migrates the guest's ``{key, type}`` and the destination QEMU
sends, through its pr-manager, PR OUT REGISTER (RESERVATION KEY 0, SERVICE ACTION
RESERVATION KEY = key) and then PR OUT PREEMPT (RESERVATION KEY = SERVICE ACTION RESERVATION
KEY = key, TYPE = the type, 0 when nothing was reserved).  QEMU 11 is not packaged for the bed,
so :func:`replay` sends those exact CDBs over two helper connections, the source's on path A
and the destination's on path B, and :func:`lu_state` reads what LIO made of them through a
third, unregistered path.  Used by ``tests/vm/test_migration.py``.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from .guest_tools import PRHelperClient
from .guest_tools import pr_in_cdb
from .guest_tools import pr_out_cdb
from .guest_tools import pr_out_params
from .guest_tools import sg_io

__all__ = [
    "CASES",
    "lu_state",
    "parse_full_status",
    "path_of_initiators",
    "replay",
    "reset_lu",
    "sense_triplet",
]

# PR OUT service actions (SPC-4 §6.16.2)
REGISTER, RESERVE, PREEMPT, REGISTER_IGNORE = 0, 1, 4, 6
READ_KEYS, READ_RESERVATION, READ_FULL_STATUS = 0, 1, 3
TEST_UNIT_READY = bytes(6)

#: (case name, type reserved on the source or None, TYPE of the destination's PREEMPT).
#: The six types as QEMU 11 sends them; "none" is QEMU 11's not-reserved case (TYPE 0);
#: "none_we_ro" the same with a valid TYPE, the PREEMPT that only removes registrations.
CASES: tuple[tuple[str, int | None, int], ...] = (
    ("we", 1, 1),
    ("ea", 3, 3),
    ("we_ro", 5, 5),
    ("ea_ro", 6, 6),
    ("we_ar", 7, 7),
    ("ea_ar", 8, 8),
    ("none", None, 0),
    ("none_we_ro", None, 5),
)


def sense_triplet(sense: bytes) -> list[int]:
    """[sense key, ASC, ASCQ] of fixed-format sense data ([] when there is none)."""
    if len(sense) < 14 or sense[0] & 0x7F not in (0x70, 0x71):
        return []
    return [sense[2] & 0x0F, sense[12], sense[13]]


def parse_full_status(data: bytes) -> list[dict[str, Any]]:
    """READ FULL STATUS descriptors (SPC-4 §6.15.5): key, holder, type, SAS address."""
    (length,) = struct.unpack_from(">I", data, 4)
    out: list[dict[str, Any]] = []
    pos, end = 8, min(len(data), 8 + length)
    while pos + 24 <= end:
        (key,) = struct.unpack_from(">Q", data, pos)
        flags, scope_type = data[pos + 12], data[pos + 13]
        (tid_len,) = struct.unpack_from(">I", data, pos + 20)
        tid = data[pos + 24 : pos + 24 + tid_len]
        out.append(
            {
                "key": key,
                "holder": bool(flags & 0x01),
                "all_tg_pt": bool(flags & 0x02),
                "type": scope_type & 0x0F if flags & 0x01 else None,
                # SAS TransportID (protocol 6): the address in bytes 4-11
                "address": int.from_bytes(tid[4:12], "big") if tid[:1] == b"\x06" else None,
            }
        )
        pos += 24 + tid_len
    return out


def path_of_initiators(env: os._Environ[str] | dict[str, str]) -> dict[int, int]:
    """SAS address -> bed path number, from ``$VMBED_INITIATOR<n>`` (``naa.<hex>``)."""
    paths = int(env["VMBED_PATHS"])
    return {int(env[f"VMBED_INITIATOR{n}"][4:], 16): n for n in range(1, paths + 1)}


def lu_state(device: str, paths: dict[int, int]) -> dict[str, Any]:
    """Keys, reservation and registrants (by bed path) as *device* (an unregistered path)
    reads them."""
    keys = sg_io(device, pr_in_cdb(READ_KEYS), data_in_len=8192)
    resv = sg_io(device, pr_in_cdb(READ_RESERVATION), data_in_len=8192)
    full = sg_io(device, pr_in_cdb(READ_FULL_STATUS), data_in_len=8192)
    for what, result in (("READ KEYS", keys), ("READ RESERVATION", resv), ("FULL", full)):
        if result.status != 0:
            raise OSError(f"{what} on {device}: status {result.status:#x} {result.sense.hex()}")
    (klen,) = struct.unpack_from(">I", keys.data, 4)
    key_list = [struct.unpack_from(">Q", keys.data, 8 + 8 * i)[0] for i in range(klen // 8)]
    (rlen,) = struct.unpack_from(">I", resv.data, 4)
    reservation = None
    if rlen >= 16:
        (rkey,) = struct.unpack_from(">Q", resv.data, 8)
        reservation = {"key": rkey, "type": resv.data[21] & 0x0F}
    registrants = [
        {"path": paths.get(d["address"] or -1), "key": d["key"], "holder": d["holder"]}
        for d in parse_full_status(full.data)
    ]
    registrants.sort(key=lambda r: (r["path"] or 0, r["key"]))
    return {"keys": key_list, "reservation": reservation, "registrants": registrants}


def unit_attention(device: str) -> list[int]:
    """TEST UNIT READY once on *device*: the sense triplet of its answer ([] when GOOD)."""
    result = sg_io(device, TEST_UNIT_READY)
    return sense_triplet(result.sense) if result.status else []


def reset_lu(devices: list[str]) -> None:
    """Every nexus unregisters (REGISTER AND IGNORE EXISTING KEY, SARK 0: that also ends a
    reservation its nexus holds), then unit attentions are drained with TEST UNIT READY."""
    for device in devices:
        for _ in range(8):
            result = sg_io(device, pr_out_cdb(REGISTER_IGNORE), data_out=pr_out_params(0, 0))
            # A unit attention answer means it did not run (SAM-5): an earlier device's
            # unregistration released an all-registrants reservation (2A/04) meanwhile.
            if not (result.status == 2 and sense_triplet(result.sense)[:1] == [0x06]):
                break
        if result.status != 0:
            raise OSError(f"reset on {device}: {result.status:#x} {result.sense.hex()}")
    for device in devices:
        for _ in range(8):  # LIO queues at most a few unit attentions per nexus
            if not unit_attention(device):
                break
        else:
            raise OSError(f"{device}: unit attentions do not drain")


def _send(peer: tuple[PRHelperClient, int], action: int, pr_type: int, rk: int, sark: int) -> Any:
    client, fd = peer
    reply = client.run(fd, pr_out_cdb(action, pr_type), pr_out_params(rk, sark))
    return {"status": reply.result, "sense": sense_triplet(reply.sense)}


def replay(
    source: tuple[PRHelperClient, int],
    destination: tuple[PRHelperClient, int],
    key: int,
    reserved: int | None,
    preempt_type: int,
) -> dict[str, Any]:
    """The source registers *key* (and reserves *reserved*), then the destination sends
    QEMU 11's REGISTER + PREEMPT; each answer as ``{"status", "sense"}``."""
    steps = {"source_register": _send(source, REGISTER, 0, 0, key)}
    if reserved is not None:
        steps["source_reserve"] = _send(source, RESERVE, reserved, key, 0)
    steps["register"] = _send(destination, REGISTER, 0, 0, key)
    steps["preempt"] = _send(destination, PREEMPT, preempt_type, key, key)
    return steps
