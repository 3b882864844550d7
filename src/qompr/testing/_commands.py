# SPDX-License-Identifier: MIT
"""CDB builders for tests: PERSISTENT RESERVE IN/OUT as raw bytes.

:func:`pr_in` and :func:`pr_out` build the 16-byte CDB field the qemu-pr-helper protocol
carries (a 10-byte CDB padded with zeros), with the lengths a test wants to probe, even
inconsistent ones.  :func:`pr_out_command` builds a well-formed PR OUT command with its basic
parameter list, for tests that drive a manager through a scenario.
"""

from __future__ import annotations

from collections.abc import Sequence

from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import TransportID

__all__ = ["HELPER_CDB_SIZE", "pr_in", "pr_out", "pr_out_command"]

#: Size of the CDB field of a qemu-pr-helper request.
HELPER_CDB_SIZE = 16


def _helper_cdb(head: bytes) -> bytes:
    return head.ljust(HELPER_CDB_SIZE, b"\0")


def pr_in(alloc: int = 255, action: int = 0) -> bytes:
    """A PERSISTENT RESERVE IN CDB (SPC-4 §6.15) padded to 16 bytes.

    :param alloc: the ALLOCATION LENGTH (bytes 7-8).
    :param action: the service action (0: READ KEYS).
    """
    return _helper_cdb(bytes([0x5E, action, 0, 0, 0, 0, 0]) + alloc.to_bytes(2, "big"))


def pr_out(length: int = 24, action: int = 0, type_: int = 0) -> bytes:
    """A PERSISTENT RESERVE OUT CDB (SPC-4 §6.16) padded to 16 bytes.

    :param length: the PARAMETER LIST LENGTH (bytes 7-8); the data a test sends may differ.
    :param action: the service action (0: REGISTER).
    :param type_: the TYPE nibble of byte 2.
    """
    return _helper_cdb(bytes([0x5F, action, type_, 0, 0, 0, 0]) + length.to_bytes(2, "big"))


def pr_out_command(
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
    """A 10-byte PR OUT CDB and its basic parameter list (SPC-4 §6.16.3).

    :param rk: RESERVATION KEY.
    :param sark: SERVICE ACTION RESERVATION KEY.
    :param transport_ids: when given, SPEC_I_PT is set and they follow the list.
    :returns: ``(cdb, parameter_list)``; the CDB's PARAMETER LIST LENGTH is the list's.
    """
    data = PrOutParameters(
        reservation_key=rk,
        sa_key=sark,
        aptpl=aptpl,
        all_tg_pt=all_tg_pt,
        spec_i_pt=bool(transport_ids),
        transport_ids=tuple(transport_ids),
    ).to_bytes()
    return PrOutCdb(action, scope, pr_type, len(data)).to_bytes(), data
