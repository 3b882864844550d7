# SPDX-License-Identifier: MIT
"""Reading PERSISTENT RESERVE IN/OUT CDBs on the engine's fast path, and the fixed answers
(REPORT CAPABILITIES, TransportID bytes) the engine caches."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from typing import Final
from typing import NamedTuple

from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction

if TYPE_CHECKING:
    from qompr.scsi import TransportID

# The CDB classes and the PR IN data classes are imported where they are used, off the fast
# path: a READ KEYS in memory (qompr persist --object) builds none of those attrs classes.


@functools.lru_cache(maxsize=65536)
def tid_bytes(tid: TransportID) -> bytes:
    return tid.to_bytes()


@functools.lru_cache(maxsize=2)
def capabilities(ptpl_a: bool) -> bytes:
    # docs/reference/spc4-pr.md §1.5 / §8: exactly LIO's 00 08 1D 90|PTPL_A EA 01 00 00.
    from qompr.scsi import ReportCapabilitiesData

    return ReportCapabilitiesData.lio(ptpl_a=ptpl_a).to_bytes()


SUPPORTED_ACTIONS: Final = frozenset(
    int(a) for a in PrOutAction if a != PrOutAction.REPLACE_LOST_RESERVATION
)
REGISTERS: Final = frozenset({PrOutAction.REGISTER, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY})
# The smallest allocation length LIO accepts per PR IN service action (docs/reference/spc4-pr.md
# §1.1).
PR_IN_MINIMUM: Final[dict[int, int]] = {
    PrInAction.READ_KEYS: 8,
    PrInAction.READ_RESERVATION: 8,
    PrInAction.REPORT_CAPABILITIES: 6,
    PrInAction.READ_FULL_STATUS: 8,
}
PREEMPTS: Final = frozenset({PrOutAction.PREEMPT, PrOutAction.PREEMPT_AND_ABORT})


class OutCdb(NamedTuple):
    """The PR OUT CDB fields the engine reads (a light copy of :class:`PrOutCdb`)."""

    service_action: int
    scope: int
    type: int
    parameter_list_length: int
    reserved: int


class BasicParameters(NamedTuple):
    """The basic PR OUT parameter list fields REGISTER uses (SPC-4 §6.16.3)."""

    rk: int
    sark: int
    all_tg_pt: bool
    aptpl: bool
    spec_i_pt: bool
    tids: tuple[TransportID, ...]


def decode_pr_out_cdb(raw: bytes) -> OutCdb:
    """Decode a PR OUT CDB.

    A plain 10-byte CDB, or the helper protocol's 16 bytes with zeros after the tenth, is read
    directly (the fast path: :meth:`PrOutCdb.from_bytes` cannot refuse one); anything else
    goes through :meth:`PrOutCdb.from_bytes` and its checks.

    :raises CdbError: as :meth:`PrOutCdb.from_bytes`.
    """
    if _plain(raw):
        b1, b2 = raw[1], raw[2]
        reserved = ((b1 & 0xE0) << 24) | int.from_bytes(raw[3:5], "big")
        return OutCdb(b1 & 0x1F, b2 >> 4, b2 & 0x0F, int.from_bytes(raw[5:9], "big"), reserved)
    from qompr.scsi import PrOutCdb

    cdb = PrOutCdb.from_bytes(raw)
    return OutCdb(
        int(cdb.service_action),
        int(cdb.scope),
        int(cdb.type),
        cdb.parameter_list_length,
        cdb.reserved,
    )


_HELPER_PAD: Final = bytes(6)
_PRIN_RESERVED: Final = 0xE0_FF_FF_FF_FF_FF  # byte 1 bits 7-5, bytes 2-6 (as PrInCdb)


def _plain(raw: bytes) -> bool:
    """A 10-byte CDB, or one zero-padded to the 16 bytes the helper protocol sends."""
    return len(raw) == 10 or (len(raw) == 16 and raw[10:] == _HELPER_PAD)


def decode_pr_in_cdb(raw: bytes) -> tuple[int, int, int]:
    """(SERVICE ACTION, ALLOCATION LENGTH, reserved bits) of a PR IN CDB, read directly for a
    plain CDB and through :meth:`PrInCdb.from_bytes` otherwise.

    :raises CdbError: as :meth:`PrInCdb.from_bytes`.
    """
    if _plain(raw):
        return (
            raw[1] & 0x1F,
            int.from_bytes(raw[7:9], "big"),
            int.from_bytes(raw[1:7], "big") & _PRIN_RESERVED,
        )
    from qompr.scsi import PrInCdb

    cdb = PrInCdb.from_bytes(raw)
    return cdb.service_action, cdb.allocation_length, cdb.reserved
