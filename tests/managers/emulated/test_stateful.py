# SPDX-License-Identifier: MIT
"""Hypothesis stateful test: the engine against a small, independent reference model.

The model below is written from docs/reference/spc4-pr.md in the plainest way (lists and names, no
shared code with the engine).  Three initiators on one port send random PR OUT commands with keys
from a small set (so keys collide), TEST UNIT READY and WRITE; after every command the
answer, the registrations in order, the reservation, PRgeneration, APTPL and every unit
attention queue must agree.  It runs in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import invariant
from hypothesis.stateful import precondition
from hypothesis.stateful import rule

from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineConfig
from qompr.managers.emulated import LUState
from qompr.managers.emulated import Policy
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

from .harness import pr_out

NAMES = ("A", "B", "C")
NEXUS = {name: Nexus(name) for name in NAMES}
NAME_OF = {nexus: name for name, nexus in NEXUS.items()}
KEYS = st.sampled_from([1, 2, 3])
SARKS = st.sampled_from([0, 1, 2, 3])
WHO = st.sampled_from(NAMES)
FLAG = st.booleans()
TYPES = st.sampled_from([1, 3, 5, 6, 7, 8, 1, 3, 5, 6, 7, 8, 0])
RO = {5, 6}
AR = {7, 8}
VALID = {1, 3, 5, 6, 7, 8}
WRITE10 = bytes((Opcode.WRITE_10, *bytes(9)))
TUR = bytes(6)


class Model:
    """A persistent-reservation logical unit, the simple way."""

    def __init__(self, lio: bool) -> None:
        self.lio = lio
        self.regs: list[list[Any]] = []  # [name, key] in registration order
        self.res: dict[str, Any] | None = None  # {"type": t, "holder": name}
        self.gen = 0
        self.aptpl = False
        self.ua: dict[str, list[str]] = {name: [] for name in NAMES}

    # helpers
    def key_of(self, name: str) -> int | None:
        for reg_name, key in self.regs:
            if reg_name == name:
                return int(key)
        return None

    def holder(self, name: str) -> bool:
        if self.res is None:
            return False
        if self.res["type"] in AR:
            return self.key_of(name) is not None
        return bool(self.res["holder"] == name)

    def tell(self, names: list[str], code: str) -> None:
        for name in names:
            if code not in self.ua[name]:
                self.ua[name].append(code)

    def remove(self, names: list[str]) -> None:
        """Remove registrations, with what that does to the reservation (no UAs here)."""
        self.regs = [r for r in self.regs if r[0] not in names]
        if self.res is None:
            return
        if self.res["type"] in AR:
            if not self.regs:
                self.res = None
            elif self.res["holder"] in names:
                self.res["holder"] = self.regs[0][0]

    def pending(self, name: str) -> str | None:
        """The unit attention a command from *name* reports: the oldest queued.  LIO clears
        every unit attention queued for the nexus with it (UA_INTLCK_CTRL=00b: its
        check-condition path frees the whole list); SPC-4 §5.14 reports each in turn."""
        queue = self.ua[name]
        if not queue:
            return None
        code = queue[0]
        if self.lio:
            queue.clear()
        else:
            queue.pop(0)
        return code

    def not_registered(self) -> str:
        return "NOT_READY_LUN_COMM_FAILURE" if self.lio and self.res is None else "CONFLICT"

    # commands; each returns "GOOD", "CONFLICT" or a SenseCode name
    def register(self, name: str, rk: int, sark: int, ignore: bool, aptpl: bool) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        key = self.key_of(name)
        if key is None:
            if not ignore and rk != 0:
                return "CONFLICT"
            if sark == 0:
                if not self.lio:
                    self.gen += 1
                return "GOOD"
            self.regs.append([name, sark])
            self.gen += 1
            self.aptpl = aptpl
            return "GOOD"
        if not ignore and rk != key:
            return "CONFLICT"
        self.aptpl = aptpl
        if sark != 0:
            for reg in self.regs:
                if reg[0] == name:
                    reg[1] = sark
            self.gen += 1
            return "GOOD"
        res = self.res
        self.remove([name])
        if res is not None and res["type"] not in AR and res["holder"] == name:
            if res["type"] in RO:
                self.tell([r[0] for r in self.regs], "RESERVATIONS_RELEASED")
            self.res = None
        if not self.lio:
            self.gen += 1
        return "GOOD"

    def access(self, name: str, for_registrants: bool) -> bool:
        """The access check for a PR OUT from a non-holder (True: go on)."""
        if self.res is None or self.holder(name):
            return True
        registered = self.key_of(name) is not None
        if for_registrants:
            return registered
        # RESERVE / REGISTER AND MOVE: LIO's data-out rule; SPC: always a conflict.
        return self.lio and registered and self.res["type"] in RO | AR

    def reserve(self, name: str, rk: int, pr_type: int) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if not self.access(name, for_registrants=False):
            return "CONFLICT"
        if pr_type not in VALID:
            return "INVALID_FIELD"
        key = self.key_of(name)
        if key is None:
            return self.not_registered()
        if rk != key:
            return "CONFLICT"
        if self.res is not None:
            if not self.holder(name) or self.res["type"] != pr_type:
                return "CONFLICT"
            return "GOOD"
        self.res = {"type": pr_type, "holder": name}
        return "GOOD"

    def release(self, name: str, rk: int, pr_type: int) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if not self.access(name, for_registrants=True):
            return "CONFLICT"
        key = self.key_of(name)
        if key is None:
            return self.not_registered()
        if not self.lio and rk != key:
            return "CONFLICT"
        if self.res is None or not self.holder(name):
            return "GOOD"
        if rk != key:
            return "CONFLICT"
        if self.res["type"] != pr_type:
            return "CONFLICT" if self.lio else "INVALID_RELEASE"
        if self.res["type"] in RO | AR:
            self.tell([r[0] for r in self.regs if r[0] != name], "RESERVATIONS_RELEASED")
        self.res = None
        return "GOOD"

    def clear(self, name: str, rk: int) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if not self.access(name, for_registrants=True):
            return "CONFLICT"
        key = self.key_of(name)
        if key is None:
            return self.not_registered()
        if rk != key:
            return "CONFLICT"
        self.tell([r[0] for r in self.regs if r[0] != name], "RESERVATIONS_PREEMPTED")
        self.regs = []
        self.res = None
        self.gen += 1
        if self.lio:
            self.aptpl = False
        return "GOOD"

    def preempt(self, name: str, rk: int, sark: int, pr_type: int) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if not self.access(name, for_registrants=True):
            return "CONFLICT"
        if self.lio and pr_type not in VALID:
            return "INVALID_FIELD"
        key = self.key_of(name)
        if key is None or rk != key:
            return "CONFLICT"
        res = self.res
        take_over = False
        if res is None:
            if sark == 0:
                return "INVALID_PARAM"
        elif res["type"] in AR:
            if sark == 0:
                if pr_type not in VALID:
                    return "INVALID_FIELD"
                others = [r[0] for r in self.regs if r[0] != name]
                self.regs = [r for r in self.regs if r[0] == name]
                self.tell(others, "REGISTRATIONS_PREEMPTED")
                self.res = {"type": pr_type, "holder": name}
                self.gen += 1
                return "GOOD"
            take_over = self.lio and sark == self.key_of(res["holder"])
        else:
            take_over = sark == self.key_of(res["holder"])
            if not take_over and sark == 0:
                return "INVALID_PARAM"
        if take_over:
            assert res is not None
            if pr_type not in VALID:
                return "INVALID_FIELD"
            victims = [r[0] for r in self.regs if r[1] == sark and r[0] != name]
            self.regs = [r for r in self.regs if r[0] not in victims]
            self.tell(victims, "REGISTRATIONS_PREEMPTED")
            self.res = {"type": pr_type, "holder": name}
            if pr_type != res["type"]:
                self.tell([r[0] for r in self.regs if r[0] != name], "RESERVATIONS_RELEASED")
            self.gen += 1
            return "GOOD"
        victims = [r[0] for r in self.regs if r[1] == sark]
        if not victims:
            return "CONFLICT"
        self.remove(victims)
        self.tell([v for v in victims if v != name], "REGISTRATIONS_PREEMPTED")
        self.gen += 1
        return "GOOD"

    def move(self, name: str, rk: int, sark: int, dest: str, unreg: bool) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if not self.access(name, for_registrants=False):
            return "CONFLICT"
        key = self.key_of(name)
        if key is None:
            return self.not_registered()
        if rk != key:
            return "CONFLICT"
        if sark == 0 or dest == name:
            return "INVALID_PARAM"
        if self.res is None:
            return "INVALID_FIELD"
        if not self.holder(name) or self.res["type"] in AR:
            return "CONFLICT"
        if self.key_of(dest) is None:
            self.regs.append([dest, sark])
        else:
            for reg in self.regs:
                if reg[0] == dest:
                    reg[1] = sark
        self.res = {"type": self.res["type"], "holder": dest}
        if unreg:
            self.regs = [r for r in self.regs if r[0] != name]
        self.gen += 1
        self.aptpl = False
        return "GOOD"

    def write(self, name: str) -> str:
        ua = self.pending(name)
        if ua:
            return ua
        if self.res is None or self.holder(name):
            return "GOOD"
        registered = self.key_of(name) is not None
        return "GOOD" if registered and self.res["type"] in RO | AR else "CONFLICT"

    def tur(self, name: str) -> str:
        return self.pending(name) or "GOOD"


def outcome_name(result: ScsiResult) -> str:
    if result.status == ScsiStatus.GOOD:
        return "GOOD"
    if result.status == ScsiStatus.RESERVATION_CONFLICT:
        return "CONFLICT"
    code = result.sense_code
    assert code is not None and code.name is not None, result
    return code.name


class PRMachine(RuleBasedStateMachine):
    """Engine and model side by side (the mode is fixed by the subclasses)."""

    mode = "lio"

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(EngineConfig(Policy.for_mode(self.mode)))
        self.state = LUState()
        self.model = Model(lio=self.mode == "lio")

    def _send(self, name: str, cdb: bytes, data: bytes = b"") -> str:
        nexus = NEXUS[name]
        if cdb[0] in (Opcode.PERSISTENT_RESERVE_OUT, Opcode.PERSISTENT_RESERVE_IN):
            outcome = self.engine.execute(self.state, nexus, cdb, data)
        else:
            outcome = self.engine.admit(self.state, nexus, cdb)
        if outcome.changes is not None:
            self.state.apply(outcome.changes)
        return "GOOD" if outcome.result is None else outcome_name(outcome.result)

    def _rk(self, name: str, right: bool, wrong: int) -> int:
        key = self.model.key_of(name)
        return (key or 0) if right else wrong

    @rule(name=WHO, right=FLAG, wrong=KEYS, sark=SARKS, ignore=FLAG, aptpl=FLAG)
    def register(
        self, *, name: str, right: bool, wrong: int, sark: int, ignore: bool, aptpl: bool
    ) -> None:
        rk = self._rk(name, right, wrong)
        action = PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY if ignore else PrOutAction.REGISTER
        got = self._send(name, *pr_out(action, rk=rk, sark=sark, aptpl=aptpl))
        assert got == self.model.register(name, rk, sark, ignore, aptpl)

    @rule(name=WHO, right=FLAG, wrong=KEYS, pr_type=TYPES)
    def reserve(self, *, name: str, right: bool, wrong: int, pr_type: int) -> None:
        rk = self._rk(name, right, wrong)
        got = self._send(name, *pr_out(PrOutAction.RESERVE, rk=rk, pr_type=pr_type))
        assert got == self.model.reserve(name, rk, pr_type)

    @rule(name=WHO, right=FLAG, wrong=KEYS, pr_type=TYPES, same=FLAG)
    def release(self, *, name: str, right: bool, wrong: int, pr_type: int, same: bool) -> None:
        rk = self._rk(name, right, wrong)
        if same and self.model.res is not None:
            pr_type = self.model.res["type"]
        got = self._send(name, *pr_out(PrOutAction.RELEASE, rk=rk, pr_type=pr_type))
        assert got == self.model.release(name, rk, pr_type)

    @precondition(lambda self: len(self.model.regs) >= 2)
    @rule(name=WHO, right=FLAG, wrong=KEYS)
    def clear(self, *, name: str, right: bool, wrong: int) -> None:
        rk = self._rk(name, right, wrong)
        got = self._send(name, *pr_out(PrOutAction.CLEAR, rk=rk))
        assert got == self.model.clear(name, rk)

    @rule(name=WHO, right=FLAG, wrong=KEYS, sark=SARKS, pr_type=TYPES, abort=FLAG)
    def preempt(
        self, *, name: str, right: bool, wrong: int, sark: int, pr_type: int, abort: bool
    ) -> None:
        rk = self._rk(name, right, wrong)
        action = PrOutAction.PREEMPT_AND_ABORT if abort else PrOutAction.PREEMPT
        got = self._send(name, *pr_out(action, rk=rk, sark=sark, pr_type=pr_type))
        assert got == self.model.preempt(name, rk, sark, pr_type)

    @rule(name=WHO, right=FLAG, wrong=KEYS, sark=SARKS, dest=WHO, unreg=FLAG)
    def register_and_move(
        self, *, name: str, right: bool, wrong: int, sark: int, dest: str, unreg: bool
    ) -> None:
        rk = self._rk(name, right, wrong)
        data = RegisterAndMoveParameters(
            reservation_key=rk, sa_key=sark, unreg=unreg, transport_id=NEXUS[dest].transport_id
        ).to_bytes()
        cdb = PrOutCdb(PrOutAction.REGISTER_AND_MOVE, 0, 0, len(data)).to_bytes()
        got = self._send(name, cdb, data)
        assert got == self.model.move(name, rk, sark, dest, unreg)

    @rule(name=WHO)
    def write(self, name: str) -> None:
        assert self._send(name, WRITE10) == self.model.write(name)

    @rule(name=WHO)
    def test_unit_ready(self, name: str) -> None:
        assert self._send(name, TUR) == self.model.tur(name)

    @invariant()
    def same_state(self) -> None:
        snap = self.state.snapshot()
        model = self.model
        # Nexuses compare by TransportID and port (their labels may differ).
        assert [(n, r.key) for n, r in snap.registrations] == [
            (NEXUS[name], key) for name, key in model.regs
        ]
        if model.res is None:
            assert snap.reservation is None
        else:
            assert snap.reservation is not None
            assert int(snap.reservation.type) == model.res["type"]
            assert snap.reservation.holder == NEXUS[model.res["holder"]]
        assert snap.generation == model.gen
        assert snap.aptpl == model.aptpl
        queues = {NAME_OF[n]: [c.name for c in codes] for n, codes in snap.unit_attentions}
        assert queues == {name: q for name, q in model.ua.items() if q}

    @invariant()
    def registrations_have_nonzero_keys(self) -> None:
        assert all(reg.key for reg in self.state.registrations.values())
        assert SenseCode.NO_SENSE not in {c for q in self.state.unit_attentions.values() for c in q}


class LioMachine(PRMachine):
    mode = "lio"


class Spc4Machine(PRMachine):
    mode = "spc4"


_SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLioEngineAgainstModel = LioMachine.TestCase
TestLioEngineAgainstModel.settings = _SETTINGS
TestSpc4EngineAgainstModel = Spc4Machine.TestCase
TestSpc4EngineAgainstModel.settings = _SETTINGS


def _found_sequence(machine: PRMachine) -> list[str]:
    """The sequence Hypothesis found when the model still popped one unit attention in
    mode lio: C ends with two unit attentions queued, then sends TEST UNIT READY twice.
    Every step is checked against the model as the machine checks it."""
    steps: list[Callable[[], object]] = [
        lambda: machine.register(name="B", right=True, wrong=1, sark=1, ignore=False, aptpl=False),
        lambda: machine.reserve(name="B", right=True, wrong=1, pr_type=5),  # WE_RO
        lambda: machine.register(name="C", right=True, wrong=1, sark=2, ignore=False, aptpl=False),
        lambda: machine.release(name="B", right=True, wrong=1, pr_type=5, same=True),
        lambda: machine.preempt(name="B", right=True, wrong=1, sark=2, pr_type=1, abort=False),
    ]
    for step in steps:
        step()
        machine.same_state()
    assert machine.model.ua["C"] == ["RESERVATIONS_RELEASED", "REGISTRATIONS_PREEMPTED"]
    answers = []
    for _ in range(2):
        answers.append(machine._send("C", TUR))
        machine.model.tur("C")
        machine.same_state()
    return answers


def test_lio_clears_every_queued_unit_attention_with_the_one_it_reports() -> None:
    assert _found_sequence(LioMachine()) == ["RESERVATIONS_RELEASED", "GOOD"]


def test_spc4_reports_each_unit_attention_in_turn() -> None:
    assert _found_sequence(Spc4Machine()) == ["RESERVATIONS_RELEASED", "REGISTRATIONS_PREEMPTED"]
