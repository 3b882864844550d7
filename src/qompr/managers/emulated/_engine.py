# SPDX-License-Identifier: MIT
"""The SPC-4 persistent-reservation device server, as a pure function of state and command.

Rules of this file
------------------

Rule 1 - no I/O, no mutation.  :meth:`Engine.execute` reads an :class:`~._state.LUState`,
a nexus and a command, and returns an :class:`Outcome`: the SCSI result and the
:class:`~._state.Changes` to apply.  The store applies them (and writes them to its file in one
transaction), so a command is applied wholly or not at all.

Rule 2 - the order of checks is LIO's (spc4-pr.md §3.0, §4 "Precedence"):

1. a CDB that cannot be decoded (CHECK CONDITION 24/00 or 20/00);
2. a pending unit attention, reported and cleared (every command except INQUIRY,
   REPORT LUNS and REQUEST SENSE, PR IN/OUT included; SPC-4 §5.9, UA_INTLCK_CTRL=00b);
3. the reservation access check for non-holders (§4 tables in :mod:`._access`);
4. an SPC-2 reservation (RESERVATION CONFLICT for every PR IN/OUT);
5. the PR OUT parameter list length and SPEC_I_PT checks;
6. the service-action handler, whose own order of checks follows LIO's handler.

With ``mode=spc4`` (:data:`~._policy.SPC4`) step 6 is preceded by SPC-4 §5.7.1's general
key rule: an unregistered nexus, or a wrong RESERVATION KEY, is a RESERVATION CONFLICT.

Rule 3 - every departure from SPC-4 is a :class:`~._policy.Policy` switch, named where used.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import Final
from typing import NamedTuple

import attrs

from qompr.managers.emulated._access import LIO_ACCESS
from qompr.managers.emulated._access import SPC4_ACCESS
from qompr.managers.emulated._access import AccessClass
from qompr.managers.emulated._access import allowed
from qompr.managers.emulated._access import classify
from qompr.managers.emulated._policy import LIO
from qompr.managers.emulated._policy import Policy
from qompr.managers.emulated._state import GENERATION_MASK
from qompr.managers.emulated._state import KEEP
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import Keep
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import Registration
from qompr.managers.emulated._state import Reservation
from qompr.scsi import CdbError
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import ParameterListError
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import ProtocolId
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from qompr.scsi import TransportIDLengthError

__all__ = ["Engine", "EngineConfig", "Outcome"]

_GOOD: Final = ScsiResult.good()
_CONFLICT: Final = ScsiResult.conflict()
#: The largest parameter list the engine pads a short data-out buffer to.
MAX_PARAMETER_LIST: Final = 1 << 20
_BASIC_LIST: Final = 24
_VALID_TYPES: Final = frozenset(int(t) for t in PrType)
_AR_TYPES: Final = frozenset({PrType.WE_AR, PrType.EA_AR})
_RO_AR_TYPES: Final = frozenset({PrType.WE_RO, PrType.EA_RO, PrType.WE_AR, PrType.EA_AR})
_RO_TYPES: Final = frozenset({PrType.WE_RO, PrType.EA_RO})
_NO_UA_OPCODES: Final = frozenset({Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE})
_LEGACY_RESERVE: Final = frozenset({Opcode.RESERVE_6, Opcode.RESERVE_10})
_LEGACY_RELEASE: Final = frozenset({Opcode.RELEASE_6, Opcode.RELEASE_10})
# Commands another I_T nexus may send while an SPC-2 reservation is held (SPC-2 §5.5.1).
_LEGACY_ALLOWED: Final = frozenset(
    {Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE, *_LEGACY_RELEASE}
)
_PRE: Final = SenseCode.RESERVATIONS_PREEMPTED
_REL: Final = SenseCode.RESERVATIONS_RELEASED
_REG: Final = SenseCode.REGISTRATIONS_PREEMPTED


@functools.lru_cache(maxsize=64)
def _check(code: SenseCode) -> ScsiResult:
    """CHECK CONDITION with fixed-format sense for *code* (results are immutable: cached)."""
    return ScsiResult.check(code)


@functools.lru_cache(maxsize=65536)
def _tid_bytes(tid: TransportID) -> bytes:
    return tid.to_bytes()


@functools.lru_cache(maxsize=2)
def _capabilities(ptpl_a: bool) -> bytes:
    # spc4-pr.md §1.5 / §8: exactly LIO's 00 08 1D 90|PTPL_A EA 01 00 00.
    return ReportCapabilitiesData.lio(ptpl_a=ptpl_a).to_bytes()


_SUPPORTED_ACTIONS: Final = frozenset(
    int(a) for a in PrOutAction if a != PrOutAction.REPLACE_LOST_RESERVATION
)
_REGISTERS: Final = frozenset({PrOutAction.REGISTER, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY})
# The smallest allocation length LIO accepts per PR IN service action (spc4-pr.md §1.1).
_PR_IN_MINIMUM: Final[dict[int, int]] = {
    PrInAction.READ_KEYS: 8,
    PrInAction.READ_RESERVATION: 8,
    PrInAction.REPORT_CAPABILITIES: 6,
    PrInAction.READ_FULL_STATUS: 8,
}
_PREEMPTS: Final = frozenset({PrOutAction.PREEMPT, PrOutAction.PREEMPT_AND_ABORT})


class _OutCdb(NamedTuple):
    """The PR OUT CDB fields the engine reads (a light copy of :class:`PrOutCdb`)."""

    service_action: int
    scope: int
    type: int
    parameter_list_length: int
    reserved: int


class _Basic(NamedTuple):
    """The basic PR OUT parameter list fields REGISTER uses (SPC-4 §6.14.3)."""

    rk: int
    sark: int
    all_tg_pt: bool
    aptpl: bool
    spec_i_pt: bool
    tids: tuple[TransportID, ...]


def _decode_pr_out_cdb(raw: bytes) -> _OutCdb:
    """Decode a PR OUT CDB.

    A plain 10-byte CDB, or the helper protocol's 16 bytes with zeros after the tenth, is read
    directly (the fast path: :meth:`PrOutCdb.from_bytes` cannot refuse one); anything else
    goes through :meth:`PrOutCdb.from_bytes` and its checks.

    :raises CdbError: as :meth:`PrOutCdb.from_bytes`.
    """
    if _plain(raw):
        b1, b2 = raw[1], raw[2]
        reserved = ((b1 & 0xE0) << 24) | int.from_bytes(raw[3:5], "big")
        return _OutCdb(b1 & 0x1F, b2 >> 4, b2 & 0x0F, int.from_bytes(raw[5:9], "big"), reserved)
    cdb = PrOutCdb.from_bytes(raw)
    return _OutCdb(
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


def _decode_pr_in_cdb(raw: bytes) -> tuple[int, int, int]:
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
    cdb = PrInCdb.from_bytes(raw)
    return cdb.service_action, cdb.allocation_length, cdb.reserved


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


@attrs.frozen
class EngineConfig:
    """The fixed configuration of an emulated logical unit.

    :param policy: LIO's answers (default) or SPC-4's (:data:`~._policy.SPC4`).
    :param target_ports: the RELATIVE TARGET PORT IDENTIFIERs through which the logical unit
        is reachable; commands through another port get ILLEGAL REQUEST 25/00.
    :param max_registrations: the most registrations the device server keeps (0 for no
        limit); beyond it REGISTER answers INSUFFICIENT REGISTRATION RESOURCES 55/04.
    """

    policy: Policy = LIO
    target_ports: tuple[int, ...] = attrs.field(default=(1,), converter=_int_tuple)
    max_registrations: int = attrs.field(default=0, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.target_ports or any(not 1 <= p <= 0xFFFF for p in self.target_ports):
            raise ValueError("target_ports must hold RELATIVE TARGET PORT IDENTIFIERs 1-65535")
        if self.max_registrations < 0:
            raise ValueError("max_registrations must not be negative")


@attrs.frozen
class Outcome:
    """What a command did.

    :param result: the SCSI result; ``None`` only from :meth:`Engine.admit`, meaning the
        command may go on to the medium.
    :param changes: the state changes to apply, or ``None`` for none.
    :param aborted: the I_T nexuses whose tasks a PREEMPT AND ABORT aborts (SPC-4 §5.7.11.5).
    """

    result: ScsiResult | None
    changes: Changes | None = None
    aborted: frozenset[Nexus] = frozenset()


def _bump(state: LUState, count: int = 1) -> int:
    return (state.generation + count) & GENERATION_MASK


def _ua_to(nexuses: Iterable[Nexus], code: SenseCode) -> tuple[tuple[Nexus, SenseCode], ...]:
    return tuple((n, code) for n in nexuses)


class Engine:
    """The device server for one configuration; stateless and thread-safe.

    :param config: the logical unit's configuration.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self.policy = self.config.policy
        self._ports = frozenset(self.config.target_ports)
        self._table = LIO_ACCESS if self.policy.lio_access else SPC4_ACCESS

    # -- public entry points ---------------------------------------------------------------

    def execute(self, state: LUState, nexus: Nexus, cdb: bytes, data: bytes = b"") -> Outcome:
        """Execute a command the persistent-reservation engine implements.

        Those are PERSISTENT RESERVE IN/OUT, the SPC-2 RESERVE/RELEASE(6/10) (with CRH=1,
        SPC-4 §5.7.3) and REQUEST SENSE (which returns a pending unit attention as its
        data).  Other opcodes answer INVALID COMMAND OPERATION CODE; use :meth:`admit` for
        them.

        :param state: the logical unit's state (not modified).
        :param nexus: the I_T nexus the command arrives on.
        :param cdb: the CDB.
        :param data: the data-out buffer (the PR OUT parameter list).
        """
        if not cdb:
            return Outcome(_check(SenseCode.INVALID_OPCODE))
        if nexus.target_port not in self._ports:
            return Outcome(_check(SenseCode.LUN_NOT_SUPPORTED))
        op = cdb[0]
        if op == Opcode.PERSISTENT_RESERVE_OUT:
            return self._pr_out(state, nexus, cdb, data)
        if op == Opcode.PERSISTENT_RESERVE_IN:
            return self._pr_in(state, nexus, cdb)
        if op in _LEGACY_RESERVE or op in _LEGACY_RELEASE:
            return self._legacy(state, nexus, cdb)
        if op == Opcode.REQUEST_SENSE:
            return self._request_sense(state, nexus, cdb)
        return Outcome(_check(SenseCode.INVALID_OPCODE))

    def admit(self, state: LUState, nexus: Nexus, cdb: bytes) -> Outcome:
        """Decide whether another command (READ, WRITE, TEST UNIT READY...) may run.

        A pending unit attention is reported first and cleared (except for INQUIRY, REPORT
        LUNS and REQUEST SENSE), then :meth:`check_conflict` decides.

        :returns: an outcome whose result is ``None`` when the command may proceed.
        """
        if not cdb:
            return Outcome(_check(SenseCode.INVALID_OPCODE))
        if nexus.target_port not in self._ports:
            return Outcome(_check(SenseCode.LUN_NOT_SUPPORTED))
        if cdb[0] not in _NO_UA_OPCODES:
            ua = self._unit_attention(state, nexus)
            if ua is not None:
                return ua
        return Outcome(self.check_conflict(state, nexus, cdb))

    def check_conflict(self, state: LUState, nexus: Nexus, cdb: bytes) -> ScsiResult | None:
        """The reservation check alone: RESERVATION CONFLICT, or ``None`` if allowed.

        Follows the SPC-4 table (``mode=spc4``) or LIO's (default); see :mod:`._access`.
        Unit attentions are not looked at (see :meth:`admit`).
        """
        op = cdb[0]
        legacy = state.legacy_holder
        if legacy is not None:
            # SPC-2 §5.5.1: the reserving nexus may do anything but PR IN/OUT (SPC-4 §5.7.3
            # and LIO refuse those even to it); others get only a few commands through.
            if legacy == nexus:
                if op in (Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT):
                    return _CONFLICT
                return None
            return None if op in _LEGACY_ALLOWED else _CONFLICT
        access = classify(cdb)
        if access is AccessClass.LEGACY:
            if state.registrations or state.reservation is not None:
                return None if self._legacy_passes(state, nexus) else _CONFLICT
            return None
        res = state.reservation
        if res is None or self.is_holder(state, nexus):
            return None
        registered = nexus in state.registrations
        return None if allowed(self._table, access, res.type, registered) else _CONFLICT

    def is_holder(self, state: LUState, nexus: Nexus) -> bool:
        """Whether *nexus* holds the reservation (SPC-4 §5.7.10).

        Under WE_AR/EA_AR every registrant holds it; otherwise exactly one I_T nexus does,
        the one that reserved (or received it by REGISTER AND MOVE), even when its initiator
        registered with ALL_TG_PT=1: through its other target ports it is a registered
        non-holder (SPC-4 §5.7.10; LIO compares the registration itself, observed on Linux
        6.1 with one initiator through two tcm_loop target ports).
        """
        res = state.reservation
        if res is None:
            return False
        if res.type in _AR_TYPES:
            return nexus in state.registrations
        return nexus == res.holder

    # -- unit attentions -------------------------------------------------------------------

    def _unit_attention(self, state: LUState, nexus: Nexus) -> Outcome | None:
        queue = state.unit_attentions.get(nexus)
        if not queue:
            return None
        return Outcome(_check(queue[0]), self._consume_ua(nexus))

    def _consume_ua(self, nexus: Nexus) -> Changes:
        # [LIO≠SPC] LIO clears the whole queue with the one it reports (policy).
        return Changes(consume_ua=nexus, consume_all_ua=self.policy.ua_report_clears_queue)

    def _request_sense(self, state: LUState, nexus: Nexus, cdb: bytes) -> Outcome:
        # SPC-4 §6.29: REQUEST SENSE returns (and clears) a pending unit attention; byte 1
        # bit 0 DESC selects descriptor format, byte 4 is the ALLOCATION LENGTH.
        descriptor = len(cdb) > 1 and bool(cdb[1] & 0x01)
        alloc = cdb[4] if len(cdb) > 4 else 0
        queue = state.unit_attentions.get(nexus)
        if queue:
            sense = queue[0].to_bytes(fixed=not descriptor)
            return Outcome(ScsiResult.good(sense[:alloc]), self._consume_ua(nexus))
        return Outcome(ScsiResult.good(SenseCode.NO_SENSE.to_bytes(fixed=not descriptor)[:alloc]))

    # -- SPC-2 RESERVE / RELEASE -----------------------------------------------------------

    def _legacy_passes(self, state: LUState, nexus: Nexus) -> bool:
        """SPC-4 §5.7.3 (CRH=1): RESERVE/RELEASE(6/10) when PR state exists.

        SPC: the holder, and registrants under RO/AR types, complete with GOOD and no effect;
        everyone else conflicts.  LIO: only the registration LIO records as holder.
        """
        res = state.reservation
        if res is None:
            return False
        if self.policy.legacy_reserve_holder_only:
            return nexus == res.holder
        return self.is_holder(state, nexus) or (
            nexus in state.registrations and res.type in _RO_AR_TYPES
        )

    def _legacy(self, state: LUState, nexus: Nexus, cdb: bytes) -> Outcome:
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        conflict = self.check_conflict(state, nexus, cdb)
        if conflict is not None:
            return Outcome(conflict)
        if state.registrations or state.reservation is not None:
            return Outcome(_GOOD)  # a holder's RESERVE/RELEASE(6): GOOD, no effect
        holder = state.legacy_holder
        if cdb[0] in _LEGACY_RESERVE:
            if holder == nexus:
                return Outcome(_GOOD)
            return Outcome(_GOOD, Changes(legacy_holder=nexus))
        if holder == nexus:
            return Outcome(_GOOD, Changes(legacy_holder=None))
        return Outcome(_GOOD)  # RELEASE by a non-holder: GOOD, nothing released

    # -- PERSISTENT RESERVE IN -------------------------------------------------------------

    def _pr_in(self, state: LUState, nexus: Nexus, raw: bytes) -> Outcome:
        try:
            action, alloc, reserved = _decode_pr_in_cdb(raw)
        except CdbError as exc:
            return Outcome(_check(exc.sense_code))
        policy = self.policy
        if policy.reject_reserved_cdb_bits and reserved:
            return Outcome(_check(SenseCode.INVALID_FIELD))
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        if state.legacy_holder is not None:
            return Outcome(_CONFLICT)
        minimum = _PR_IN_MINIMUM.get(action)
        if minimum is None:
            return Outcome(_check(SenseCode.INVALID_FIELD))  # SPC-4 §6.13.1: 04h-1Fh reserved
        if policy.prin_minimum_allocation and alloc < minimum:
            # [LIO≠SPC] spc4-pr.md §1.1: LIO refuses short allocation lengths, 0 included.
            return Outcome(_check(SenseCode.INVALID_FIELD))
        if action == PrInAction.READ_KEYS:
            data = self.read_keys_data(state, alloc)
        elif action == PrInAction.READ_RESERVATION:
            data = self.read_reservation_data(state, alloc)
        elif action == PrInAction.REPORT_CAPABILITIES:
            data = _capabilities(state.aptpl)[:alloc]
        else:
            data = self.read_full_status_data(state, alloc)
        return Outcome(ScsiResult.good(data))

    def read_keys_data(self, state: LUState, alloc: int = 0xFFFF) -> bytes:
        """READ KEYS parameter data (SPC-4 §6.13.2), cut to *alloc* bytes.

        The ADDITIONAL LENGTH always counts every key.  [LIO≠SPC] LIO writes no partial
        key: the bytes of a key that does not fit whole are left zero.
        """
        keys = [reg.key for reg in state.registrations.values()]
        count = len(keys)
        full = 8 + 8 * count
        if self.policy.lio_truncation and alloc < full:
            fit = max(0, (alloc - 8) // 8)
            body = struct.pack(f">II{fit}Q", state.generation, 8 * count, *keys[:fit])
            return body.ljust(alloc, b"\0")[:alloc]
        data = struct.pack(f">II{count}Q", state.generation, 8 * count, *keys)
        return data[:alloc]

    def read_reservation_data(self, state: LUState, alloc: int = 0xFFFF) -> bytes:
        """READ RESERVATION parameter data (SPC-4 §6.13.3), cut to *alloc* bytes.

        The key is 0 for the all-registrants types.  [LIO≠SPC] with a reservation and an
        allocation length of 8-21 LIO writes only the header and leaves the key blank.
        """
        res = state.reservation
        if res is None:
            return struct.pack(">II", state.generation, 0)[:alloc]
        if self.policy.lio_truncation and alloc < 22:
            return struct.pack(">II", state.generation, 16).ljust(alloc, b"\0")[:alloc]
        if res.type in _AR_TYPES:
            key = 0
        else:
            holder_reg = state.registrations.get(res.holder)
            key = holder_reg.key if holder_reg is not None else 0
        scope_type = (res.scope << 4) | res.type
        data = struct.pack(">IIQ4xxB2x", state.generation, 16, key, scope_type)
        return data[:alloc]

    def read_full_status_data(self, state: LUState, alloc: int = 0xFFFF) -> bytes:
        """READ FULL STATUS parameter data (SPC-4 §6.13.5), cut to *alloc* bytes.

        One descriptor per registration, in registration order.  R_HOLDER is set for the
        holder and, under WE_AR/EA_AR, for every registrant.  A registration made with
        ALL_TG_PT=1 reports ALL_TG_PT and RELATIVE TARGET PORT IDENTIFIER 0 (as LIO).
        [LIO≠SPC] LIO stops at the first descriptor whose TransportID no longer fits (its
        test leaves out the 24-byte descriptor header) and makes the ADDITIONAL LENGTH count
        only the descriptors written.
        """
        res = state.reservation
        all_holders = res is not None and res.type in _AR_TYPES
        scope_type = ((res.scope << 4) | res.type) if res is not None else 0
        holder = res.holder if res is not None else None
        lio = self.policy.lio_truncation
        parts: list[bytes] = []
        used = 0
        pack = struct.Struct(">Q4xBB4xHI").pack
        for nexus, reg in state.registrations.items():
            tid = _tid_bytes(nexus.transport_id)
            if lio and used + len(tid) > alloc:
                break
            is_holder = all_holders or nexus == holder
            flags = (0x02 if reg.all_tg_pt else 0) | (0x01 if is_holder else 0)
            rtpi = 0 if reg.all_tg_pt else nexus.target_port
            parts.append(pack(reg.key, flags, scope_type if is_holder else 0, rtpi, len(tid)))
            parts.append(tid)
            used += 24 + len(tid)
        body = b"".join(parts)
        return (struct.pack(">II", state.generation, len(body)) + body)[:alloc]

    # -- PERSISTENT RESERVE OUT ------------------------------------------------------------

    def _pr_out(self, state: LUState, nexus: Nexus, raw: bytes, data: bytes) -> Outcome:
        try:
            cdb = _decode_pr_out_cdb(raw)
        except CdbError as exc:
            return Outcome(_check(exc.sense_code))
        policy = self.policy
        if policy.reject_reserved_cdb_bits and cdb.reserved:
            return Outcome(_check(SenseCode.INVALID_FIELD))
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        action = cdb.service_action
        known = action in _SUPPORTED_ACTIONS
        if not known and policy.key_check_first:
            # SPC-4 §6.14.1: reserved service action (REPLACE LOST RESERVATION is optional
            # and not supported: RLR_C=0, spc4-pr.md §3.9).
            return Outcome(_check(SenseCode.INVALID_FIELD))
        # §3.0 step 3: the reservation access check for non-holders (SPC-4 §5.7.1 table).
        reg = state.registrations.get(nexus)
        if state.reservation is not None and not self.is_holder(state, nexus):
            conflict = self.check_conflict(state, nexus, raw)
            if conflict is not None:
                return Outcome(conflict)
        if state.legacy_holder is not None:
            return Outcome(_CONFLICT)  # SPC-4 §5.7.3: an SPC-2 reservation is held
        # §3.0 steps 5-7: parameter list length and SPEC_I_PT.
        plen = cdb.parameter_list_length
        params = bytes(data[:plen])
        if len(params) < plen:
            params = params.ljust(min(plen, MAX_PARAMETER_LIST), b"\0")
        if len(params) < _BASIC_LIST:
            return Outcome(_check(SenseCode.INVALID_PARAM_LEN))
        is_move = action == PrOutAction.REGISTER_AND_MOVE
        spec_i_pt = not is_move and bool(params[20] & 0x08)
        if spec_i_pt and action != PrOutAction.REGISTER:
            return Outcome(_check(SenseCode.INVALID_PARAM))
        if not is_move and not spec_i_pt and len(params) != _BASIC_LIST:
            return Outcome(_check(SenseCode.INVALID_PARAM_LEN))
        if not known:
            return Outcome(_check(SenseCode.INVALID_FIELD))  # §3.0 step 8
        rk = int.from_bytes(params[0:8], "big")
        sark = int.from_bytes(params[8:16], "big")
        # TYPE checks that LIO (and CTL, tgt) make before looking at the registration.
        if (
            action == PrOutAction.RESERVE
            or (action in _PREEMPTS and policy.preempt_checks_type_first)
        ) and cdb.type not in _VALID_TYPES:
            return Outcome(_check(SenseCode.INVALID_FIELD))
        if policy.key_check_first:
            # SPC-4 §5.7.1 / §6.14.2 RESERVATION KEY: the general rule, before anything else.
            if reg is None:
                if action == PrOutAction.REGISTER:
                    if rk != 0:
                        return Outcome(_CONFLICT)
                elif action != PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY:
                    return Outcome(_CONFLICT)
            elif action != PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY and rk != reg.key:
                return Outcome(_CONFLICT)
        if is_move:
            # A bad TransportID is reported only after the key checks (LIO, §3.8).
            move: RegisterAndMoveParameters | None = None
            error: SenseCode | None = None
            try:
                move = RegisterAndMoveParameters.from_bytes(params)
            except TransportIDLengthError:
                error = policy.transport_id_length_error
            except ParameterListError as exc:
                error = exc.sense_code
            return self._register_and_move(
                state, nexus, reg, rk=rk, sark=sark, params=move, error=error
            )
        flags = params[20]
        if action in _REGISTERS:
            tids: tuple[TransportID, ...] = ()
            error = None
            if spec_i_pt:
                try:
                    tids = PrOutParameters.from_bytes(params).transport_ids
                except TransportIDLengthError:
                    error = policy.transport_id_length_error
                except ParameterListError as exc:
                    error = exc.sense_code
            basic = _Basic(rk, sark, bool(flags & 0x04), bool(flags & 0x01), spec_i_pt, tids)
            return self._register(state, nexus, action, reg, basic, error=error)
        if action == PrOutAction.RESERVE:
            return self._reserve(state, nexus, cdb, reg, rk)
        if action == PrOutAction.RELEASE:
            return self._release(state, nexus, cdb, reg, rk)
        if action == PrOutAction.CLEAR:
            return self._clear(state, nexus, reg, rk)
        return self._preempt(
            state, nexus, cdb, reg, rk=rk, sark=sark, abort=action == PrOutAction.PREEMPT_AND_ABORT
        )

    def _unregistered(self, state: LUState) -> Outcome:
        """An unregistered RESERVE/RELEASE/CLEAR/REGISTER AND MOVE.

        [LIO≠SPC] With no reservation LIO answers NOT READY, LOGICAL UNIT COMMUNICATION
        FAILURE (its registration lookup fails); SPC says RESERVATION CONFLICT (§3.0).
        """
        if self.policy.unregistered_not_ready and state.reservation is None:
            return Outcome(_check(SenseCode.NOT_READY_LUN_COMM_FAILURE))
        return Outcome(_CONFLICT)

    def _all_ports(self, nexus: Nexus) -> list[Nexus]:
        """*nexus* and the same initiator port on every other target port."""
        out = [nexus]
        for port in sorted(self._ports):
            if port != nexus.target_port:
                out.append(Nexus(nexus.initiator, port, transport_id=nexus.transport_id))
        return out

    def _room(self, state: LUState, extra: int) -> bool:
        limit = self.config.max_registrations
        return not limit or len(state.registrations) + extra <= limit

    # SPC-4 §5.7.7 and spc4-pr.md §3.1 / §3.2.
    def _register(
        self,
        state: LUState,
        nexus: Nexus,
        action: int,
        reg: Registration | None,
        params: _Basic,
        *,
        error: SenseCode | None,
    ) -> Outcome:
        policy = self.policy
        rk, sark, spec_i_pt = params.rk, params.sark, params.spec_i_pt
        regs = state.registrations
        ignore = action == PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY
        if reg is None:
            if not ignore and rk != 0:
                return Outcome(_CONFLICT)
            if error is not None:
                return Outcome(_check(error))
            if sark == 0:
                # Unregistered nexus registering key 0: GOOD, nothing changes.
                if policy.bump_on_noop_register:
                    return Outcome(_GOOD, Changes(generation=_bump(state)))
                return Outcome(_GOOD)
            # The work is bounded by the room left: building stops as soon as the
            # registrations would not fit (SPEC_I_PT x ALL_TG_PT can name millions).
            limit = self.config.max_registrations
            room = limit - len(regs) if limit else None
            no_room = Outcome(_check(SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES))
            sender = self._all_ports(nexus) if params.all_tg_pt else [nexus]
            targets = [n for n in sender if n == nexus or n not in regs]
            if room is not None and len(targets) > room:
                return no_room
            if spec_i_pt:
                # SPC-4 §6.14.3: also register every I_T nexus the TransportIDs name, on the
                # receiving port (on every port with ALL_TG_PT), all or nothing.
                seen = set(targets)
                ports = sorted(self._ports) if params.all_tg_pt else [nexus.target_port]
                for tid in params.tids:
                    for port in ports:
                        other = Nexus(tid.identifier, port, transport_id=tid)
                        if other in seen or other in regs:
                            if policy.spec_i_pt_skips_registered:
                                continue  # LIO skips these silently
                            return Outcome(_check(SenseCode.INVALID_PARAM))
                        seen.add(other)
                        targets.append(other)
                        if room is not None and len(targets) > room:
                            return no_room
            new = Registration(sark, all_tg_pt=params.all_tg_pt, aptpl=params.aptpl)
            count = len(targets) if policy.generation_per_registration else 1
            return Outcome(
                _GOOD,
                Changes(
                    put=tuple((n, new) for n in targets),
                    generation=_bump(state, count),
                    aptpl=params.aptpl,
                ),
            )
        # The sender is registered.
        if not ignore and rk != reg.key:
            return Outcome(_CONFLICT)
        if spec_i_pt:
            return Outcome(_check(SenseCode.INVALID_PARAM))
        if policy.lio_port_quirks and reg.all_tg_pt and not params.all_tg_pt:
            # [LIO-specific] re-registering an ALL_TG_PT registration without ALL_TG_PT.
            return Outcome(_check(SenseCode.INVALID_FIELD))
        siblings = self._siblings(state, nexus, reg)
        if sark != 0:
            # Key change: the registration keeps its place (and any reservation it holds).
            # [LIO≠SPC] LIO changes only the sender's registration of an ALL_TG_PT one.
            new = Registration(sark, all_tg_pt=reg.all_tg_pt, aptpl=params.aptpl)
            changed = (nexus, *siblings) if policy.key_change_every_port else (nexus,)
            return Outcome(
                _GOOD,
                Changes(
                    put=tuple((n, new) for n in changed),
                    generation=_bump(state),
                    aptpl=params.aptpl,
                ),
            )
        # Unregister (SPC-4 §5.7.11.3).
        res = state.reservation
        if (
            policy.lio_port_quirks
            and res is not None
            and res.type not in _AR_TYPES
            and res.holder in siblings
        ):
            # [LIO-specific] the reservation is held through another port of this
            # ALL_TG_PT registration: LIO refuses the implicit release.
            return Outcome(_CONFLICT)
        removed = (nexus, *siblings)
        reservation, uas = self._removal(state, frozenset(removed))
        return Outcome(
            _GOOD,
            Changes(
                remove=removed,
                reservation=reservation,
                generation=_bump(state) if policy.bump_on_unregister else None,
                aptpl=params.aptpl,
                add_ua=uas,
            ),
        )

    def _siblings(self, state: LUState, nexus: Nexus, reg: Registration) -> tuple[Nexus, ...]:
        """The other target ports' registrations of one ALL_TG_PT registration."""
        if not reg.all_tg_pt:
            return ()
        tid = nexus.transport_id
        return tuple(
            n
            for n, r in state.registrations.items()
            if n != nexus and r.all_tg_pt and r.key == reg.key and n.transport_id == tid
        )

    def _removal(
        self, state: LUState, removed: frozenset[Nexus]
    ) -> tuple[Reservation | Keep | None, tuple[tuple[Nexus, SenseCode], ...]]:
        """What removing the registrations *removed* does to the reservation (§3.1, §6).

        * A non-AR holder's reservation is released; for RO types the remaining registrants
          get RESERVATIONS RELEASED.
        * An AR reservation continues while any registrant remains (LIO moves its internal
          holder to the first remaining registration) and ends silently with the last one.
        """
        res = state.reservation
        if res is None:
            return KEEP, ()
        if res.type in _AR_TYPES:
            remaining = (n for n in state.registrations if n not in removed)
            first = next(remaining, None)
            if first is None:
                return None, ()
            if res.holder in removed:
                return attrs.evolve(res, holder=first), ()
            return KEEP, ()
        if res.holder not in removed:
            return KEEP, ()
        if res.type in _RO_TYPES:
            others = [n for n in state.registrations if n not in removed]
            return None, _ua_to(others, _REL)
        return None, ()

    # SPC-4 §5.7.9 and spc4-pr.md §3.3.
    def _reserve(
        self, state: LUState, nexus: Nexus, cdb: _OutCdb, reg: Registration | None, rk: int
    ) -> Outcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return Outcome(_CONFLICT)
        if cdb.scope != PrScope.LU_SCOPE:
            return Outcome(_check(self.policy.scope_error))
        res = state.reservation
        pr_type = PrType(cdb.type)
        if res is not None:
            if not self.is_holder(state, nexus):
                return Outcome(_CONFLICT)
            if res.type != pr_type or res.scope != cdb.scope:
                return Outcome(_CONFLICT)
            return Outcome(_GOOD)  # same type and scope from a holder: nothing changes
        return Outcome(_GOOD, Changes(reservation=Reservation(pr_type, nexus)))

    # SPC-4 §5.7.11.2 and spc4-pr.md §3.4.
    def _release(
        self, state: LUState, nexus: Nexus, cdb: _OutCdb, reg: Registration | None, rk: int
    ) -> Outcome:
        if reg is None:
            return self._unregistered(state)
        res = state.reservation
        if res is None or not self.is_holder(state, nexus):
            # No reservation, or not the holder: GOOD, nothing released.  LIO does not even
            # check the key here (SPC does, through key_check_first).
            return Outcome(_GOOD)
        if rk != reg.key:
            return Outcome(_CONFLICT)
        if res.type != cdb.type or res.scope != cdb.scope:
            if self.policy.release_mismatch_conflict:
                return Outcome(_CONFLICT)  # [LIO≠SPC] scenario 27
            return Outcome(_check(SenseCode.INVALID_RELEASE))
        uas: tuple[tuple[Nexus, SenseCode], ...] = ()
        if res.type in _RO_AR_TYPES:
            uas = _ua_to((n for n in state.registrations if n != nexus), _REL)
        return Outcome(_GOOD, Changes(reservation=None, add_ua=uas))

    # SPC-4 §5.7.11.6 and spc4-pr.md §3.5.
    def _clear(self, state: LUState, nexus: Nexus, reg: Registration | None, rk: int) -> Outcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return Outcome(_CONFLICT)
        uas = _ua_to((n for n in state.registrations if n != nexus), _PRE)
        return Outcome(
            _GOOD,
            Changes(
                clear=True,
                reservation=None,
                generation=_bump(state),
                aptpl=False if self.policy.clear_resets_aptpl else None,
                add_ua=uas,
            ),
        )

    # SPC-4 §5.7.11.4 / §5.7.11.5 and spc4-pr.md §3.6 / §3.7.
    def _preempt(
        self,
        state: LUState,
        nexus: Nexus,
        cdb: _OutCdb,
        reg: Registration | None,
        *,
        rk: int,
        sark: int,
        abort: bool,
    ) -> Outcome:
        if reg is None:
            return Outcome(_CONFLICT)  # LIO too: PREEMPT has no NOT READY answer
        if rk != reg.key:
            return Outcome(_CONFLICT)
        if cdb.scope != PrScope.LU_SCOPE:
            return Outcome(_check(self.policy.scope_error))
        regs = state.registrations
        res = state.reservation
        if res is not None and res.type in _AR_TYPES:
            if sark == 0:
                # Every other registration goes; the sender gets a new reservation.
                if cdb.type not in _VALID_TYPES:
                    return Outcome(_check(SenseCode.INVALID_FIELD))
                victims = tuple(n for n in regs if n != nexus)
                new = Reservation(PrType(cdb.type), nexus, scope=cdb.scope)
                return self._preempted(
                    state, nexus, victims, reservation=new, extra_uas=(), abort=abort
                )
            holder_reg = regs.get(res.holder)
            if not (
                self.policy.ar_internal_holder and holder_reg is not None and sark == holder_reg.key
            ):
                return self._preempt_registrations(state, nexus, sark, abort)
            # [LIO≠SPC] SARK names LIO's internal AR holder: preempt the reservation.
        elif res is None or sark != self._holder_key(state, res):
            if sark == 0:
                return Outcome(_check(SenseCode.INVALID_PARAM))
            return self._preempt_registrations(state, nexus, sark, abort)
        # SARK is the holder's key: take over the reservation.
        if cdb.type not in _VALID_TYPES:
            return Outcome(_check(SenseCode.INVALID_FIELD))
        pr_type = PrType(cdb.type)
        victims = tuple(n for n, r in regs.items() if r.key == sark and n != nexus)
        new = Reservation(pr_type, nexus, scope=cdb.scope)
        released: tuple[tuple[Nexus, SenseCode], ...] = ()
        if pr_type != res.type or cdb.scope != res.scope:
            gone = frozenset(victims)
            released = _ua_to((n for n in regs if n != nexus and n not in gone), _REL)
        return self._preempted(
            state, nexus, victims, reservation=new, extra_uas=released, abort=abort
        )

    @staticmethod
    def _holder_key(state: LUState, res: Reservation) -> int:
        holder_reg = state.registrations.get(res.holder)
        return holder_reg.key if holder_reg is not None else 0

    def _preempt_registrations(
        self, state: LUState, nexus: Nexus, sark: int, abort: bool
    ) -> Outcome:
        """PREEMPT that only removes the registrations with key *sark* (sender's included)."""
        victims = tuple(n for n, r in state.registrations.items() if r.key == sark)
        if not victims:
            return Outcome(_CONFLICT)
        reservation, uas = self._removal(state, frozenset(victims))
        return self._preempted(
            state, nexus, victims, reservation=reservation, extra_uas=uas, abort=abort
        )

    def _preempted(
        self,
        state: LUState,
        nexus: Nexus,
        victims: tuple[Nexus, ...],
        *,
        reservation: Reservation | Keep | None,
        extra_uas: tuple[tuple[Nexus, SenseCode], ...],
        abort: bool,
    ) -> Outcome:
        uas = _ua_to((n for n in victims if n != nexus), _REG) + extra_uas
        aborted = frozenset(n for n in victims if n != nexus) if abort else frozenset()
        return Outcome(
            _GOOD,
            Changes(remove=victims, reservation=reservation, generation=_bump(state), add_ua=uas),
            aborted=aborted,
        )

    # SPC-4 §5.7.8 and spc4-pr.md §3.8.
    def _register_and_move(
        self,
        state: LUState,
        nexus: Nexus,
        reg: Registration | None,
        *,
        rk: int,
        sark: int,
        params: RegisterAndMoveParameters | None,
        error: SenseCode | None,
    ) -> Outcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return Outcome(_CONFLICT)
        if sark == 0:
            return Outcome(_check(SenseCode.INVALID_PARAM))
        if error is not None:
            return Outcome(_check(error))
        assert params is not None
        if params.relative_target_port not in self._ports:
            return Outcome(_check(SenseCode.INVALID_PARAM))
        tid = params.transport_id
        own = nexus.transport_id
        if tid == own or (
            # LIO: an iSCSI device-name TransportID naming the sender's node is its own port.
            self.policy.lio_port_quirks
            and tid.protocol == ProtocolId.ISCSI
            and tid.isid is None
            and tid.iscsi_name == own.iscsi_name
        ):
            return Outcome(_check(SenseCode.INVALID_PARAM))
        res = state.reservation
        if res is None:
            return Outcome(_check(SenseCode.INVALID_FIELD))
        if not self.is_holder(state, nexus) or res.type in _AR_TYPES:
            return Outcome(_CONFLICT)
        dest = Nexus(tid.identifier, params.relative_target_port, transport_id=tid)
        if dest not in state.registrations and not self._room(state, 1):
            return Outcome(_check(SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES))
        new = Registration(sark, aptpl=params.aptpl)
        return Outcome(
            _GOOD,
            Changes(
                remove=(nexus,) if params.unreg else (),
                put=((dest, new),),
                reservation=Reservation(res.type, dest, scope=res.scope),
                generation=_bump(state),
                aptpl=params.aptpl,
            ),
        )
