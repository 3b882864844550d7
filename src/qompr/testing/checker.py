# SPDX-License-Identifier: MIT
"""A history checker for persistent-reservation stores: did every command behave as if all
commands ran one at a time?

A store of ``pr-manager-emulated`` (memory, SQLite, PostgreSQL, or a plugin's) promises, per
logical unit, that every command behaves as if all hosts' commands ran one at a time in one
order, and that a command is answered only after its effect is committed.  This module
checks that promise from the outside, on a *history*: every command clients sent, with its
answer and the times it was sent and answered (:class:`Operation`).  It needs nothing from
the store; the same checker serves any store and any number of daemons.

**The commit order is found, not asked for.**  :func:`check` searches, per logical unit, for
a serial order of the commands that

1. respects real time: a command answered before another was sent comes first in the order;
2. reproduces every answer: executing the commands one by one in that order on the
   in-memory engine (:class:`~qompr.managers.emulated.Engine`, from an empty logical unit
   or a given state) gives each acknowledged command exactly the answer it got: status,
   sense and PR IN data byte for byte (PRgeneration included).

Why such an order proves the guarantee, and why its absence disproves it: if the store is
right, each command took effect at one instant (its commit) between its sending and its
answer, and the commits ran as if one at a time; ordering the commands by commit instant
then satisfies (1), since a command answered before another was sent committed before that
one was even sent, and (2) by the serial guarantee itself.  So a correct store always
admits such an order, and a history with none is a violation: some answer cannot have come
from any one-at-a-time execution consistent with what the clients saw (an acknowledged
command lost, two commands interleaved, a stale read, a unit attention delivered twice...).
This is strict serializability (linearizability) per logical unit, checked as Wing & Gong's
search with memoization (as in Porcupine).  The clock is ``time.monotonic()``, which on
Linux is ``CLOCK_MONOTONIC``, one clock for every process of the machine, so clients in
different processes can be compared.

Commands whose fate is unknown are handled honestly:

* **no answer** (the connection broke, the daemon was killed): the command may have taken
  effect once, at any moment after it was sent (even after the client saw the connection
  close: a database may commit a transaction its dead client had sent), or never; the
  search tries both;
* **a retryable CHECK CONDITION** (:data:`RETRYABLE`, ABORTED COMMAND 08h/00h LOGICAL UNIT
  COMMUNICATION FAILURE): the store promises it applied nothing, and the checker holds it
  to that (``retryable_may_apply=True`` treats it as unknown instead).

Every other answer (GOOD, RESERVATION CONFLICT, any other CHECK CONDITION) must be
reproduced exactly: a store that answers HARDWARE ERROR during an outage fails the check,
since the serial engine never does.

Use::

    report = check(history)          # raises HistoryError if no serial order exists
    print(report.summary())

:class:`Workload` makes random PR IN/OUT commands for such runs (small key sets, every
service action and type, so that commands of different initiators interfere).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Final

import attrs

from qompr.managers.emulated import Engine
from qompr.managers.emulated import LUState
from qompr.managers.emulated import StateSnapshot
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrType
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing._errors import TestingError

__all__ = [
    "DEFAULT_BUDGET",
    "RETRYABLE",
    "CheckReport",
    "HistoryError",
    "InconclusiveError",
    "Operation",
    "Workload",
    "check",
    "normalized",
]

#: Answers that mean "not done, try again" (applied nothing): ABORTED COMMAND 08h/00h, what
#: ``pr-manager-emulated`` answers when its store does not answer in time.
RETRYABLE: Final = frozenset({SenseCode.LUN_COMM_FAILURE})
#: Steps of the search per logical unit before giving up (an inconclusive, not a pass).
DEFAULT_BUDGET: Final = 2_000_000
#: The helper protocol's largest data-in (qemu-pr-helper's PR_HELPER_DATA_SIZE).
_HELPER_DATA_SIZE: Final = 8192
_SENSE_SIZE: Final = 96
_PR_IN: Final = 0x5E


class HistoryError(TestingError, AssertionError):
    """No serial order explains the history: the store broke its guarantee (a test
    failure).  The message names the command that cannot be explained."""


class InconclusiveError(TestingError):
    """The search ran out of its budget before finding an order or proving there is none."""


@attrs.frozen
class Operation:
    """One command of a history, as a client saw it.

    :param initiator: the initiator name the daemon gives the client (``vm:NAME``...); the
        I_T nexus is ``Nexus(initiator, target_port)``, as ``pr-manager-emulated`` makes it.
    :param lu: the logical unit (any name: commands with the same one share a state).
    :param cdb: the CDB sent (PR IN or PR OUT).
    :param data: the PR OUT parameter list sent.
    :param invoked: ``time.monotonic()`` just before the command was sent.
    :param answered: ``time.monotonic()`` just after its answer arrived; ``None`` when none
        did (the connection broke).
    :param status: the SCSI status answered (``None`` without an answer).
    :param sense: the sense bytes answered.
    :param data_in: the data-in answered.
    :param target_port: the RELATIVE TARGET PORT IDENTIFIER of the nexus.
    :param client: who sent it (a label for reports: a process, a connection).
    """

    initiator: str
    lu: str
    cdb: bytes
    data: bytes
    invoked: float
    answered: float | None
    status: int | None = None
    sense: bytes = b""
    data_in: bytes = b""
    target_port: int = 1
    client: str = ""

    @property
    def nexus(self) -> Nexus:
        """The I_T nexus the command arrived on."""
        return Nexus(self.initiator, self.target_port)

    @property
    def unanswered(self) -> bool:
        """No answer arrived: the command may or may not have taken effect."""
        return self.status is None

    @property
    def sense_code(self) -> SenseCode | None:
        """The sense key and ASC/ASCQ answered, if any."""
        if self.status != ScsiStatus.CHECK_CONDITION:
            return None
        return ScsiResult(ScsiStatus.CHECK_CONDITION, self.sense).sense_code

    @property
    def retryable(self) -> bool:
        """Answered with a retryable CHECK CONDITION (:data:`RETRYABLE`)."""
        return self.sense_code in RETRYABLE

    @property
    def acknowledged(self) -> bool:
        """Answered, and not with a retryable CHECK CONDITION: the answer must be exact."""
        return not self.unanswered and not self.retryable

    @property
    def is_pr_out(self) -> bool:
        """A PERSISTENT RESERVE OUT command."""
        return bool(self.cdb) and self.cdb[0] == 0x5F

    def describe(self) -> str:
        """One line for a report."""
        what = _command_name(self.cdb)
        if self.status is None:
            answer = "no answer"
        else:
            answer = ScsiStatus(self.status).name
            code = ScsiResult(ScsiStatus(self.status), self.sense).sense_code
            if code is not None:
                answer += f" {code}"
            if self.data_in:
                answer += f" data {self.data_in.hex()}"
        who = f"{self.initiator}" + (f" ({self.client})" if self.client else "")
        when = f"sent {self.invoked:.6f}"
        when += f", answered {self.answered:.6f}" if self.answered is not None else ""
        return f"{who} {what} on {self.lu}: {answer} [{when}]"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dictionary (:meth:`from_json` reads it back)."""
        return {
            "initiator": self.initiator,
            "lu": self.lu,
            "cdb": self.cdb.hex(),
            "data": self.data.hex(),
            "invoked": self.invoked,
            "answered": self.answered,
            "status": self.status,
            "sense": self.sense.hex(),
            "data_in": self.data_in.hex(),
            "target_port": self.target_port,
            "client": self.client,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Operation:
        """The operation :meth:`to_json` wrote."""
        return cls(
            initiator=raw["initiator"],
            lu=raw["lu"],
            cdb=bytes.fromhex(raw["cdb"]),
            data=bytes.fromhex(raw["data"]),
            invoked=float(raw["invoked"]),
            answered=None if raw["answered"] is None else float(raw["answered"]),
            status=raw["status"],
            sense=bytes.fromhex(raw["sense"]),
            data_in=bytes.fromhex(raw["data_in"]),
            target_port=int(raw.get("target_port", 1)),
            client=raw.get("client", ""),
        )


def _command_name(cdb: bytes) -> str:
    if not cdb:
        return "(empty CDB)"
    try:
        if cdb[0] == _PR_IN:
            return PrInAction(cdb[1] & 0x1F).name
        if cdb[0] == 0x5F:
            name = PrOutAction(cdb[1] & 0x1F).name
            return f"{name} type {cdb[2] & 0x0F}"
    except ValueError:
        pass
    return f"CDB {cdb.hex()}"


def normalized(result: ScsiResult, cdb: bytes) -> tuple[int, bytes, bytes]:
    """*result* as the helper protocol carries it: ``(status, sense, data_in)`` with the
    sense padded to 96 bytes and data-in only for a GOOD PR IN, cut to its allocation
    length and the protocol's 8 KiB (what ``qompr-pr-helper`` sends)."""
    sense = result.sense[:_SENSE_SIZE].ljust(_SENSE_SIZE, b"\0")
    data = b""
    if result.status == ScsiStatus.GOOD and cdb and cdb[0] == _PR_IN:
        alloc = (cdb[7] << 8) | cdb[8]
        data = result.data[: min(alloc, _HELPER_DATA_SIZE)]
    return int(result.status), sense, data


def _recorded(op: Operation) -> tuple[int, bytes, bytes]:
    assert op.status is not None
    return op.status, op.sense[:_SENSE_SIZE].ljust(_SENSE_SIZE, b"\0"), op.data_in


@attrs.frozen
class CheckReport:
    """What :func:`check` found: counts, and the serial order per logical unit.

    :param operations: commands in the history.
    :param acknowledged: those whose answer was checked exactly (GOOD, RESERVATION
        CONFLICT, non-retryable CHECK CONDITION).
    :param acknowledged_pr_out: the acknowledged PR OUT commands.
    :param good_pr_out: the PR OUT commands answered GOOD (each one's effect is in the
        order, so none was lost).
    :param retryable: answered with a retryable CHECK CONDITION (held to "applied nothing"
        unless ``retryable_may_apply``).
    :param unanswered: without an answer (may or may not have applied).
    :param unknown_applied: of the commands whose fate was unknown, how many the order
        found applies (it needs them to explain what came after).
    :param logical_units: logical units in the history.
    :param steps: search steps taken.
    :param order: per logical unit, the indexes (into the history) of the serial order.
    """

    operations: int
    acknowledged: int
    acknowledged_pr_out: int
    good_pr_out: int
    retryable: int
    unanswered: int
    unknown_applied: int
    logical_units: int
    steps: int
    order: Mapping[str, tuple[int, ...]]

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{self.operations} commands on {self.logical_units} logical unit(s): "
            f"{self.acknowledged} acknowledged answers reproduced serially "
            f"({self.acknowledged_pr_out} PR OUT, {self.good_pr_out} of them GOOD), "
            f"{self.retryable} retryable CHECK CONDITION, {self.unanswered} unanswered "
            f"({self.unknown_applied} of the unknown ones applied); {self.steps} search steps"
        )


@attrs.define
class _Frame:
    state: LUState
    candidates: list[int]
    lo: int  # the first determinate command (in sending order) not yet placed
    first: int  # the first determinate command (in answer order) not yet placed
    chosen: int  # the command this frame placed (-1: the root)
    next: int = 0


class _Search:
    """Wing & Gong's search for one logical unit's operations."""

    def __init__(
        self,
        ops: Sequence[Operation],
        engine: Engine,
        unknown: Sequence[bool],
        initial: StateSnapshot,
        budget: int,
    ) -> None:
        self.ops = ops
        self.engine = engine
        self.unknown = unknown
        self.initial = initial
        self.budget = budget
        self.steps = 0
        n = len(ops)
        self.invoked = [op.invoked for op in ops]  # ops are sorted by invoked
        nexuses: dict[tuple[str, int], Nexus] = {}
        self.nexus = [nexuses.setdefault((op.initiator, op.target_port), op.nexus) for op in ops]
        self.determinate = [i for i in range(n) if not unknown[i]]
        self.by_answer = sorted(self.determinate, key=self._answered)
        self.unknown_ids = [i for i in range(n) if unknown[i]]
        self.placed = bytearray(n)
        self.deepest: tuple[int, list[int], LUState] = (-1, [], LUState())

    def _answered(self, i: int) -> float:
        answered = self.ops[i].answered
        return math.inf if answered is None or self.unknown[i] else answered

    def _candidates(self, lo: int, first: int) -> tuple[list[int], int, int, int]:
        """The commands that may come next after those placed, the two pointers advanced
        past what is placed (so a step costs the window, not the history), and the end of
        the window."""
        placed = self.placed
        n = len(self.ops)
        unknown = self.unknown
        while lo < n and (unknown[lo] or placed[lo]):
            lo += 1
        by_answer = self.by_answer
        while first < len(by_answer) and placed[by_answer[first]]:
            first += 1
        # The earliest answer among the determinate commands not yet placed bounds what may
        # come next: a command sent after that answer cannot precede it.
        bound = self._answered(by_answer[first]) if first < len(by_answer) else math.inf
        hi = bisect.bisect_right(self.invoked, bound)
        det = [i for i in range(lo, hi) if not unknown[i] and not placed[i]]
        det.sort(key=self._answered)  # likely commit order first
        unk = [i for i in self.unknown_ids if i < hi and not placed[i]]
        return det + unk, lo, first, hi

    def run(self) -> list[int]:
        """The serial order found (indexes into the operations).

        :raises HistoryError: there is none.
        :raises InconclusiveError: the budget ran out.
        """
        if not self.determinate:
            return []
        placed = self.placed
        unknown = self.unknown
        remaining = len(self.determinate)
        candidates, lo, first, _ = self._candidates(0, 0)
        stack = [_Frame(LUState.from_snapshot(self.initial), candidates, lo, first, -1)]
        order: list[int] = []
        # Memo: (placed set, state) pairs already explored.  Everything determinate before
        # lo is placed and nothing after the window is, so the window and the few unknown
        # commands before lo describe the placed set.
        seen: set[tuple[int, bytes, tuple[int, ...], StateSnapshot]] = set()
        while stack:
            frame = stack[-1]
            if frame.next >= len(frame.candidates):
                stack.pop()
                if frame.chosen >= 0:
                    placed[frame.chosen] = 0
                    remaining += not unknown[frame.chosen]
                    order.pop()
                continue
            i = frame.candidates[frame.next]
            frame.next += 1
            self.steps += 1
            if self.steps > self.budget:
                raise InconclusiveError(
                    f"logical unit {self.ops[0].lu}: no verdict after {self.budget} search "
                    f"steps ({len(self.ops)} commands)"
                )
            op = self.ops[i]
            outcome = self.engine.execute(frame.state, self.nexus[i], op.cdb, op.data)
            assert outcome.result is not None
            if unknown[i]:
                if outcome.changes is None:
                    continue  # applying it now changes nothing: same as leaving it pending
            elif normalized(outcome.result, op.cdb) != _recorded(op):
                if len(order) > self.deepest[0]:
                    self.deepest = (len(order), list(frame.candidates), frame.state)
                continue
            state = frame.state.copy()
            if outcome.changes is not None:
                state.apply(outcome.changes)
            placed[i] = 1
            candidates, lo, first, hi = self._candidates(frame.lo, frame.first)
            unknown_placed = tuple(u for u in self.unknown_ids if u < lo and placed[u])
            key = (lo, bytes(placed[lo:hi]), unknown_placed, state.snapshot())
            if key in seen:
                placed[i] = 0
                continue
            seen.add(key)
            order.append(i)
            remaining -= not unknown[i]
            if not remaining:
                return order
            stack.append(_Frame(state, candidates, lo, first, i))
        raise HistoryError(self._explain())

    def _explain(self) -> str:
        depth, candidates, state = self.deepest
        lines = [
            f"logical unit {self.ops[0].lu}: no serial order of its {len(self.ops)} commands "
            f"reproduces every answer; the longest explained prefix has {max(depth, 0)} "
            "commands, after which none of those that may come next gets its answer:"
        ]
        for i in candidates[:8]:
            op = self.ops[i]
            if self.unknown[i]:
                continue
            result = self.engine.execute(state, op.nexus, op.cdb, op.data).result
            assert result is not None
            serial = Operation(
                op.initiator,
                op.lu,
                op.cdb,
                op.data,
                op.invoked,
                op.answered,
                *normalized(result, op.cdb),
            )
            lines.append(f"  got:    {op.describe()}")
            lines.append(f"  serial: {serial.describe()}")
        lines.append(f"  state then: {state.snapshot()}")
        return "\n".join(lines)


def check(
    history: Iterable[Operation],
    *,
    engine: Engine | None = None,
    initial: Mapping[str, StateSnapshot] | None = None,
    retryable_may_apply: bool = False,
    budget: int = DEFAULT_BUDGET,
) -> CheckReport:
    """Check that a serial order explains *history* (see the module docstring).

    :param engine: the serial engine (default: LIO mode, one target port, as
        ``pr-manager-emulated`` by default).
    :param initial: the state of logical units that were not empty when the history began.
    :param retryable_may_apply: treat retryable CHECK CONDITIONs as "may have applied"
        rather than holding the store to "applied nothing".
    :param budget: search steps per logical unit.
    :raises HistoryError: no serial order exists (the store broke its guarantee).
    :raises InconclusiveError: the search needed more than *budget* steps.
    """
    engine = engine if engine is not None else Engine()
    ops = list(history)
    by_lu: dict[str, list[int]] = {}
    for index, op in enumerate(ops):
        by_lu.setdefault(op.lu, []).append(index)
    order: dict[str, tuple[int, ...]] = {}
    steps = 0
    unknown_applied = 0
    for lu, indexes in by_lu.items():
        # Commands refused with a retryable answer applied nothing: leave them out.
        kept = [i for i in indexes if not (ops[i].retryable and not retryable_may_apply)]
        kept.sort(key=lambda i: ops[i].invoked)
        local = [ops[i] for i in kept]
        unknown = [op.unanswered or op.retryable for op in local]
        start = (initial or {}).get(lu, StateSnapshot())
        search = _Search(local, engine, unknown, start, budget)
        found = search.run()
        steps += search.steps
        order[lu] = tuple(kept[i] for i in found)
        unknown_applied += sum(1 for i in found if unknown[i])
    acknowledged = [op for op in ops if op.acknowledged]
    return CheckReport(
        operations=len(ops),
        acknowledged=len(acknowledged),
        acknowledged_pr_out=sum(1 for op in acknowledged if op.is_pr_out),
        good_pr_out=sum(1 for op in acknowledged if op.is_pr_out and op.status == 0),
        retryable=sum(1 for op in ops if op.retryable),
        unanswered=sum(1 for op in ops if op.unanswered),
        unknown_applied=unknown_applied,
        logical_units=len(by_lu),
        steps=steps,
        order=order,
    )


# -- a random workload -----------------------------------------------------------------------

_TYPES: Final = tuple(PrType)
_PR_IN_ACTIONS: Final = (
    PrInAction.READ_KEYS,
    PrInAction.READ_RESERVATION,
    PrInAction.READ_FULL_STATUS,
    PrInAction.REPORT_CAPABILITIES,
)


def _key(initiator: str, index: int) -> int:
    # Two keys per initiator, stable across processes (no hash randomization).
    digest = sum((i + 1) * ord(c) for i, c in enumerate(initiator)) & 0xFFFF_FFFF
    return (digest << 16 | (index + 1)) & 0xFFFF_FFFF_FFFF_FFFF or 1


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class Workload:
    """Random PR IN/OUT commands for one initiator among *peers*, made to interfere.

    Each initiator uses two keys of its own; PREEMPT and REGISTER AND MOVE name the others'
    keys and initiators, so commands of different initiators race on the same state.  Every
    PR OUT service action but REPLACE LOST RESERVATION appears, with every type; about one
    command in three is a PR IN.

    :param initiator: the initiator name commands are sent as (``vm:NAME``...).
    :param peers: every initiator of the run (this one included).
    :param alloc: the ALLOCATION LENGTH of PR IN commands.
    """

    initiator: str
    peers: tuple[str, ...] = attrs.field(converter=_names)
    alloc: int = 1024

    def keys(self, initiator: str | None = None) -> tuple[int, int]:
        """The two keys *initiator* (default: this one) uses."""
        name = initiator if initiator is not None else self.initiator
        return _key(name, 0), _key(name, 1)

    def command(self, rng: random.Random) -> tuple[bytes, bytes]:
        """One random command: ``(cdb, parameter list)``."""
        own = self.keys()
        others = [k for peer in self.peers for k in self.keys(peer)]
        roll = rng.random()
        if roll < 0.33:
            return PrInCdb(rng.choice(_PR_IN_ACTIONS), self.alloc).to_bytes(), b""
        rk = rng.choice((0, *own, *own))
        pr_type = rng.choice(_TYPES)
        aptpl = rng.random() < 0.05
        if roll < 0.48:
            return _out(PrOutAction.REGISTER, 0, rk, rng.choice((0, *own)), aptpl)
        if roll < 0.58:
            action = PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY
            return _out(action, 0, 0, rng.choice((0, *own)), aptpl)
        if roll < 0.70:
            return _out(PrOutAction.RESERVE, pr_type, rk, 0, False)
        if roll < 0.80:
            return _out(PrOutAction.RELEASE, pr_type, rk, 0, False)
        if roll < 0.83:
            return _out(PrOutAction.CLEAR, 0, rk, 0, False)
        if roll < 0.94:
            action = PrOutAction.PREEMPT if roll < 0.92 else PrOutAction.PREEMPT_AND_ABORT
            return _out(action, pr_type, rk, rng.choice((0, *others)), False)
        dest = rng.choice(self.peers)
        params = RegisterAndMoveParameters(
            transport_id=Nexus(dest).transport_id,
            reservation_key=rk,
            sa_key=rng.choice(own),
            unreg=rng.random() < 0.5,
            relative_target_port=1,
        ).to_bytes()
        cdb = PrOutCdb(PrOutAction.REGISTER_AND_MOVE, 0, pr_type, len(params)).to_bytes()
        return cdb, params


def _out(action: PrOutAction, pr_type: int, rk: int, sark: int, aptpl: bool) -> tuple[bytes, bytes]:
    params = PrOutParameters(reservation_key=rk, sa_key=sark, aptpl=aptpl).to_bytes()
    return PrOutCdb(action, 0, pr_type, len(params)).to_bytes(), params
