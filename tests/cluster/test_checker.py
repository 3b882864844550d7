# SPDX-License-Identifier: MIT
"""The history checker itself (qompr.testing.checker): it passes what a serial execution
can produce, and fails what none can — so a pass of the cluster tests means something."""

from __future__ import annotations

import random

import pytest

from qompr.managers.emulated import Engine
from qompr.managers.emulated import LUState
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import pr_out_command
from qompr.testing.checker import HistoryError
from qompr.testing.checker import InconclusiveError
from qompr.testing.checker import Operation
from qompr.testing.checker import Workload
from qompr.testing.checker import check
from qompr.testing.checker import normalized

ENGINE = Engine()
READ = (PrInCdb(PrInAction.READ_KEYS, 1024).to_bytes(), b"")
K_A, K_B = 0xA1, 0xB2


def op(
    who: str,
    command: tuple[bytes, bytes],
    t0: float,
    t1: float | None,
    result: ScsiResult | None,
    *,
    lu: str = "lu",
) -> Operation:
    cdb, data = command
    if result is None:
        return Operation(who, lu, cdb, data, t0, None)
    return Operation(who, lu, cdb, data, t0, t1, *normalized(result, cdb))


def keys_answer(generation: int, *keys: int) -> ScsiResult:
    body = b"".join(k.to_bytes(8, "big") for k in keys)
    return ScsiResult.good(generation.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body)


def register(key: int) -> tuple[bytes, bytes]:
    return pr_out_command(PrOutAction.REGISTER, sark=key)


GOOD = ScsiResult.good()


def serial_history(seed: int, count: int = 300, initiators: int = 4) -> list[Operation]:
    """Commands executed one at a time (times strictly increasing), then each pair of
    neighbours made to overlap at random: a history a correct store could give."""
    rng = random.Random(seed)
    names = [f"vm:n{i}" for i in range(initiators)]
    states = {lu: LUState() for lu in ("lu1", "lu2")}
    history = []
    t = 0.0
    for _ in range(count):
        who = rng.choice(names)
        lu = rng.choice(sorted(states))
        cdb, data = Workload(who, tuple(names)).command(rng)
        outcome = ENGINE.execute(states[lu], Operation(who, lu, b"", b"", 0, 0).nexus, cdb, data)
        assert outcome.result is not None
        if outcome.changes is not None:
            states[lu].apply(outcome.changes)
        # Sent a little before the previous answer, sometimes: overlapping commands.
        start = t - rng.choice((0.0, 0.0, 0.5))
        history.append(op(who, (cdb, data), start, t + 1.0, outcome.result, lu=lu))
        t += 1.0
    return history


def test_a_serial_history_passes() -> None:
    history = serial_history(1)
    report = check(history)
    assert report.operations == report.acknowledged == len(history)
    assert report.logical_units == 2
    assert sorted(i for order in report.order.values() for i in order) == list(range(300))


def test_shuffled_records_still_pass() -> None:
    # The checker orders by time, not by the order records come in.
    history = serial_history(2)
    random.Random(2).shuffle(history)
    check(history)


@pytest.mark.parametrize("seed", range(5))
def test_one_wrong_answer_fails(seed: int) -> None:
    history = serial_history(seed)
    rng = random.Random(seed)
    candidates = [i for i, o in enumerate(history) if o.data_in[:4] and len(o.data_in) >= 8]
    index = rng.choice(candidates)
    wrong = history[index]
    # PRgeneration off by one: an answer no serial execution gives.
    generation = (int.from_bytes(wrong.data_in[:4], "big") + 1) & 0xFFFF_FFFF
    history[index] = Operation(
        wrong.initiator,
        wrong.lu,
        wrong.cdb,
        wrong.data,
        wrong.invoked,
        wrong.answered,
        wrong.status,
        wrong.sense,
        generation.to_bytes(4, "big") + wrong.data_in[4:],
    )
    with pytest.raises(HistoryError, match=wrong.lu):
        check(history)


def test_a_lost_acknowledgement_fails() -> None:
    cdb, data = register(K_A)
    history = [
        op("vm:a", (cdb, data), 0, 1, GOOD),
        op("vm:b", READ, 2, 3, keys_answer(0)),  # the key is gone: lost
    ]
    with pytest.raises(HistoryError, match="no serial order"):
        check(history)
    # The same read overlapping the REGISTER may have come first: fine.
    history[1] = op("vm:b", READ, 0.5, 3, keys_answer(0))
    check(history)


def test_real_time_order_is_kept() -> None:
    a, b = register(K_A), register(K_B)
    read = op("vm:c", READ, 10, 11, keys_answer(2, K_B, K_A))
    sequential = [op("vm:a", a, 0, 1, GOOD), op("vm:b", b, 2, 3, GOOD), read]
    with pytest.raises(HistoryError):
        check(sequential)  # A was answered before B was sent: READ KEYS must list A first
    overlapping = [op("vm:a", a, 0, 3, GOOD), op("vm:b", b, 1, 2, GOOD), read]
    report = check(overlapping)
    assert report.order["lu"] == (1, 0, 2)  # the order found: B committed first


def test_an_unanswered_command_may_have_applied_or_not() -> None:
    cdb, data = register(K_A)
    lost = op("vm:a", (cdb, data), 0, None, None)
    applied = [lost, op("vm:b", READ, 5, 6, keys_answer(1, K_A))]
    assert check(applied).unknown_applied == 1
    not_applied = [lost, op("vm:b", READ, 5, 6, keys_answer(0))]
    assert check(not_applied).unknown_applied == 0
    # ...but at most once, and only as itself.
    twice = [lost, op("vm:b", READ, 5, 6, keys_answer(2, K_A))]
    with pytest.raises(HistoryError):
        check(twice)


def test_a_retryable_answer_must_have_applied_nothing() -> None:
    cdb, data = register(K_A)
    refused = op("vm:a", (cdb, data), 0, 1, ScsiResult.check(SenseCode.LUN_COMM_FAILURE))
    assert refused.retryable and not refused.acknowledged
    history = [refused, op("vm:b", READ, 5, 6, keys_answer(1, K_A))]
    with pytest.raises(HistoryError):
        check(history)  # it said "not done" and it was done
    assert check(history, retryable_may_apply=True).unknown_applied == 1
    assert check([refused, op("vm:b", READ, 5, 6, keys_answer(0))]).retryable == 1


def test_a_target_failure_is_a_wrong_answer() -> None:
    cdb, data = register(K_A)
    history = [op("vm:a", (cdb, data), 0, 1, ScsiResult.check(SenseCode.TARGET_FAILURE))]
    with pytest.raises(HistoryError, match="TARGET_FAILURE|44"):
        check(history)


def test_reservation_conflicts_are_checked_too() -> None:
    a, b = register(K_A), register(K_B)
    reserve = pr_out_command(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.WRITE_EXCLUSIVE)
    b_reserve = pr_out_command(PrOutAction.RESERVE, rk=K_B, pr_type=PrType.WRITE_EXCLUSIVE)
    conflict = ScsiResult(ScsiStatus.RESERVATION_CONFLICT)
    base = [
        op("vm:a", a, 0, 1, GOOD),
        op("vm:b", b, 2, 3, GOOD),
        op("vm:a", reserve, 4, 5, GOOD),
    ]
    check([*base, op("vm:b", b_reserve, 6, 7, conflict)])
    with pytest.raises(HistoryError):
        check([*base, op("vm:b", b_reserve, 6, 7, GOOD)])  # two holders


def test_the_budget_bounds_the_search() -> None:
    # Many overlapping writers and a read nobody can explain: the search gives up honestly.
    history = [op(f"vm:{i}", register(i + 1), 0, 100, GOOD) for i in range(12)]
    history.append(op("vm:r", READ, 200, 201, keys_answer(12, *range(1, 12))))
    with pytest.raises(InconclusiveError):
        check(history, budget=1000)
