# SPDX-License-Identifier: MIT
"""CDBs to libmpathpersist calls and back, as qemu-pr-helper's multipath path does (pure).

Design notes (docs/reference/qemu-pr-helper.md §10, §14):

* **PR IN** (``multipath_pr_in``): the service action is the whole of CDB byte 1, not masked,
  so a reserved bit set there is INVALID FIELD IN CDB.  READ KEYS, READ RESERVATION and REPORT
  CAPABILITIES are passed to the library; READ FULL STATUS is answered with INVALID FIELD IN
  CDB, as qemu-pr-helper answers it ("nobody implements it"), and so is any other action.  The
  answer is an 8192-byte buffer, zero-filled after what the library returned, cut to the
  ALLOCATION LENGTH (``prh_co_entry`` sends ``min(8192, allocation length)`` bytes).
* **PR OUT** (``multipath_pr_out``): a parameter list shorter than 24 bytes is PARAMETER LIST
  LENGTH ERROR; service actions other than 0-6 (REGISTER AND MOVE included: the library's
  struct cannot carry it) are INVALID FIELD IN CDB; bytes 0-7, 8-15 and 20 go to the library
  and bytes 16-19, 21-23 are ignored.  A list longer than 24 bytes must be at least 28 bytes
  (else 1A/00) and carries TransportIDs from byte 28 up to ``28 + BE32(bytes 24-27)``, which
  must not pass the end of the list (else 26/00).  TransportIDs are read whatever SPEC_I_PT
  says, exactly as qemu-pr-helper reads them; bytes after the TransportID data are ignored.
* **Fixed here** (qemu-pr-helper defects): a 33rd TransportID is answered with INVALID FIELD
  IN PARAMETER LIST instead of tripping an ``assert`` that aborts the helper; the TransportID
  data length is added without 32-bit wrap-around.
* **Answers** (``mpath_reconstruct_sense``): see :func:`reconstruct_answer`.

The TransportID rules are qemu-pr-helper's, not those of :class:`qompr.scsi.TransportID`
(which is stricter: it checks the iSCSI name's UTF-8, the ``,i,0x`` ISID form and the 223-byte
name limit); on a multipath device, qompr must refuse exactly what qemu-pr-helper refuses.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import attrs

from qompr.managers.multipath._abi import MPATH_MX_TIDS
from qompr.managers.multipath._abi import MpathReturn
from qompr.managers.multipath._abi import PrinResp
from qompr.managers.multipath._abi import ProutParamStorage
from qompr.managers.multipath._abi import TransportIDStruct
from qompr.scsi import HELPER_CDB_SIZE
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import ProtocolId
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

__all__ = [
    "DATA_SIZE",
    "PrInRequest",
    "PrOutRequest",
    "RawTransportID",
    "decode_pr_in",
    "decode_pr_out",
    "encode_pr_in_answer",
    "parse_transport_ids",
    "reconstruct_answer",
]

#: qemu-pr-helper's data buffer (``PR_HELPER_DATA_SIZE``), also ``mpath_mx_alloc_len``.
DATA_SIZE = 8192
_FIXED_PARAM_SIZE = 24  # PR_OUT_FIXED_PARAM_SIZE
_TID_DATA_START = 28
_FIXED_TID_SIZE = 24  # FC and SAS TransportIDs
_ISCSI_MAX_LENGTH = 252  # libmpathpersist reads only the low byte of the length; QEMU caps it

# Service actions the library takes (MPATH_PRIN_*_SA / MPATH_PROUT_*_SA 0-6).
_PR_IN_ACTIONS = (PrInAction.READ_KEYS, PrInAction.READ_RESERVATION, PrInAction.REPORT_CAPABILITIES)
_PR_OUT_ACTIONS = tuple(PrOutAction(sa) for sa in range(7))


def _cdb_bytes(cdb: bytes) -> bytes:
    """The first 10 bytes of *cdb* read from a zero-filled 16-byte buffer, as QEMU reads it."""
    return bytes(cdb[:HELPER_CDB_SIZE]).ljust(HELPER_CDB_SIZE, b"\0")[:10]


# -- TransportIDs -------------------------------------------------------------------------------


@attrs.frozen
class RawTransportID:
    """One TransportID kept as raw fields, as qemu-pr-helper hands it to libmpathpersist
    (``struct transportid``, :class:`TransportIDStruct`); not decoded, unlike
    :class:`qompr.scsi.TransportID`, so that the library sees exactly what QEMU would pass.

    :param format_code: byte 0 bits 7-6, kept in place (``0x00`` or ``0x40``).
    :param protocol_id: byte 0 bits 3-0: FC (0), iSCSI (5) or SAS (6).
    :param payload: FC: the 8-byte N_PORT_NAME; SAS: the 8-byte SAS ADDRESS; iSCSI: the
        big-endian ADDITIONAL LENGTH followed by that many name bytes (wire bytes 2 on).
    """

    format_code: int
    protocol_id: int
    payload: bytes

    def to_struct(self) -> TransportIDStruct:
        """The ``struct transportid`` the library reads."""
        tid = TransportIDStruct()
        tid.format_code = self.format_code
        tid.protocol_id = self.protocol_id
        ctypes.memmove(ctypes.addressof(tid.iscsi_name), self.payload, len(self.payload))
        return tid

    @classmethod
    def from_struct(cls, tid: TransportIDStruct) -> RawTransportID:
        """Read a ``struct transportid`` back, as the library's ``format_transportids`` does."""
        name = bytes(tid.iscsi_name)
        # For iSCSI the library takes the length from its low byte only (252 at most fits).
        size = name[1] + 2 if tid.protocol_id == ProtocolId.ISCSI else 8
        return cls(tid.format_code, tid.protocol_id, name[:size])

    def to_wire(self) -> bytes:
        """The SPC TransportID bytes this entry stands for."""
        first = self.format_code | self.protocol_id
        if self.protocol_id == ProtocolId.FCP:
            return bytes((first,)) + bytes(7) + self.payload + bytes(8)
        if self.protocol_id == ProtocolId.SAS:
            return bytes((first,)) + bytes(3) + self.payload + bytes(12)
        return bytes((first, 0)) + self.payload


def parse_transport_ids(param: bytes, end: int) -> tuple[RawTransportID, ...] | ScsiResult:
    """The TransportIDs at ``param[28:end]``, or the answer that refuses them.

    qemu-pr-helper switches on ``byte0 & 0xCF``: 00h FC (24 bytes, name at +8), 05h/45h iSCSI
    (ADDITIONAL LENGTH at +2, at most 252, a multiple of 4, within *end*, a NUL among the name
    bytes; the entry takes 4 + length bytes), 06h SAS (24 bytes, address at +4).  Anything else,
    or an entry running past *end*, is INVALID FIELD IN PARAMETER LIST.  So is a 33rd entry:
    qemu-pr-helper asserts there (docs/reference/qemu-pr-helper.md §14), qompr answers.

    :param param: the parameter list.
    :param end: where the TransportID data ends (``28 + BE32(param[24:28])``, ≤ ``len(param)``).
    """
    invalid = ScsiResult.check(SenseCode.INVALID_PARAM)
    out: list[RawTransportID] = []
    i = _TID_DATA_START
    while i < end:
        if len(out) == MPATH_MX_TIDS:
            return invalid
        first = param[i]
        kind = first & 0xCF
        if kind == ProtocolId.FCP:
            if i + _FIXED_TID_SIZE > end:
                return invalid
            out.append(RawTransportID(first & 0xC0, first & 0x0F, param[i + 8 : i + 16]))
            i += _FIXED_TID_SIZE
        elif kind == ProtocolId.SAS:
            if i + _FIXED_TID_SIZE > end:
                return invalid
            out.append(RawTransportID(first & 0xC0, first & 0x0F, param[i + 4 : i + 12]))
            i += _FIXED_TID_SIZE
        elif kind in (ProtocolId.ISCSI, 0x40 | ProtocolId.ISCSI):
            if i + 4 > end:
                return invalid
            length = int.from_bytes(param[i + 2 : i + 4], "big")
            if length > _ISCSI_MAX_LENGTH or length % 4 or i + length + 4 > end:
                return invalid
            if 0 not in param[i + 4 : i + 4 + length]:
                return invalid
            out.append(RawTransportID(first & 0xC0, first & 0x0F, param[i + 2 : i + 4 + length]))
            i += length + 4
        else:
            return invalid
    return tuple(out)


# -- requests -----------------------------------------------------------------------------------


@attrs.frozen
class PrInRequest:
    """A PR IN command the library can run.

    :param service_action: READ KEYS, READ RESERVATION or REPORT CAPABILITIES.
    :param allocation_length: the CDB's ALLOCATION LENGTH.
    """

    service_action: PrInAction
    allocation_length: int


@attrs.frozen
class PrOutRequest:
    """The arguments of one ``mpath_persistent_reserve_out`` call.

    :param service_action: 0-6.
    :param scope: CDB byte 2 bits 7-4, passed on unchecked (as qemu-pr-helper does).
    :param type: CDB byte 2 bits 3-0, passed on unchecked.
    :param key: RESERVATION KEY, the 8 wire bytes.
    :param sa_key: SERVICE ACTION RESERVATION KEY, the 8 wire bytes.
    :param sa_flags: parameter byte 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h and the rest).
    :param transport_ids: the TransportIDs, at most 32.
    """

    service_action: PrOutAction
    scope: int
    type: int
    key: bytes
    sa_key: bytes
    sa_flags: int
    transport_ids: tuple[RawTransportID, ...] = ()

    def to_struct(self) -> tuple[ProutParamStorage, list[TransportIDStruct]]:
        """The parameter descriptor, and the TransportID structs its pointers refer to.

        Keep the list alive for as long as the descriptor is in use.
        """
        param = ProutParamStorage()
        ctypes.memmove(ctypes.addressof(param.key), self.key, 8)
        ctypes.memmove(ctypes.addressof(param.sa_key), self.sa_key, 8)
        param.sa_flags = self.sa_flags
        structs = [tid.to_struct() for tid in self.transport_ids]
        for n, tid in enumerate(structs):
            param.trnptid_list[n] = ctypes.pointer(tid)
        param.num_transportid = len(structs)
        return param, structs


def decode_pr_in(cdb: bytes) -> PrInRequest | ScsiResult:
    """The library call a PR IN CDB asks for, or the answer that refuses it.

    :param cdb: a PERSISTENT RESERVE IN CDB (short ones read as zero-padded, as QEMU does).
    """
    raw = _cdb_bytes(cdb)
    if raw[0] != Opcode.PERSISTENT_RESERVE_IN:
        return ScsiResult.check(SenseCode.INVALID_OPCODE)
    decoded = PrInCdb.from_bytes(raw)
    # qemu-pr-helper takes all of byte 1 as the service action: reserved bits 7-5 make it an
    # unknown action, hence INVALID FIELD.
    if raw[1] not in _PR_IN_ACTIONS:
        return ScsiResult.check(SenseCode.INVALID_FIELD)
    return PrInRequest(PrInAction(decoded.service_action), decoded.allocation_length)


def decode_pr_out(cdb: bytes, data: bytes) -> PrOutRequest | ScsiResult:
    """The library call a PR OUT command asks for, or the answer that refuses it.

    :param cdb: a PERSISTENT RESERVE OUT CDB.
    :param data: the parameter list; only its first PARAMETER LIST LENGTH bytes count, that
        length read from CDB bytes 7-8 as QEMU's ``scsi_cdb_xfer`` reads it.
    """
    raw = _cdb_bytes(cdb)
    if raw[0] != Opcode.PERSISTENT_RESERVE_OUT:
        return ScsiResult.check(SenseCode.INVALID_OPCODE)
    decoded = PrOutCdb.from_bytes(raw)
    param = bytes(data[: decoded.transfer_length])
    sz = len(param)
    # Checked before the service action, in qemu-pr-helper's order.
    if sz < _FIXED_PARAM_SIZE:
        return ScsiResult.check(SenseCode.INVALID_PARAM_LEN)
    if raw[1] not in _PR_OUT_ACTIONS:
        return ScsiResult.check(SenseCode.INVALID_FIELD)
    tids: tuple[RawTransportID, ...] = ()
    if sz > _FIXED_PARAM_SIZE:
        if sz < _TID_DATA_START:
            return ScsiResult.check(SenseCode.INVALID_PARAM_LEN)
        end = int.from_bytes(param[24:28], "big") + _TID_DATA_START
        if end > sz:
            return ScsiResult.check(SenseCode.INVALID_PARAM)
        parsed = parse_transport_ids(param, end)
        if isinstance(parsed, ScsiResult):
            return parsed
        tids = parsed
    return PrOutRequest(
        PrOutAction(raw[1]),
        decoded.scope,
        decoded.type,
        param[0:8],
        param[8:16],
        param[20],
        tids,
    )


# -- answers ------------------------------------------------------------------------------------


def encode_pr_in_answer(request: PrInRequest, resp: PrinResp) -> bytes:
    """The data-in bytes for a successful library call, as ``multipath_pr_in`` lays them out.

    READ KEYS and READ RESERVATION: big-endian PRGENERATION and ADDITIONAL LENGTH, then
    ``min(ADDITIONAL LENGTH, 8184)`` bytes of ``key_list`` (for READ RESERVATION the overlaid
    ``prin_resvdescr`` bytes, i.e. the SPC reservation descriptor).  REPORT CAPABILITIES: the
    big-endian LENGTH, the two flag bytes and the big-endian type mask (6 bytes).  The rest of
    the 8192-byte buffer is zero; the answer is its first ``min(8192, ALLOCATION LENGTH)``.
    """
    buf = bytearray(DATA_SIZE)
    union = resp.prin_descriptor
    if request.service_action == PrInAction.REPORT_CAPABILITIES:
        cap = union.prin_readcap
        buf[0:2] = (cap.length & 0xFFFF).to_bytes(2, "big")
        buf[2] = cap.flags[0]
        buf[3] = cap.flags[1]
        buf[4:6] = (cap.pr_type_mask & 0xFFFF).to_bytes(2, "big")
    else:
        keys = union.prin_readkeys
        written = min(keys.additional_length + 8, DATA_SIZE)
        buf[0:4] = keys.prgeneration.to_bytes(4, "big")
        buf[4:8] = keys.additional_length.to_bytes(4, "big")
        buf[8:written] = bytes(keys.key_list)[: written - 8]
    return bytes(buf[: min(DATA_SIZE, request.allocation_length)])


# mpath_generic_sense: what qemu-pr-helper answers when TEST UNIT READY finds nothing.
_GENERIC: dict[int, SenseCode] = {
    MpathReturn.SENSE_NOT_READY: SenseCode.NOT_READY,
    MpathReturn.SENSE_MEDIUM_ERROR: SenseCode.READ_ERROR,
    MpathReturn.SENSE_HARDWARE_ERROR: SenseCode.TARGET_FAILURE,
    MpathReturn.SENSE_ABORTED_COMMAND: SenseCode.IO_ERROR,
}

_FIXED: dict[int, ScsiResult] = {
    MpathReturn.SUCCESS: ScsiResult.good(),
    # libmpathpersist consumed the real unit attention; qemu-pr-helper reports a
    # "heavyweight" one instead (SCSI BUS RESET OCCURRED).
    MpathReturn.SENSE_UNIT_ATTENTION: ScsiResult.check(SenseCode.SCSI_BUS_RESET),
    MpathReturn.SENSE_INVALID_OP: ScsiResult.check(SenseCode.INVALID_OPCODE),
    # qemu-pr-helper's guess: the library does not say which field was wrong.
    MpathReturn.ILLEGAL_REQ: ScsiResult.check(SenseCode.INVALID_PARAM),
    MpathReturn.NO_SENSE: ScsiResult.check(SenseCode.NO_SENSE),
    MpathReturn.RESERV_CONFLICT: ScsiResult.conflict(),
}


def reconstruct_answer(rc: int, test_unit_ready: Callable[[], ScsiResult]) -> ScsiResult:
    """Turn a libmpathpersist return code into status and sense (``mpath_reconstruct_sense``).

    ============================================  =============================================
    Return code                                   Answer
    ============================================  =============================================
    SUCCESS                                       GOOD
    SENSE_NOT_READY, SENSE_MEDIUM_ERROR,          TEST UNIT READY first; if it is not GOOD, its
    SENSE_HARDWARE_ERROR, SENSE_ABORTED_COMMAND   status and sense; else NOT READY / READ ERROR
                                                  / TARGET FAILURE / I/O PROCESS TERMINATED
    SENSE_UNIT_ATTENTION                          SCSI BUS RESET OCCURRED
    SENSE_INVALID_OP                              INVALID COMMAND OPERATION CODE
    ILLEGAL_REQ                                   INVALID FIELD IN PARAMETER LIST
    NO_SENSE                                      CHECK CONDITION, NO SENSE
    RESERV_CONFLICT                               RESERVATION CONFLICT
    anything else (OTHER, SYNTAX_ERROR,           LOGICAL UNIT COMMUNICATION FAILURE
    MALFORMED, FILE_ERROR, DMMP_ERROR, ...)
    ============================================  =============================================

    :param rc: what the library returned.
    :param test_unit_ready: sends TEST UNIT READY to the device, called only for the four
        sense-eating codes (the library "ate" the real sense; the TUR may recover it).
    """
    fixed = _FIXED.get(rc)
    if fixed is not None:
        return fixed
    generic = _GENERIC.get(rc)
    if generic is not None:
        tur = test_unit_ready()
        if tur.status != ScsiStatus.GOOD:
            return ScsiResult(tur.status, tur.sense)
        return ScsiResult.check(generic)
    return ScsiResult.check(SenseCode.LUN_COMM_FAILURE)
