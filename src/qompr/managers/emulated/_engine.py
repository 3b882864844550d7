# SPDX-License-Identifier: MIT
"""The SPC-4 persistent-reservation device server, as a pure function of state and command.

Rules of this file
------------------

Rule 1 - no I/O, no mutation.  :meth:`Engine.execute` reads an :class:`~._state.LUState`,
a nexus and a command, and returns an :class:`~._outcome.EngineOutcome`: the SCSI result and the
:class:`~._state.Changes` to apply.  The store applies them (and writes them to its file in one
transaction), so a command is applied wholly or not at all.

Rule 2 - the order of checks is LIO's (docs/reference/spc4-pr.md §3.0, §4 "Precedence"):

1. a CDB that cannot be decoded (CHECK CONDITION 24/00 or 20/00);
2. a pending unit attention, reported and cleared (every command except INQUIRY,
   REPORT LUNS and REQUEST SENSE, PR IN/OUT included; SAM-5, UA_INTLCK_CTRL=00b);
3. the reservation access check for non-holders (§4 tables in :mod:`._access`);
4. an SPC-2 reservation (RESERVATION CONFLICT for every PR IN/OUT);
5. the PR OUT parameter list length and SPEC_I_PT checks;
6. the service-action handler, whose own order of checks follows LIO's handler.

With ``mode=spc4`` (:data:`~._policy.SPC4`) step 6 is preceded by SPC-4 §5.12.1's general
key rule: an unregistered nexus, or a wrong RESERVATION KEY, is a RESERVATION CONFLICT.

Rule 3 - every departure from SPC-4 is a :class:`~._policy.Policy` switch, named where used.
"""

from __future__ import annotations

import struct
from typing import Final

from qompr.managers.emulated._access import LIO_ACCESS
from qompr.managers.emulated._access import SPC4_ACCESS
from qompr.managers.emulated._access import AccessClass
from qompr.managers.emulated._access import allowed
from qompr.managers.emulated._access import classify
from qompr.managers.emulated._actions import ServiceActions
from qompr.managers.emulated._decode import PR_IN_MINIMUM
from qompr.managers.emulated._decode import PREEMPTS
from qompr.managers.emulated._decode import REGISTERS
from qompr.managers.emulated._decode import SUPPORTED_ACTIONS
from qompr.managers.emulated._decode import BasicParameters
from qompr.managers.emulated._decode import capabilities
from qompr.managers.emulated._decode import decode_pr_in_cdb
from qompr.managers.emulated._decode import decode_pr_out_cdb
from qompr.managers.emulated._decode import tid_bytes
from qompr.managers.emulated._outcome import AR_TYPES
from qompr.managers.emulated._outcome import BASIC_LIST
from qompr.managers.emulated._outcome import CONFLICT
from qompr.managers.emulated._outcome import GOOD
from qompr.managers.emulated._outcome import MAX_PARAMETER_LIST
from qompr.managers.emulated._outcome import RO_AR_TYPES
from qompr.managers.emulated._outcome import VALID_TYPES
from qompr.managers.emulated._outcome import EngineConfig
from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._outcome import check
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import LUState
from qompr.scsi import CdbError
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import ParameterListError
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from qompr.scsi import TransportIDLengthError

__all__ = ["Engine", "EngineConfig", "EngineOutcome"]

_NO_UA_OPCODES: Final = frozenset({Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE})
_LEGACY_RESERVE: Final = frozenset({Opcode.RESERVE_6, Opcode.RESERVE_10})
_LEGACY_RELEASE: Final = frozenset({Opcode.RELEASE_6, Opcode.RELEASE_10})
#: PR IN answers kept per state (LUState.answers): the few CDBs initiators poll with.
_ANSWERS_KEPT: Final = 8
# Commands another I_T nexus may send while an SPC-2 reservation is held (SPC-2 §5.5.1).
_LEGACY_ALLOWED: Final = frozenset(
    {Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE, *_LEGACY_RELEASE}
)


class Engine(ServiceActions):
    """The device server for one configuration; stateless and thread-safe.

    :param config: the logical unit's configuration.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        super().__init__(config)
        self._table = LIO_ACCESS if self.policy.lio_access else SPC4_ACCESS

    # -- public entry points ---------------------------------------------------------------

    def execute(self, state: LUState, nexus: Nexus, cdb: bytes, data: bytes = b"") -> EngineOutcome:
        """Execute a command the persistent-reservation engine implements.

        Those are PERSISTENT RESERVE IN/OUT, the SPC-2 RESERVE/RELEASE(6/10) (with CRH=1,
        SPC-4 §5.12.3) and REQUEST SENSE (which returns a pending unit attention as its
        data).  Other opcodes answer INVALID COMMAND OPERATION CODE; use :meth:`admit` for
        them.

        :param state: the logical unit's state (not modified).
        :param nexus: the I_T nexus the command arrives on.
        :param cdb: the CDB.
        :param data: the data-out buffer (the PR OUT parameter list).
        """
        if not cdb:
            return EngineOutcome(check(SenseCode.INVALID_OPCODE))
        if nexus.target_port not in self._ports:
            return EngineOutcome(check(SenseCode.LUN_NOT_SUPPORTED))
        op = cdb[0]
        if op == Opcode.PERSISTENT_RESERVE_OUT:
            return self._pr_out(state, nexus, cdb, data)
        if op == Opcode.PERSISTENT_RESERVE_IN:
            return self._pr_in(state, nexus, cdb)
        if op in _LEGACY_RESERVE or op in _LEGACY_RELEASE:
            return self._legacy(state, nexus, cdb)
        if op == Opcode.REQUEST_SENSE:
            return self._request_sense(state, nexus, cdb)
        return EngineOutcome(check(SenseCode.INVALID_OPCODE))

    def admit(self, state: LUState, nexus: Nexus, cdb: bytes) -> EngineOutcome:
        """Decide whether another command (READ, WRITE, TEST UNIT READY...) may run.

        A pending unit attention is reported first and cleared (except for INQUIRY, REPORT
        LUNS and REQUEST SENSE), then :meth:`check_conflict` decides.

        :returns: an outcome whose result is ``None`` when the command may proceed.
        """
        if not cdb:
            return EngineOutcome(check(SenseCode.INVALID_OPCODE))
        if nexus.target_port not in self._ports:
            return EngineOutcome(check(SenseCode.LUN_NOT_SUPPORTED))
        if cdb[0] not in _NO_UA_OPCODES:
            ua = self._unit_attention(state, nexus)
            if ua is not None:
                return ua
        return EngineOutcome(self.check_conflict(state, nexus, cdb))

    def check_conflict(self, state: LUState, nexus: Nexus, cdb: bytes) -> ScsiResult | None:
        """The reservation check alone: RESERVATION CONFLICT, or ``None`` if allowed.

        Follows the SPC-4 table (``mode=spc4``) or LIO's (default); see :mod:`._access`.
        Unit attentions are not looked at (see :meth:`admit`).
        """
        op = cdb[0]
        legacy = state.legacy_holder
        if legacy is not None:
            # SPC-2 §5.5.1: the reserving nexus may do anything but PR IN/OUT (SPC-4 §5.12.3
            # and LIO refuse those even to it); others get only a few commands through.
            if legacy == nexus:
                if op in (Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT):
                    return CONFLICT
                return None
            return None if op in _LEGACY_ALLOWED else CONFLICT
        access = classify(cdb)
        if access is AccessClass.LEGACY:
            if state.registrations or state.reservation is not None:
                return None if self._legacy_passes(state, nexus) else CONFLICT
            return None
        res = state.reservation
        if res is None or self.is_holder(state, nexus):
            return None
        registered = nexus in state.registrations
        return None if allowed(self._table, access, res.type, registered) else CONFLICT

    # -- unit attentions -------------------------------------------------------------------

    def _unit_attention(self, state: LUState, nexus: Nexus) -> EngineOutcome | None:
        queue = state.unit_attentions.get(nexus)
        if not queue:
            return None
        return EngineOutcome(check(queue[0]), self._consume_ua(nexus))

    def _consume_ua(self, nexus: Nexus) -> Changes:
        # [LIO≠SPC] LIO clears the whole queue with the one it reports (policy).
        return Changes(consume_ua=nexus, consume_all_ua=self.policy.ua_report_clears_queue)

    def _request_sense(self, state: LUState, nexus: Nexus, cdb: bytes) -> EngineOutcome:
        # SPC-4 §6.39: REQUEST SENSE returns (and clears) a pending unit attention; byte 1
        # bit 0 DESC selects descriptor format, byte 4 is the ALLOCATION LENGTH.
        descriptor = len(cdb) > 1 and bool(cdb[1] & 0x01)
        alloc = cdb[4] if len(cdb) > 4 else 0
        queue = state.unit_attentions.get(nexus)
        if queue:
            sense = queue[0].to_bytes(fixed=not descriptor)
            return EngineOutcome(ScsiResult.good(sense[:alloc]), self._consume_ua(nexus))
        return EngineOutcome(
            ScsiResult.good(SenseCode.NO_SENSE.to_bytes(fixed=not descriptor)[:alloc])
        )

    # -- SPC-2 RESERVE / RELEASE -----------------------------------------------------------

    def _legacy_passes(self, state: LUState, nexus: Nexus) -> bool:
        """SPC-4 §5.12.3 (CRH=1): RESERVE/RELEASE(6/10) when PR state exists.

        SPC: the holder, and registrants under RO/AR types, complete with GOOD and no effect;
        everyone else conflicts.  LIO: only the registration LIO records as holder.
        """
        res = state.reservation
        if res is None:
            return False
        if self.policy.legacy_reserve_holder_only:
            return nexus == res.holder
        return self.is_holder(state, nexus) or (
            nexus in state.registrations and res.type in RO_AR_TYPES
        )

    def _legacy(self, state: LUState, nexus: Nexus, cdb: bytes) -> EngineOutcome:
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        conflict = self.check_conflict(state, nexus, cdb)
        if conflict is not None:
            return EngineOutcome(conflict)
        if state.registrations or state.reservation is not None:
            return EngineOutcome(GOOD)  # a holder's RESERVE/RELEASE(6): GOOD, no effect
        holder = state.legacy_holder
        if cdb[0] in _LEGACY_RESERVE:
            if holder == nexus:
                return EngineOutcome(GOOD)
            return EngineOutcome(GOOD, Changes(legacy_holder=nexus))
        if holder == nexus:
            return EngineOutcome(GOOD, Changes(legacy_holder=None))
        return EngineOutcome(GOOD)  # RELEASE by a non-holder: GOOD, nothing released

    # -- PERSISTENT RESERVE IN -------------------------------------------------------------

    def _pr_in(self, state: LUState, nexus: Nexus, raw: bytes) -> EngineOutcome:
        # With no unit attention queued and no SPC-2 reservation, a PR IN's answer depends on
        # the state and the CDB only, not on who asks: work it out once per state change.
        if state.unit_attentions or state.legacy_holder is not None:
            return self._pr_in_answer(state, nexus, raw)
        answers = state.answers
        key = (self, raw)
        known = answers.get(key)
        if known is not None:
            return known
        outcome = self._pr_in_answer(state, nexus, raw)
        if len(answers) < _ANSWERS_KEPT:  # the CDBs come from clients: bounded
            answers[key] = outcome
        return outcome

    def _pr_in_answer(self, state: LUState, nexus: Nexus, raw: bytes) -> EngineOutcome:
        try:
            action, alloc, reserved = decode_pr_in_cdb(raw)
        except CdbError as exc:
            return EngineOutcome(check(exc.sense_code))
        policy = self.policy
        if policy.reject_reserved_cdb_bits and reserved:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        if state.legacy_holder is not None:
            return EngineOutcome(CONFLICT)
        minimum = PR_IN_MINIMUM.get(action)
        if minimum is None:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))  # SPC-4 §6.15.1: 04h-1Fh reserved
        if policy.prin_minimum_allocation and alloc < minimum:
            # [LIO≠SPC] docs/reference/spc4-pr.md §1.1: LIO refuses short allocation lengths, 0
            # included.
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        if action == PrInAction.READ_KEYS:
            data = self.read_keys_data(state, alloc)
        elif action == PrInAction.READ_RESERVATION:
            data = self.read_reservation_data(state, alloc)
        elif action == PrInAction.REPORT_CAPABILITIES:
            data = capabilities(state.aptpl)[:alloc]
        else:
            data = self.read_full_status_data(state, alloc)
        return EngineOutcome(ScsiResult.good(data))

    def read_keys_data(self, state: LUState, alloc: int = 0xFFFF) -> bytes:
        """READ KEYS parameter data (SPC-4 §6.15.2), cut to *alloc* bytes.

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
        """READ RESERVATION parameter data (SPC-4 §6.15.3), cut to *alloc* bytes.

        The key is 0 for the all-registrants types.  [LIO≠SPC] with a reservation and an
        allocation length of 8-21 LIO writes only the header and leaves the key blank.
        """
        res = state.reservation
        if res is None:
            return struct.pack(">II", state.generation, 0)[:alloc]
        if self.policy.lio_truncation and alloc < 22:
            return struct.pack(">II", state.generation, 16).ljust(alloc, b"\0")[:alloc]
        if res.type in AR_TYPES:
            key = 0
        else:
            holder_reg = state.registrations.get(res.holder)
            key = holder_reg.key if holder_reg is not None else 0
        scope_type = (res.scope << 4) | res.type
        data = struct.pack(">IIQ4xxB2x", state.generation, 16, key, scope_type)
        return data[:alloc]

    def read_full_status_data(self, state: LUState, alloc: int = 0xFFFF) -> bytes:
        """READ FULL STATUS parameter data (SPC-4 §6.15.5), cut to *alloc* bytes.

        One descriptor per registration, in registration order.  R_HOLDER is set for the
        holder and, under WE_AR/EA_AR, for every registrant.  A registration made with
        ALL_TG_PT=1 reports ALL_TG_PT and RELATIVE TARGET PORT IDENTIFIER 0 (as LIO).
        [LIO≠SPC] LIO stops at the first descriptor whose TransportID no longer fits (its
        test leaves out the 24-byte descriptor header) and makes the ADDITIONAL LENGTH count
        only the descriptors written.
        """
        res = state.reservation
        all_holders = res is not None and res.type in AR_TYPES
        scope_type = ((res.scope << 4) | res.type) if res is not None else 0
        holder = res.holder if res is not None else None
        lio = self.policy.lio_truncation
        parts: list[bytes] = []
        used = 0
        pack = struct.Struct(">Q4xBB4xHI").pack
        for nexus, reg in state.registrations.items():
            tid = tid_bytes(nexus.transport_id)
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

    def _pr_out(self, state: LUState, nexus: Nexus, raw: bytes, data: bytes) -> EngineOutcome:
        try:
            cdb = decode_pr_out_cdb(raw)
        except CdbError as exc:
            return EngineOutcome(check(exc.sense_code))
        policy = self.policy
        if policy.reject_reserved_cdb_bits and cdb.reserved:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        ua = self._unit_attention(state, nexus)
        if ua is not None:
            return ua
        action = cdb.service_action
        known = action in SUPPORTED_ACTIONS
        if not known and policy.key_check_first:
            # SPC-4 §6.16.1: reserved service action (REPLACE LOST RESERVATION is optional
            # and not supported: RLR_C=0, docs/reference/spc4-pr.md §3.9).
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        # §3.0 step 3: the reservation access check for non-holders (SPC-4 §5.12.1 table).
        reg = state.registrations.get(nexus)
        if state.reservation is not None and not self.is_holder(state, nexus):
            conflict = self.check_conflict(state, nexus, raw)
            if conflict is not None:
                return EngineOutcome(conflict)
        if state.legacy_holder is not None:
            return EngineOutcome(CONFLICT)  # SPC-4 §5.12.3: an SPC-2 reservation is held
        # §3.0 steps 5-7: parameter list length and SPEC_I_PT.
        plen = cdb.parameter_list_length
        params = bytes(data[:plen])
        if len(params) < plen:
            params = params.ljust(min(plen, MAX_PARAMETER_LIST), b"\0")
        if len(params) < BASIC_LIST:
            return EngineOutcome(check(SenseCode.INVALID_PARAM_LEN))
        is_move = action == PrOutAction.REGISTER_AND_MOVE
        spec_i_pt = not is_move and bool(params[20] & 0x08)
        if spec_i_pt and action != PrOutAction.REGISTER:
            return EngineOutcome(check(SenseCode.INVALID_PARAM))
        if not is_move and not spec_i_pt and len(params) != BASIC_LIST:
            return EngineOutcome(check(SenseCode.INVALID_PARAM_LEN))
        if not known:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))  # §3.0 step 8
        rk = int.from_bytes(params[0:8], "big")
        sark = int.from_bytes(params[8:16], "big")
        # TYPE checks that LIO (and CTL, tgt) make before looking at the registration.
        if (
            action == PrOutAction.RESERVE
            or (action in PREEMPTS and policy.preempt_checks_type_first)
        ) and cdb.type not in VALID_TYPES:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        if policy.key_check_first:
            # SPC-4 §5.12.1 / §6.16.3 RESERVATION KEY: the general rule, before anything else.
            if reg is None:
                if action == PrOutAction.REGISTER:
                    if rk != 0:
                        return EngineOutcome(CONFLICT)
                elif action != PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY:
                    return EngineOutcome(CONFLICT)
            elif action != PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY and rk != reg.key:
                return EngineOutcome(CONFLICT)
        if is_move:
            # A bad TransportID is reported only after the key checks (LIO, §3.8).
            # The parameter list codecs load with the first command that has a TransportID
            # in its list (REGISTER AND MOVE, SPEC_I_PT): a plain REGISTER, RESERVE or a PR
            # IN builds none of their attrs classes (qompr persist --object).
            from qompr.scsi import RegisterAndMoveParameters

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
        if action in REGISTERS:
            tids: tuple[TransportID, ...] = ()
            error = None
            if spec_i_pt:
                from qompr.scsi import PrOutParameters

                try:
                    tids = PrOutParameters.from_bytes(params).transport_ids
                except TransportIDLengthError:
                    error = policy.transport_id_length_error
                except ParameterListError as exc:
                    error = exc.sense_code
            basic = BasicParameters(
                rk, sark, bool(flags & 0x04), bool(flags & 0x01), spec_i_pt, tids
            )
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
