# SPDX-License-Identifier: MIT
"""The sequences real clusters run, as parameters of the one suite.

* ``wsfc`` — Windows Server Failover Cluster's "Validate SCSI-3 Persistent Reservation".
  Public logs of that test show: a PR key registered from one node, a reservation put on the
  disk, the reservation read from the other node; failures are reported at the REGISTER and
  at reading the existing reservation.  The "Validate Disk Arbitration" test uses random
  per-node keys (KB2488012: duplicate keys gave false failures).  Microsoft does not publish
  the rest of the sequence: which reservation type, whether REGISTER or REGISTER AND IGNORE
  EXISTING KEY, how the challenger takes the disk.  The profile plays a challenger preempting
  the owner, then release, and reserves with Write Exclusive - Registrants Only; those parts
  are an approximation (``docs/validate.md``).
* ``fence_scsi`` — Pacemaker's fence agent: ``sg_turs`` before its commands, REGISTER AND
  IGNORE EXISTING KEY (optionally with APTPL), RESERVE Write Exclusive - Registrants Only,
  fencing with PREEMPT AND ABORT of the victim's key; a fenced node's status is OFF when its
  key is gone.
* ``lvmpersist`` — LVM's shared volume groups (lvm2 2.03.33+): REGISTER AND IGNORE EXISTING
  KEY, RESERVE Write Exclusive - All Registrants (local VGs use Write Exclusive), a second
  host finding the reservation already held, PREEMPT AND ABORT to remove a host, CLEAR.

The latency budgets are what a cluster tolerates per command before it gives up on a step:
documented defaults where they exist, an estimate where they do not (each says which).
"""

from __future__ import annotations

from typing import Final

import attrs

from qompr.scsi import PrOutAction
from qompr.scsi import PrType

__all__ = ["PROFILES", "Profile"]

_COMMON = (
    "capabilities",
    "register",
    "read-keys",
    "distinct-nexus",
    "reserve",
    "read-reservation",
    "preempt",
    "unit-attention",
    "write-conflict",
    "release",
    "unregister",
    "aptpl",
    "clear",
)
_TAIL = ("generation", "latency", "multipath", "restored")


@attrs.frozen
class Profile:
    """How one cluster uses persistent reservations.

    :param name: ``wsfc``, ``fence_scsi`` or ``lvmpersist``.
    :param title: one line for humans.
    :param reservation_type: the type the cluster reserves with.
    :param required_types: types REPORT CAPABILITIES must advertise (FAIL otherwise).
    :param wanted_types: types it should advertise (WARN otherwise).
    :param register_action: REGISTER or REGISTER AND IGNORE EXISTING KEY.
    :param challenger_preempts: the node without the reservation preempts the holder (WSFC
        taking over a disk); otherwise the holder preempts the other node (fencing).
    :param aptpl_required: FAIL (not WARN) when APTPL is refused.
    :param latency_warn: seconds above which a command is reported as slow.
    :param latency_fail: seconds above which a command FAILs the latency check.
    :param latency_source: where the budget comes from.
    :param checks: the checks the profile runs, in report order.
    :param notes: what the profile approximates.
    """

    name: str
    title: str
    reservation_type: PrType
    required_types: frozenset[PrType]
    wanted_types: frozenset[PrType]
    register_action: PrOutAction
    challenger_preempts: bool
    aptpl_required: bool
    latency_warn: float
    latency_fail: float
    latency_source: str
    checks: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def preempt_and_abort(self) -> bool:
        return "preempt-abort" in self.checks


PROFILES: Final[dict[str, Profile]] = {
    "wsfc": Profile(
        name="wsfc",
        title="Windows Server Failover Cluster validation",
        reservation_type=PrType.WE_RO,
        required_types=frozenset({PrType.WE_RO}),
        wanted_types=frozenset({PrType.EA_RO}),
        register_action=PrOutAction.REGISTER,
        challenger_preempts=True,
        aptpl_required=False,
        latency_warn=1.0,
        latency_fail=5.0,
        latency_source=(
            "estimate: a node defends its disk every few seconds and arbitration must fit "
            "in QuorumArbitrationTimeMax (20 s by default)"
        ),
        checks=_COMMON + _TAIL,
        notes=(
            "wsfc approximates Windows' validation: register, reserve and read from the other "
            "node follow its published logs; the reservation type (Write Exclusive - "
            "Registrants Only), the challenger's PREEMPT and the release are assumptions",
        ),
    ),
    "fence_scsi": Profile(
        name="fence_scsi",
        title="Pacemaker fence_scsi",
        reservation_type=PrType.WE_RO,
        required_types=frozenset({PrType.WE_RO}),
        wanted_types=frozenset(),
        register_action=PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
        challenger_preempts=False,
        aptpl_required=False,
        latency_warn=1.0,
        latency_fail=10.0,
        latency_source=(
            "estimate: Pacemaker's stonith-timeout (60 s by default) must hold a fence "
            "operation of about six commands"
        ),
        checks=(*_COMMON, "preempt-abort", *_TAIL),
    ),
    "lvmpersist": Profile(
        name="lvmpersist",
        title="LVM shared volume groups (lvmpersist)",
        reservation_type=PrType.WE_AR,
        required_types=frozenset({PrType.WE_AR}),
        wanted_types=frozenset({PrType.WE}),
        register_action=PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
        challenger_preempts=False,
        aptpl_required=False,
        latency_warn=2.0,
        latency_fail=30.0,
        latency_source="estimate: vgchange runs the commands with no timeout of its own",
        checks=(*_COMMON, "preempt-abort", *_TAIL),
    ),
}
