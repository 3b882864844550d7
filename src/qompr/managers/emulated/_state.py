# SPDX-License-Identifier: MIT
"""The persistent-reservation state of one logical unit, and the changes a command makes.

State model (SPC-4 §5.12; docs/reference/spc4-pr.md §2.1):

* **registrations**: at most one per I_T nexus, kept in registration order (READ KEYS and
  READ FULL STATUS list them in that order, as LIO does; a key change keeps the position);
* **reservation**: at most one, of a type and scope, with a holder.  For the all-registrants
  types every registrant is a holder; :attr:`Reservation.holder` then names the registration
  LIO keeps as its internal holder (only visible in one PREEMPT corner, §3.6);
* **PRgeneration**, a wrapping 32-bit counter, 0 at power on (§2.3);
* **APTPL**, the last valid APTPL bit (§2.4), which decides what survives a power loss;
* the holder of an SPC-2 RESERVE(6)/RESERVE(10), if any (volatile);
* per-nexus **unit-attention queues** (volatile; §6).

The engine never mutates a state: it reads one and returns a :class:`Changes` value, which
the store applies to its state and writes to its file in one transaction.  So a command is
applied completely or not at all, in memory and on disk alike.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Final

import attrs

from qompr.scsi import Nexus
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import SenseCode
from qompr.scsi import SenseKey

if TYPE_CHECKING:
    from qompr.managers.emulated._outcome import EngineOutcome

__all__ = [
    "KEEP",
    "POWER_ON_OCCURRED",
    "Changes",
    "Keep",
    "LUState",
    "Registration",
    "Reservation",
    "StateSnapshot",
]

#: PRgeneration is a 32-bit counter that wraps (SPC-4 §6.15.2).
GENERATION_MASK: Final = 0xFFFF_FFFF

#: The unit attention a power cycle establishes for every I_T nexus the logical unit knew:
#: UNIT ATTENTION 29h/01h POWER ON OCCURRED.  SAM-5 §6.3.2 names this code for a power on;
#: 29h/00h (POWER ON, RESET, OR BUS DEVICE RESET OCCURRED) is for a device server that cannot
#: tell a power on from a reset, and the emulation always knows which it played.
POWER_ON_OCCURRED: Final = SenseCode(SenseKey.UNIT_ATTENTION, 0x29, 0x01)


@attrs.frozen
class Registration:
    """One registered I_T nexus (SPC-4 §5.12.7).

    :param key: the reservation key, never 0.
    :param all_tg_pt: registered with ALL_TG_PT=1 (one such registration exists per target
        port, as in LIO).
    :param aptpl: the APTPL bit of the command that made or last changed it.
    """

    key: int
    all_tg_pt: bool = attrs.field(default=False, kw_only=True)
    aptpl: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen
class Reservation:
    """The persistent reservation of a logical unit (SPC-4 §5.12.9).

    :param type: the reservation type.
    :param holder: the holder I_T nexus; for WE_AR/EA_AR the registration LIO records as
        holder (every registrant holds such a reservation).
    :param scope: always LU_SCOPE in practice (other scopes are refused).
    """

    type: PrType
    holder: Nexus
    scope: int = attrs.field(default=PrScope.LU_SCOPE, kw_only=True)


class Keep(enum.Enum):
    """Marker for "this field is unchanged" in :class:`Changes`."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@attrs.frozen
class Changes:
    """What one command changes, applied in field order by :meth:`LUState.apply`.

    :param consume_ua: the nexus whose oldest unit attention was reported (and so cleared).
    :param consume_all_ua: with *consume_ua*, clear every unit attention queued for that nexus
        (LIO clears the whole queue when it reports one).
    :param clear: remove every registration (CLEAR).
    :param remove: I_T nexuses whose registration is removed.
    :param put: registrations added (at the end) or replaced (in place).
    :param reservation: the new reservation, ``None`` for none, or :data:`KEEP`.
    :param generation: the new PRgeneration, or ``None`` if unchanged.
    :param aptpl: the new APTPL state, or ``None`` if unchanged.
    :param legacy_holder: the new SPC-2 reservation holder, ``None`` for none, or :data:`KEEP`.
    :param add_ua: unit attentions queued, in order (a copy of one already queued for the same
        nexus is dropped, as LIO does).
    """

    consume_ua: Nexus | None = None
    consume_all_ua: bool = False
    clear: bool = False
    remove: tuple[Nexus, ...] = ()
    put: tuple[tuple[Nexus, Registration], ...] = ()
    reservation: Reservation | Keep | None = KEEP
    generation: int | None = None
    aptpl: bool | None = None
    legacy_holder: Nexus | Keep | None = KEEP
    add_ua: tuple[tuple[Nexus, SenseCode], ...] = ()


@attrs.frozen
class StateSnapshot:
    """An immutable copy of a :class:`LUState`, for comparison and inspection.

    :param generation: PRgeneration.
    :param registrations: (nexus, registration) pairs in registration order.
    :param reservation: the reservation, if any.
    :param aptpl: the last valid APTPL bit.
    :param legacy_holder: the SPC-2 reservation holder, if any.
    :param unit_attentions: (nexus, queued unit attentions) for every nexus with some, sorted
        by the nexus's TransportID identifier and target port.
    """

    generation: int = 0
    registrations: tuple[tuple[Nexus, Registration], ...] = ()
    reservation: Reservation | None = None
    aptpl: bool = False
    legacy_holder: Nexus | None = None
    unit_attentions: tuple[tuple[Nexus, tuple[SenseCode, ...]], ...] = ()

    @property
    def keys(self) -> tuple[int, ...]:
        """The READ KEYS list."""
        return tuple(reg.key for _, reg in self.registrations)

    def persistent(self) -> StateSnapshot:
        """This snapshot without the volatile parts (unit attentions, SPC-2 reservation)."""
        return attrs.evolve(self, legacy_holder=None, unit_attentions=())


def _nexus_order(item: tuple[Nexus, object]) -> tuple[str, int]:
    return (item[0].transport_id.identifier, item[0].target_port)


@attrs.define(eq=False)
class LUState:
    """The mutable state one store keeps for one logical unit.

    Only :meth:`apply` and :meth:`power_on` change it (which :attr:`answers` relies on).
    """

    generation: int = 0
    registrations: dict[Nexus, Registration] = attrs.field(factory=dict)
    reservation: Reservation | None = None
    aptpl: bool = False
    legacy_holder: Nexus | None = None
    unit_attentions: dict[Nexus, list[SenseCode]] = attrs.field(factory=dict)
    #: PERSISTENT RESERVE IN answers already worked out on this state, by (engine, CDB):
    #: polled again and again (cluster monitors read keys every few seconds), they are worked
    #: out once per change.  Emptied by every change (:meth:`apply`, :meth:`power_on`).
    answers: dict[tuple[object, bytes], EngineOutcome] = attrs.field(
        factory=dict, init=False, repr=False
    )

    def apply(self, changes: Changes) -> None:
        """Apply *changes* in place (the order of :class:`Changes` fields)."""
        self.answers = {}
        if changes.consume_ua is not None:
            queue = self.unit_attentions.get(changes.consume_ua)
            if queue:
                del queue[: len(queue) if changes.consume_all_ua else 1]
                if not queue:
                    del self.unit_attentions[changes.consume_ua]
        regs = self.registrations
        if changes.clear:
            regs.clear()
        for nexus in changes.remove:
            regs.pop(nexus, None)
        for nexus, reg in changes.put:
            regs[nexus] = reg  # an existing key keeps its position (dict order)
        if changes.reservation is not KEEP:
            self.reservation = changes.reservation
        if changes.generation is not None:
            self.generation = changes.generation
        if changes.aptpl is not None:
            self.aptpl = changes.aptpl
        if changes.legacy_holder is not KEEP:
            self.legacy_holder = changes.legacy_holder
        for nexus, code in changes.add_ua:
            queue = self.unit_attentions.setdefault(nexus, [])
            if code not in queue:
                queue.append(code)

    def known_nexuses(self) -> list[Nexus]:
        """The I_T nexuses this logical unit keeps state for, in a stable order.

        Those registered, the reservation holder, the SPC-2 reservation holder, and any with
        a unit attention queued: the ones a power cycle must tell.  A nexus that only read
        (PR IN) leaves no trace, so a read never needs a write.
        """
        known: dict[Nexus, None] = dict.fromkeys(self.registrations)
        if self.reservation is not None:
            known[self.reservation.holder] = None
        if self.legacy_holder is not None:
            known[self.legacy_holder] = None
        known.update(dict.fromkeys(n for n, q in self.unit_attentions.items() if q))
        return list(known)

    def power_on(self) -> None:
        """What a power cycle leaves (SPC-4 §5.12.5; docs/reference/spc4-pr.md §2.4).

        PRgeneration returns to 0, SPC-2 reservations vanish, and unless the last valid APTPL
        bit was 1 so do every registration and the reservation.  Every I_T nexus the logical
        unit knew (:meth:`known_nexuses`) gets POWER ON OCCURRED as its only unit attention
        (older ones were volatile), so no registration is lost without its nexus being told.
        """
        known = self.known_nexuses()
        self.answers = {}
        self.generation = 0
        self.legacy_holder = None
        if not self.aptpl:
            self.registrations.clear()
            self.reservation = None
        self.unit_attentions.clear()
        for nexus in known:
            self.unit_attentions[nexus] = [POWER_ON_OCCURRED]

    def snapshot(self) -> StateSnapshot:
        """An immutable copy of this state."""
        return StateSnapshot(
            generation=self.generation,
            registrations=tuple(self.registrations.items()),
            reservation=self.reservation,
            aptpl=self.aptpl,
            legacy_holder=self.legacy_holder,
            unit_attentions=tuple(
                sorted(
                    ((n, tuple(q)) for n, q in self.unit_attentions.items() if q),
                    key=_nexus_order,
                )
            ),
        )

    @classmethod
    def from_snapshot(cls, snapshot: StateSnapshot) -> LUState:
        """A mutable state equal to *snapshot*."""
        return cls(
            generation=snapshot.generation,
            registrations=dict(snapshot.registrations),
            reservation=snapshot.reservation,
            aptpl=snapshot.aptpl,
            legacy_holder=snapshot.legacy_holder,
            unit_attentions={n: list(q) for n, q in snapshot.unit_attentions},
        )

    def copy(self) -> LUState:
        """An independent copy (the functional form: ``state.copy().apply(changes)``)."""
        return LUState(
            generation=self.generation,
            registrations=dict(self.registrations),
            reservation=self.reservation,
            aptpl=self.aptpl,
            legacy_holder=self.legacy_holder,
            unit_attentions={n: list(q) for n, q in self.unit_attentions.items() if q},
        )

    def registrants(self) -> Iterable[Nexus]:
        """The registered I_T nexuses, in registration order."""
        return self.registrations.keys()
