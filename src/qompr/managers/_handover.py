# SPDX-License-Identifier: MIT
"""Moving a guest's registration and reservation to another I_T nexus (live migration).

A persistent reservation belongs to an I_T nexus; a VM that live-migrates reaches its disk
through another one.  :func:`take_over` makes the *destination* nexus hold what the guest held
(its key, and the reservation if the guest had one) and removes the guest's registration on
every other nexus (the source), with commands sent through the destination only:

1. READ KEYS and READ RESERVATION: what the target holds (the tracked type is the guest's
   belief; the target's answer is what moves);
2. REGISTER (RK=0) with a *temporary* key nobody holds (REGISTER AND IGNORE EXISTING KEY when
   the destination is registered already, as after QEMU 11's own REGISTER);
3. PREEMPT with RK = the temporary key, SARK = the guest's key.  SPC-4 §5.12.11.2.4: when the
   guest holds a reservation that is not all-registrants, SARK is the holder's key, so the
   reservation moves to the sender (TYPE = the one held: no RESERVATIONS RELEASED unit
   attention) and every *other* registration with that key goes; otherwise only the
   registrations with that key go, and the sender's stays because its key differs (a PREEMPT
   with RK = SARK would remove the sender's own on SPC-4 targets and on LIO).  An
   all-registrants reservation stays, the destination being a registrant;
4. REGISTER (RK = the temporary key, SARK = the guest's key): the destination's key becomes the
   guest's; a reservation it holds stays with it (§5.12.7).

Destination-side PREEMPT rather than source-side REGISTER AND MOVE (SPC-4 §5.12.8, made for
moving a reservation): MOVE needs the source's nexus alive, a non all-registrants reservation
that exists, the destination's TransportID known to the source, and a target that has it (CTL
and SPDK do not); PREEMPT is mandatory and covers "registered but nothing reserved", all six
types and a source that is gone.  ``docs/migration.md`` says more.

A destination that takes no key but the guest's (a dm-multipath map with multipath.conf's
``reservation_key``: libmpathpersist refuses others) refuses step 2 and changes nothing; the
handover then uses the guest's key only (:func:`_with_the_guests_key`).

Safety: the guest's key must still be registered somewhere other than the destination, or
the guest was preempted (fenced) or unregistered meanwhile and nothing is taken over
(:class:`HandoverError` with reason ``not-registered``): a handover never resurrects a fenced
guest.  A step that fails leaves the destination's registration as it was.

Commands go through a :class:`PRPath` (a manager, an fd, a nexus), so the same code runs in
``qompr-pr-helper`` (for QEMU 11's destination sequence), in a VM manager talking to the
destination's helper (:mod:`qompr.embed`) and in tests against the emulated engine.
"""

from __future__ import annotations

import contextlib
import enum
import time
from typing import TYPE_CHECKING
from typing import Final

import attrs

from qompr.errors import QomprError
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseKey

if TYPE_CHECKING:
    from qompr.managers._base import PRManager
    from qompr.scsi import Nexus

__all__ = [
    "HandoverError",
    "HandoverReason",
    "HandoverResult",
    "PRPath",
    "read_reservation",
    "take_over",
]

#: Reservation types a handover can move (SPC-4 §6.16.2), 0 meaning "nothing reserved".
VALID_TYPES: Final = frozenset(int(t) for t in PrType)
#: A command answered with a unit attention did not run (SAM-5 §5.3.2): send it again, at
#: most this many times (a nexus may have several queued).
_UA_RETRIES: Final = 8
_ALLOC: Final = 8192
_IGNORE: Final = PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY
_WE: Final = int(PrType.WE)


@attrs.frozen
class PRPath:
    """One way to a logical unit: commands on *fd* through *manager*, as *nexus*.

    :param manager: any ``pr-manager`` (``pr-manager-helper`` for a helper's socket, the
        daemon's backend, an emulated engine in process).
    :param fd: an open file of the logical unit (the manager's ``run`` takes it).
    :param nexus: the I_T nexus, for managers that emulate initiators; ``None``: the device
        knows its own (a real LU sees the host's initiator port).
    """

    manager: PRManager
    fd: int
    nexus: Nexus | None = None

    def run(self, cdb: bytes, data: bytes = b"") -> ScsiResult:
        """One command, sent again while it is answered with a unit attention."""
        result = self.manager.execute(self.fd, cdb, data, nexus=self.nexus)
        for _ in range(_UA_RETRIES):
            if not _is_unit_attention(result):
                break
            result = self.manager.execute(self.fd, cdb, data, nexus=self.nexus)
        return result


class HandoverReason(enum.Enum):
    """Why a handover did not happen."""

    #: The guest's key is registered nowhere but (maybe) the destination: it was preempted,
    #: unregistered or cleared meanwhile.  Nothing was taken over.
    NOT_REGISTERED = "not-registered"
    #: A command failed (its result is attached).
    COMMAND_FAILED = "command-failed"
    #: The arguments make no sense (key 0, a type that is not one of the six).
    INVALID = "invalid"


class HandoverError(QomprError):
    """A handover that could not be done; :attr:`result` is the failing command's answer.

    :param message: what failed.
    :param reason: a :class:`HandoverReason`.
    :param steps: the commands sent, as in :attr:`HandoverResult.steps`.
    :param result: the answer of the command that failed, if one did.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: HandoverReason,
        steps: tuple[str, ...] = (),
        result: ScsiResult | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.steps = steps
        self.result = result


@attrs.frozen
class HandoverResult:
    """What :func:`take_over` did.

    :param key: the guest's key, now registered through the destination.
    :param type: the reservation type the destination holds now, 0 if none.
    :param method: ``reservation`` (the reservation moved), ``registration`` (only the
        registration: nothing reserved, or reserved by another initiator) or
        ``already-held`` (the destination is the nexus that held the key: nothing moved).
    :param steps: each command sent, ``ACTION=STATUS`` (``PREEMPT=GOOD``).
    :param seconds: how long it took.
    :param type_mismatch: the guest's type as given, when the target's reservation differed
        (the target's type was moved: it is what the guest really held).
    """

    key: int
    type: int
    method: str
    steps: tuple[str, ...]
    seconds: float
    type_mismatch: int | None = None

    def as_json(self) -> dict[str, object]:
        """The result as JSON values (for ``qompr migrate --json``)."""
        return {
            "key": f"0x{self.key:x}",
            "type": self.type,
            "method": self.method,
            "steps": list(self.steps),
            "seconds": self.seconds,
            "type-mismatch": self.type_mismatch,
        }


def _is_unit_attention(result: ScsiResult) -> bool:
    if result.status != ScsiStatus.CHECK_CONDITION:
        return False
    try:
        code = result.sense_code
    except QomprError:
        return False
    return code is not None and code.key == SenseKey.UNIT_ATTENTION


def _pr_in(action: PrInAction) -> bytes:
    return PrInCdb(action, _ALLOC).to_bytes()


def _pr_out(action: PrOutAction, pr_type: int, rk: int, sark: int) -> tuple[bytes, bytes]:
    params = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
    return PrOutCdb(action, 0, pr_type, len(params)).to_bytes(), params


def read_reservation(path: PRPath) -> ReadReservationData:
    """READ RESERVATION through *path*.

    :raises HandoverError: the command failed.
    """
    result = path.run(_pr_in(PrInAction.READ_RESERVATION))
    if not result.ok:
        raise HandoverError(
            "READ RESERVATION failed", reason=HandoverReason.COMMAND_FAILED, result=result
        )
    return ReadReservationData.from_bytes(result.data)


class _Run:
    """The commands of one handover, recorded."""

    def __init__(self, path: PRPath) -> None:
        self.path = path
        self.steps: list[str] = []

    def send(self, name: str, cdb: bytes, data: bytes = b"") -> ScsiResult:
        result = self.path.run(cdb, data)
        self.steps.append(f"{name}={result.status.name}")
        return result

    def out(self, name: str, action: PrOutAction, pr_type: int, rk: int, sark: int) -> ScsiResult:
        cdb, data = _pr_out(action, pr_type, rk, sark)
        return self.send(name, cdb, data)

    def must(self, name: str, action: PrOutAction, pr_type: int, rk: int, sark: int) -> None:
        result = self.out(name, action, pr_type, rk, sark)
        if not result.ok:
            raise self.failed(name, result)

    def keys(self) -> list[int]:
        result = self.send("READ_KEYS", _pr_in(PrInAction.READ_KEYS))
        if not result.ok:
            raise self.failed("READ KEYS", result)
        return list(ReadKeysData.from_bytes(result.data).keys)

    def reservation(self) -> ReadReservationData:
        result = self.send("READ_RESERVATION", _pr_in(PrInAction.READ_RESERVATION))
        if not result.ok:
            raise self.failed("READ RESERVATION", result)
        return ReadReservationData.from_bytes(result.data)

    def not_registered(self, key: int) -> HandoverError:
        return HandoverError(
            f"reservation key {key:#x} is not registered: the guest was preempted or "
            "unregistered; nothing taken over",
            reason=HandoverReason.NOT_REGISTERED,
            steps=tuple(self.steps),
        )

    def failed(self, name: str, result: ScsiResult) -> HandoverError:
        what = result.status.name
        code = None
        if result.status == ScsiStatus.CHECK_CONDITION:
            try:
                code = result.sense_code
            except QomprError:
                code = None
        if code is not None:
            what += f" ({code})"
        return HandoverError(
            f"{name.replace('_', ' ')} through the destination failed: {what}",
            reason=HandoverReason.COMMAND_FAILED,
            steps=tuple(self.steps),
            result=result,
        )


def _temporary_key(key: int, taken: set[int]) -> int:
    # Any key nobody holds; derived from the guest's so a READ KEYS during the handover
    # shows something recognisable (the low bit flipped, then counting).
    candidate = key ^ 1
    while candidate == 0 or candidate in taken or candidate == key:
        candidate = (candidate + 2) & 0xFFFF_FFFF_FFFF_FFFF
    return candidate


def take_over(
    destination: PRPath,
    key: int,
    reservation_type: int = 0,
    *,
    registered: bool | None = None,
    temporary_key: bool = True,
) -> HandoverResult:
    """Make *destination* hold the guest's registration (*key*) and its reservation, and
    remove the guest's registration everywhere else.

    :param destination: the path through the destination's I_T nexus.
    :param key: the guest's reservation key (from the source's tracking, or the VM manager).
    :param reservation_type: the type the guest holds (1, 3, 5, 6, 7, 8), 0 for none.  The
        target's own answer decides what moves; a different value is reported in
        :attr:`HandoverResult.type_mismatch`.
    :param registered: whether the destination is already registered with *key* (QEMU 11's
        REGISTER came first); ``None``: find out.
    :param temporary_key: ``False``: use only the guest's key (what a destination that
        refuses other keys needs, see :func:`_with_the_guests_key`; saves the refused
        REGISTER when the caller knows).  With ``True`` a destination that refuses the
        temporary key with CHECK CONDITION and changes nothing gets the same.
    :raises HandoverError: nothing to take over (the key is registered nowhere else), or a
        command failed (the destination's registration is then as it was: undone when this
        call made it, given back its key when it had it).
    """
    start = time.perf_counter()
    if not 0 < key <= 0xFFFF_FFFF_FFFF_FFFF:
        raise HandoverError(f"invalid reservation key {key:#x}", reason=HandoverReason.INVALID)
    if reservation_type and reservation_type not in VALID_TYPES:
        raise HandoverError(
            f"invalid reservation type {reservation_type}", reason=HandoverReason.INVALID
        )
    run = _Run(destination)
    keys = run.keys()
    res = run.reservation()
    held = _held(res)
    mismatch = reservation_type if reservation_type and reservation_type != held else None
    if not temporary_key:
        return _with_the_guests_key(run, key, reservation_type, keys, res, mismatch, start)
    temp = _temporary_key(key, set(keys))
    had_key = bool(registered)
    name = "REGISTER_AND_IGNORE"
    if registered is None:
        # REGISTER with RK=0 succeeds only for an unregistered nexus (SPC-4 §5.12.7).
        name = "REGISTER"
        result = run.out(name, PrOutAction.REGISTER, 0, 0, temp)
        if result.status == ScsiStatus.RESERVATION_CONFLICT:
            # Registered already, with some key: re-key it, and count to learn whether it
            # was the guest's.
            name = "REGISTER_AND_IGNORE"
            result = run.out(name, _IGNORE, 0, 0, temp)
            if result.ok:
                had_key = run.keys().count(key) < keys.count(key)
    else:
        result = run.out(name, _IGNORE, 0, 0, temp)
    if not result.ok:
        if result.status == ScsiStatus.CHECK_CONDITION and sorted(run.keys()) == sorted(keys):
            # Refused and nothing changed: a destination that takes no key but the guest's
            # (a dm-multipath map: libmpathpersist refuses any key but multipath.conf's).
            return _with_the_guests_key(run, key, reservation_type, keys, res, mismatch, start)
        raise run.failed(name, result)
    try:
        others = keys.count(key) - (1 if had_key else 0)
        if others <= 0 and had_key and registered is None:
            # The destination is the nexus that holds the key (one host, one initiator, or
            # a handover done already): nothing moves.  (With registered=True the caller
            # made that registration just now: the guest's key is registered nowhere else.)
            run.must("REGISTER", PrOutAction.REGISTER, 0, temp, key)
            seconds = time.perf_counter() - start
            return HandoverResult(
                key, _held_by(res, key), "already-held", tuple(run.steps), seconds, mismatch
            )
        if others <= 0:
            raise run.not_registered(key)
        # PREEMPT with RK = the temporary key and SARK = the guest's.  SARK the holder's key
        # (a reservation the guest holds): the reservation moves to the sender with TYPE,
        # the one held (so no RESERVATIONS RELEASED unit attention).  Otherwise only the
        # registrations with the guest's key go, the sender's (temporary) one stays, and
        # TYPE must still be valid for LIO (docs/reference/spc4-pr.md §3.6 step 1).
        moves = _held_by(res, key)
        run.must("PREEMPT", PrOutAction.PREEMPT, held or reservation_type or _WE, temp, key)
        run.must("REGISTER", PrOutAction.REGISTER, 0, temp, key)
    except HandoverError as exc:
        _undo(run, temp, key if had_key else None)
        exc.steps = tuple(run.steps)
        raise
    method = "reservation" if moves else "registration"
    seconds = time.perf_counter() - start
    return HandoverResult(key, moves, method, tuple(run.steps), seconds, mismatch)


def _held(res: ReadReservationData) -> int:
    """The type of the reservation READ RESERVATION reported, 0 for none."""
    return res.type or 0 if res.has_reservation else 0


def _held_by(res: ReadReservationData, key: int) -> int:
    held = _held(res)
    if held and (PrType(held).all_registrants or res.reservation_key == key):
        return held
    return 0


def _undo(run: _Run, temp: int, key: int | None) -> None:
    """Best effort: give the destination its key back, or take back the registration."""
    run.out("UNDO_REGISTER", PrOutAction.REGISTER, 0, temp, key or 0)


def _with_the_guests_key(  # noqa: PLR0917 - take_over's state, passed on once
    run: _Run,
    key: int,
    reservation_type: int,
    keys: list[int],
    res: ReadReservationData,
    mismatch: int | None,
    start: float,
) -> HandoverResult:
    """:func:`take_over` without a temporary key, for a destination that accepts no other key.

    A dm-multipath map with multipath.conf's ``reservation_key`` is one: libmpathpersist
    refuses a PR OUT whose RK and SARK both differ from it, registers every path of the map
    on REGISTER and sends the other service actions through one path.  So:

    1. REGISTER AND IGNORE EXISTING KEY with SARK = the guest's key (every path of a map);
    2. PREEMPT with RK = SARK = the guest's key, QEMU 11's own.  A reservation the guest holds
       that is not all-registrants moves to the sender, and every *other* nexus registered
       with the key loses its registration (SPC-4 §5.12.11.2.4; docs/reference/spc4-pr.md
       §3.6) — the source's, and the map's other paths' too.  Otherwise the registrations with
       the key go, on LIO and by the letter of SPC-4 the sender's own as well;
    3. REGISTER AND IGNORE EXISTING KEY again: the destination's nexuses (each path of a map)
       are registered with the key again, the holder keeping its reservation (§5.12.7);
    4. an all-registrants reservation the guest held that went with the last registration is
       reserved again (same type).

    What this cannot tell: whether the key is registered anywhere but the destination once
    the destination holds it already (a map has several nexuses).  The guest was not fenced
    then either: a PREEMPT of its key would have removed the destination's registration too.
    """
    if keys.count(key) == 0:
        raise run.not_registered(key)
    held = _held(res)
    moves = _held_by(res, key)
    run.must("REGISTER_AND_IGNORE", _IGNORE, 0, 0, key)
    try:
        run.must("PREEMPT", PrOutAction.PREEMPT, held or reservation_type or _WE, key, key)
    except HandoverError as exc:
        # Undo only what this call registered (counted here, off the downtime path; unknown:
        # leave it, an extra registration is better than a holder's dropped one).
        made = False
        with contextlib.suppress(HandoverError):
            made = run.keys().count(key) > keys.count(key)
        if made:
            # REGISTER (RK = the key, SARK 0): an unregistration libmpathpersist accepts.
            run.out("UNDO_REGISTER", PrOutAction.REGISTER, 0, key, 0)
        exc.steps = tuple(run.steps)
        raise
    # From here the destination holds what moved: a failure is reported, nothing undone.
    run.must("REGISTER_AND_IGNORE", _IGNORE, 0, 0, key)
    if moves and PrType(moves).all_registrants and not run.reservation().has_reservation:
        run.must("RESERVE", PrOutAction.RESERVE, moves, key, 0)
    method = "reservation" if moves else "registration"
    seconds = time.perf_counter() - start
    return HandoverResult(key, moves, method, tuple(run.steps), seconds, mismatch)
