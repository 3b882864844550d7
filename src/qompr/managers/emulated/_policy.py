# SPDX-License-Identifier: MIT
"""Where the emulated device server answers like LIO and where like the letter of SPC-4.

Every field of :class:`Policy` is one item of docs/reference/spc4-pr.md §8 ("practical
recommendations for a match-LIO mode"), i.e. one place marked **[LIO≠SPC]** in the reference.
:data:`LIO` is the default (``mode=lio``) and :data:`SPC4` the strict letter (``mode=spc4``).
Nothing else in the engine depends on the mode.
"""

from __future__ import annotations

import enum

import attrs

from qompr.scsi import SenseCode

__all__ = ["LIO", "SPC4", "Mode", "Policy"]


class Mode(enum.Enum):
    """The two behaviours the ``mode`` property selects."""

    LIO = "lio"
    SPC4 = "spc4"


@attrs.frozen
class Policy:
    """One switch per LIO departure from SPC-4 (docs/reference/spc4-pr.md §8).

    :param mode: which preset this is.
    :param key_check_first: SPC-4 §5.12.1 general rule: an unregistered I_T nexus (other than
        REGISTER/REGISTER AND IGNORE) or a wrong RESERVATION KEY is a RESERVATION CONFLICT,
        checked before the service-action specific fields (CTL, SCST).  LIO has no such
        general rule and checks in each handler (§3.0).
    :param unregistered_not_ready: LIO answers an unregistered RESERVE, RELEASE, CLEAR or
        REGISTER AND MOVE with NOT READY 08h/00h when no reservation exists (§3.0).
    :param bump_on_unregister: SPC-4 §6.15.2: PRgeneration +1 for an unregister; LIO: no (§2.3).
    :param bump_on_noop_register: REGISTER with SARK=0 from an unregistered nexus: the SPC
        letter counts it (+1, as SCST and tgt); LIO, CTL, SPDK do not (§2.3).
    :param generation_per_registration: LIO adds 1 per registration created, so ALL_TG_PT and
        SPEC_I_PT add one per port or TransportID; SPC: +1 per command (§2.3).
    :param release_mismatch_conflict: LIO: RELEASE by the holder with another TYPE/SCOPE is a
        RESERVATION CONFLICT; SPC: CHECK CONDITION 26/04 (§3.4, scenario 27).
    :param scope_error: the sense for SCOPE ≠ LU_SCOPE on RESERVE/PREEMPT: LIO 26/00, SPC
        24/00 (§5, scenario 16).
    :param preempt_checks_type_first: LIO refuses an invalid TYPE on PREEMPT even where the
        TYPE is ignored (§3.6 step 1, scenario 56).
    :param prin_minimum_allocation: LIO refuses PR IN allocation lengths below 8 (below 6 for
        REPORT CAPABILITIES) with 24/00 (§1.1, scenario 71).
    :param lio_truncation: LIO's PR IN truncation: no partial key in READ KEYS, a header-only
        READ RESERVATION for allocation 8-21, and a READ FULL STATUS ADDITIONAL LENGTH that
        counts only what fitted (§1.5, scenarios 70, 72, 74).
    :param ar_internal_holder: LIO's PREEMPT corner: under an all-registrants reservation,
        SARK equal to the key of the registration that issued RESERVE preempts the reservation
        (§3.6, scenario 60).
    :param lio_access: LIO's access table for READ CAPACITY, MODE SENSE, SYNCHRONIZE CACHE,
        VERIFY, START STOP UNIT (§4, scenarios 45-49) instead of SPC-4's.
    :param legacy_reserve_holder_only: SPC-2 RESERVE/RELEASE(6/10) under a persistent
        reservation: LIO lets only the holder's registration through; SPC also the RO/AR
        registrants (§4 last row, scenario 76).
    :param clear_resets_aptpl: LIO's CLEAR turns APTPL off (§2.4, scenario 79).
    :param lio_port_quirks: LIO's corner cases around ports (§3.1, §3.8): re-registering an
        ALL_TG_PT registration with ALL_TG_PT=0 is 24/00; unregistering an ALL_TG_PT
        registration whose reservation is held through another port is a RESERVATION
        CONFLICT; a REGISTER AND MOVE to an iSCSI device-name TransportID with the sender's
        own name is "the sender's own port" (26/00).
    :param spec_i_pt_skips_registered: LIO skips SPEC_I_PT TransportIDs that are already
        registered; SPC: 26/00 [inferred] (§3.1).
    :param transport_id_length_error: the sense for a TransportID list whose length field
        disagrees with the parameter list: LIO 26/00, SPC 1A/00 (§3.1, §5).
    :param reject_reserved_cdb_bits: refuse non-zero reserved CDB bits with 24/00 (CTL, as
        SPC allows); LIO ignores them (§1.1, §5).
    :param ua_report_clears_queue: LIO reports the oldest queued unit attention (as CHECK
        CONDITION or as REQUEST SENSE data) and clears every unit attention queued for the
        I_T nexus with it (``core_scsi3_ua_for_check_condition`` and
        ``core_scsi3_ua_clear_for_request_sense`` free the whole list, UA_INTLCK_CTRL=00b;
        observed on Linux 6.1); SAM-5: each is reported by its own command.
    :param key_change_every_port: a REGISTER that changes the key of an ALL_TG_PT
        registration changes it on every target port [inferred]; LIO changes only the
        registration of the I_T nexus that sent it (observed on Linux 6.1).
    """

    mode: Mode
    key_check_first: bool
    unregistered_not_ready: bool
    bump_on_unregister: bool
    bump_on_noop_register: bool
    generation_per_registration: bool
    release_mismatch_conflict: bool
    scope_error: SenseCode
    preempt_checks_type_first: bool
    prin_minimum_allocation: bool
    lio_truncation: bool
    ar_internal_holder: bool
    lio_access: bool
    legacy_reserve_holder_only: bool
    clear_resets_aptpl: bool
    lio_port_quirks: bool
    spec_i_pt_skips_registered: bool
    transport_id_length_error: SenseCode
    reject_reserved_cdb_bits: bool
    ua_report_clears_queue: bool
    key_change_every_port: bool

    @classmethod
    def for_mode(cls, mode: Mode | str) -> Policy:
        """The preset for *mode* (``"lio"`` or ``"spc4"``)."""
        return LIO if Mode(mode) is Mode.LIO else SPC4


#: LIO's behaviour (``drivers/target/target_core_pr.c``): the default.
LIO = Policy(
    mode=Mode.LIO,
    key_check_first=False,
    unregistered_not_ready=True,
    bump_on_unregister=False,
    bump_on_noop_register=False,
    generation_per_registration=True,
    release_mismatch_conflict=True,
    scope_error=SenseCode.INVALID_PARAM,
    preempt_checks_type_first=True,
    prin_minimum_allocation=True,
    lio_truncation=True,
    ar_internal_holder=True,
    lio_access=True,
    legacy_reserve_holder_only=True,
    clear_resets_aptpl=True,
    lio_port_quirks=True,
    spec_i_pt_skips_registered=True,
    transport_id_length_error=SenseCode.INVALID_PARAM,
    reject_reserved_cdb_bits=False,
    ua_report_clears_queue=True,
    key_change_every_port=False,
)

#: The letter of SPC-4 (with the [inferred] readings of docs/reference/spc4-pr.md where the text was
#: missing).
SPC4 = Policy(
    mode=Mode.SPC4,
    key_check_first=True,
    unregistered_not_ready=False,
    bump_on_unregister=True,
    bump_on_noop_register=True,
    generation_per_registration=False,
    release_mismatch_conflict=False,
    scope_error=SenseCode.INVALID_FIELD,
    preempt_checks_type_first=False,
    prin_minimum_allocation=False,
    lio_truncation=False,
    ar_internal_holder=False,
    lio_access=False,
    legacy_reserve_holder_only=False,
    clear_resets_aptpl=False,
    lio_port_quirks=False,
    spec_i_pt_skips_registered=False,
    transport_id_length_error=SenseCode.INVALID_PARAM_LEN,
    reject_reserved_cdb_bits=True,
    ua_report_clears_queue=False,
    key_change_every_port=True,
)
