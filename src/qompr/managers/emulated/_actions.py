# SPDX-License-Identifier: MIT
"""The PERSISTENT RESERVE OUT service actions (SPC-4 §5.12.7-§5.7.11, docs/reference/spc4-pr.md
§3.1-§3.8).

:class:`ServiceActions` is the part of :class:`~._engine.Engine` that decides what REGISTER,
RESERVE, RELEASE, CLEAR, PREEMPT (AND ABORT) and REGISTER AND MOVE do once the CDB and the
parameter list were read and the general checks passed (``_engine`` does those).  Pure, as the
engine: state in, :class:`~._outcome.EngineOutcome` out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from qompr.managers.emulated._decode import BasicParameters
from qompr.managers.emulated._decode import OutCdb
from qompr.managers.emulated._outcome import AR_TYPES
from qompr.managers.emulated._outcome import CONFLICT
from qompr.managers.emulated._outcome import GOOD
from qompr.managers.emulated._outcome import RO_AR_TYPES
from qompr.managers.emulated._outcome import RO_TYPES
from qompr.managers.emulated._outcome import UA_PREEMPTED
from qompr.managers.emulated._outcome import UA_REGISTRATIONS_PREEMPTED
from qompr.managers.emulated._outcome import UA_RELEASED
from qompr.managers.emulated._outcome import VALID_TYPES
from qompr.managers.emulated._outcome import EngineConfig
from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._outcome import bump
from qompr.managers.emulated._outcome import check
from qompr.managers.emulated._outcome import ua_to
from qompr.managers.emulated._state import KEEP
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import Keep
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import Registration
from qompr.managers.emulated._state import Reservation
from qompr.scsi import Nexus
from qompr.scsi import ProtocolId
from qompr.scsi import PrOutAction
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    from qompr.scsi import RegisterAndMoveParameters

__all__ = ["ServiceActions"]


class ServiceActions:
    """The PR OUT service-action handlers of an :class:`~._engine.Engine`.

    :param config: the logical unit's configuration.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self.policy = self.config.policy
        self._ports = frozenset(self.config.target_ports)

    def is_holder(self, state: LUState, nexus: Nexus) -> bool:
        """Whether *nexus* holds the reservation (SPC-4 §5.12.10).

        Under WE_AR/EA_AR every registrant holds it; otherwise exactly one I_T nexus does,
        the one that reserved (or received it by REGISTER AND MOVE), even when its initiator
        registered with ALL_TG_PT=1: through its other target ports it is a registered
        non-holder (SPC-4 §5.12.10; LIO compares the registration itself, observed on Linux
        6.1 with one initiator through two tcm_loop target ports).
        """
        res = state.reservation
        if res is None:
            return False
        if res.type in AR_TYPES:
            return nexus in state.registrations
        return nexus == res.holder

    def _unregistered(self, state: LUState) -> EngineOutcome:
        """An unregistered RESERVE/RELEASE/CLEAR/REGISTER AND MOVE.

        [LIO≠SPC] With no reservation LIO answers NOT READY, LOGICAL UNIT COMMUNICATION
        FAILURE (its registration lookup fails); SPC says RESERVATION CONFLICT (§3.0).
        """
        if self.policy.unregistered_not_ready and state.reservation is None:
            return EngineOutcome(check(SenseCode.NOT_READY_LUN_COMM_FAILURE))
        return EngineOutcome(CONFLICT)

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

    # SPC-4 §5.12.7 and docs/reference/spc4-pr.md §3.1 / §3.2.
    def _register(
        self,
        state: LUState,
        nexus: Nexus,
        action: int,
        reg: Registration | None,
        params: BasicParameters,
        *,
        error: SenseCode | None,
    ) -> EngineOutcome:
        policy = self.policy
        rk, sark, spec_i_pt = params.rk, params.sark, params.spec_i_pt
        regs = state.registrations
        ignore = action == PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY
        if reg is None:
            if not ignore and rk != 0:
                return EngineOutcome(CONFLICT)
            if error is not None:
                return EngineOutcome(check(error))
            if sark == 0:
                # Unregistered nexus registering key 0: GOOD, nothing changes.
                if policy.bump_on_noop_register:
                    return EngineOutcome(GOOD, Changes(generation=bump(state)))
                return EngineOutcome(GOOD)
            # The work is bounded by the room left: building stops as soon as the
            # registrations would not fit (SPEC_I_PT x ALL_TG_PT can name millions).
            limit = self.config.max_registrations
            room = limit - len(regs) if limit else None
            no_room = EngineOutcome(check(SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES))
            sender = self._all_ports(nexus) if params.all_tg_pt else [nexus]
            targets = [n for n in sender if n == nexus or n not in regs]
            if room is not None and len(targets) > room:
                return no_room
            if spec_i_pt:
                # SPC-4 §6.16.3: also register every I_T nexus the TransportIDs name, on the
                # receiving port (on every port with ALL_TG_PT), all or nothing.
                seen = set(targets)
                ports = sorted(self._ports) if params.all_tg_pt else [nexus.target_port]
                for tid in params.tids:
                    for port in ports:
                        other = Nexus(tid.identifier, port, transport_id=tid)
                        if other in seen or other in regs:
                            if policy.spec_i_pt_skips_registered:
                                continue  # LIO skips these silently
                            return EngineOutcome(check(SenseCode.INVALID_PARAM))
                        seen.add(other)
                        targets.append(other)
                        if room is not None and len(targets) > room:
                            return no_room
            new = Registration(sark, all_tg_pt=params.all_tg_pt, aptpl=params.aptpl)
            count = len(targets) if policy.generation_per_registration else 1
            return EngineOutcome(
                GOOD,
                Changes(
                    put=tuple((n, new) for n in targets),
                    generation=bump(state, count),
                    aptpl=params.aptpl,
                ),
            )
        # The sender is registered.
        if not ignore and rk != reg.key:
            return EngineOutcome(CONFLICT)
        if spec_i_pt:
            return EngineOutcome(check(SenseCode.INVALID_PARAM))
        if policy.lio_port_quirks and reg.all_tg_pt and not params.all_tg_pt:
            # [LIO-specific] re-registering an ALL_TG_PT registration without ALL_TG_PT.
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        siblings = self._siblings(state, nexus, reg)
        if sark != 0:
            # Key change: the registration keeps its place (and any reservation it holds).
            # [LIO≠SPC] LIO changes only the sender's registration of an ALL_TG_PT one.
            new = Registration(sark, all_tg_pt=reg.all_tg_pt, aptpl=params.aptpl)
            changed = (nexus, *siblings) if policy.key_change_every_port else (nexus,)
            return EngineOutcome(
                GOOD,
                Changes(
                    put=tuple((n, new) for n in changed),
                    generation=bump(state),
                    aptpl=params.aptpl,
                ),
            )
        # Unregister (SPC-4 §5.12.11.2.3).
        res = state.reservation
        if (
            policy.lio_port_quirks
            and res is not None
            and res.type not in AR_TYPES
            and res.holder in siblings
        ):
            # [LIO-specific] the reservation is held through another port of this
            # ALL_TG_PT registration: LIO refuses the implicit release.
            return EngineOutcome(CONFLICT)
        removed = (nexus, *siblings)
        reservation, uas = self._removal(state, frozenset(removed))
        return EngineOutcome(
            GOOD,
            Changes(
                remove=removed,
                reservation=reservation,
                generation=bump(state) if policy.bump_on_unregister else None,
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
        if res.type in AR_TYPES:
            remaining = (n for n in state.registrations if n not in removed)
            first = next(remaining, None)
            if first is None:
                return None, ()
            if res.holder in removed:
                return attrs.evolve(res, holder=first), ()
            return KEEP, ()
        if res.holder not in removed:
            return KEEP, ()
        if res.type in RO_TYPES:
            others = [n for n in state.registrations if n not in removed]
            return None, ua_to(others, UA_RELEASED)
        return None, ()

    # SPC-4 §5.12.9 and docs/reference/spc4-pr.md §3.3.
    def _reserve(
        self, state: LUState, nexus: Nexus, cdb: OutCdb, reg: Registration | None, rk: int
    ) -> EngineOutcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return EngineOutcome(CONFLICT)
        if cdb.scope != PrScope.LU_SCOPE:
            return EngineOutcome(check(self.policy.scope_error))
        res = state.reservation
        pr_type = PrType(cdb.type)
        if res is not None:
            if not self.is_holder(state, nexus):
                return EngineOutcome(CONFLICT)
            if res.type != pr_type or res.scope != cdb.scope:
                return EngineOutcome(CONFLICT)
            return EngineOutcome(GOOD)  # same type and scope from a holder: nothing changes
        return EngineOutcome(GOOD, Changes(reservation=Reservation(pr_type, nexus)))

    # SPC-4 §5.12.11.2.2 and docs/reference/spc4-pr.md §3.4.
    def _release(
        self, state: LUState, nexus: Nexus, cdb: OutCdb, reg: Registration | None, rk: int
    ) -> EngineOutcome:
        if reg is None:
            return self._unregistered(state)
        res = state.reservation
        if res is None or not self.is_holder(state, nexus):
            # No reservation, or not the holder: GOOD, nothing released.  LIO does not even
            # check the key here (SPC does, through key_check_first).
            return EngineOutcome(GOOD)
        if rk != reg.key:
            return EngineOutcome(CONFLICT)
        if res.type != cdb.type or res.scope != cdb.scope:
            if self.policy.release_mismatch_conflict:
                return EngineOutcome(CONFLICT)  # [LIO≠SPC] scenario 27
            return EngineOutcome(check(SenseCode.INVALID_RELEASE))
        uas: tuple[tuple[Nexus, SenseCode], ...] = ()
        if res.type in RO_AR_TYPES:
            uas = ua_to((n for n in state.registrations if n != nexus), UA_RELEASED)
        return EngineOutcome(GOOD, Changes(reservation=None, add_ua=uas))

    # SPC-4 §5.12.11.2.7 and docs/reference/spc4-pr.md §3.5.
    def _clear(
        self, state: LUState, nexus: Nexus, reg: Registration | None, rk: int
    ) -> EngineOutcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return EngineOutcome(CONFLICT)
        uas = ua_to((n for n in state.registrations if n != nexus), UA_PREEMPTED)
        return EngineOutcome(
            GOOD,
            Changes(
                clear=True,
                reservation=None,
                generation=bump(state),
                aptpl=False if self.policy.clear_resets_aptpl else None,
                add_ua=uas,
            ),
        )

    # SPC-4 §5.12.11.2.4 / §5.12.11.2.6 and docs/reference/spc4-pr.md §3.6 / §3.7.
    def _preempt(
        self,
        state: LUState,
        nexus: Nexus,
        cdb: OutCdb,
        reg: Registration | None,
        *,
        rk: int,
        sark: int,
        abort: bool,
    ) -> EngineOutcome:
        if reg is None:
            return EngineOutcome(CONFLICT)  # LIO too: PREEMPT has no NOT READY answer
        if rk != reg.key:
            return EngineOutcome(CONFLICT)
        if cdb.scope != PrScope.LU_SCOPE:
            return EngineOutcome(check(self.policy.scope_error))
        regs = state.registrations
        res = state.reservation
        if res is not None and res.type in AR_TYPES:
            if sark == 0:
                # Every other registration goes; the sender gets a new reservation.
                if cdb.type not in VALID_TYPES:
                    return EngineOutcome(check(SenseCode.INVALID_FIELD))
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
                return EngineOutcome(check(SenseCode.INVALID_PARAM))
            return self._preempt_registrations(state, nexus, sark, abort)
        # SARK is the holder's key: take over the reservation.
        if cdb.type not in VALID_TYPES:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        pr_type = PrType(cdb.type)
        victims = tuple(n for n, r in regs.items() if r.key == sark and n != nexus)
        new = Reservation(pr_type, nexus, scope=cdb.scope)
        released: tuple[tuple[Nexus, SenseCode], ...] = ()
        if pr_type != res.type or cdb.scope != res.scope:
            gone = frozenset(victims)
            released = ua_to((n for n in regs if n != nexus and n not in gone), UA_RELEASED)
        return self._preempted(
            state, nexus, victims, reservation=new, extra_uas=released, abort=abort
        )

    @staticmethod
    def _holder_key(state: LUState, res: Reservation) -> int:
        holder_reg = state.registrations.get(res.holder)
        return holder_reg.key if holder_reg is not None else 0

    def _preempt_registrations(
        self, state: LUState, nexus: Nexus, sark: int, abort: bool
    ) -> EngineOutcome:
        """PREEMPT that only removes the registrations with key *sark* (sender's included)."""
        victims = tuple(n for n, r in state.registrations.items() if r.key == sark)
        if not victims:
            return EngineOutcome(CONFLICT)
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
    ) -> EngineOutcome:
        uas = ua_to((n for n in victims if n != nexus), UA_REGISTRATIONS_PREEMPTED) + extra_uas
        aborted = frozenset(n for n in victims if n != nexus) if abort else frozenset()
        return EngineOutcome(
            GOOD,
            Changes(remove=victims, reservation=reservation, generation=bump(state), add_ua=uas),
            aborted=aborted,
        )

    # SPC-4 §5.12.8 and docs/reference/spc4-pr.md §3.8.
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
    ) -> EngineOutcome:
        if reg is None:
            return self._unregistered(state)
        if rk != reg.key:
            return EngineOutcome(CONFLICT)
        if sark == 0:
            return EngineOutcome(check(SenseCode.INVALID_PARAM))
        if error is not None:
            return EngineOutcome(check(error))
        assert params is not None
        if params.relative_target_port not in self._ports:
            return EngineOutcome(check(SenseCode.INVALID_PARAM))
        tid = params.transport_id
        own = nexus.transport_id
        if tid == own or (
            # LIO: an iSCSI device-name TransportID naming the sender's node is its own port.
            self.policy.lio_port_quirks
            and tid.protocol == ProtocolId.ISCSI
            and tid.isid is None
            and tid.iscsi_name == own.iscsi_name
        ):
            return EngineOutcome(check(SenseCode.INVALID_PARAM))
        res = state.reservation
        if res is None:
            return EngineOutcome(check(SenseCode.INVALID_FIELD))
        if not self.is_holder(state, nexus) or res.type in AR_TYPES:
            return EngineOutcome(CONFLICT)
        dest = Nexus(tid.identifier, params.relative_target_port, transport_id=tid)
        if dest not in state.registrations and not self._room(state, 1):
            return EngineOutcome(check(SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES))
        new = Registration(sark, aptpl=params.aptpl)
        return EngineOutcome(
            GOOD,
            Changes(
                remove=(nexus,) if params.unreg else (),
                put=((dest, new),),
                reservation=Reservation(res.type, dest, scope=res.scope),
                generation=bump(state),
                aptpl=params.aptpl,
            ),
        )
