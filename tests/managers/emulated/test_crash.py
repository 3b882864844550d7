# SPDX-License-Identifier: MIT
"""Crash test: SIGKILL a process in the middle of PR OUT commands, many times.

Each round starts ``crash_child.py`` on the same state file and kills it at a random moment
(sometimes before it has done anything, usually while it is committing commands).  Then:

1. the file, read without a power cycle, must hold exactly the state after the last
   acknowledged command, or after the one following it (killed between commit and
   acknowledgement) - never anything else, in particular never half a command;
2. a restart resumes exactly that state (a restart is not a power cycle); a restart with
   ``start=power-cycle`` (every other round) must leave exactly what APTPL keeps of it,
   with every known I_T nexus told by UNIT ATTENTION 29h/01h.

Each child opens the file as ``start=resume`` or, one round in four, as
``start=power-cycle`` (it is then the only user, so it plays a power cycle first).

The expected states come from replaying the same numbered commands on an in-memory state.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qompr.managers.emulated import Engine
from qompr.managers.emulated import LUState
from qompr.managers.emulated import SqliteStore
from qompr.managers.emulated import StateSnapshot

from .crash_child import LU
from .crash_child import command_for

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[3]
ENGINE = Engine()
TIME_BUDGET = 20.0  # seconds for all rounds
MAX_ROUNDS = 60


def replay(state: LUState, seed: int, index: int) -> None:
    nexus, cdb, data = command_for(seed, index)
    outcome = ENGINE.execute(state, nexus, cdb, data)
    if outcome.changes is not None:
        state.apply(outcome.changes)


def stored(path: str) -> StateSnapshot:
    store = SqliteStore(path, power_on=False)
    try:
        return store.snapshot(LU)
    finally:
        store.close()


def run_child(path: str, seed: int, first: int, rng: random.Random, start: str) -> list[int]:
    """Start the child, kill it at a random moment, return the acknowledged numbers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    sync = "full" if rng.random() < 0.25 else "normal"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), path, str(seed), str(first), sync, start],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    if rng.random() < 0.1:
        time.sleep(rng.uniform(0.0, 0.15))  # maybe while it starts, maybe while it opens
    else:
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the child did not start"
        time.sleep(rng.uniform(0.001, 0.08))
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    return [int(line) for line in out.decode().split() if line != "ready"]


@pytest.mark.slow
def test_sigkill_never_loses_or_half_applies(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    rng = random.Random(0xC0FFEE)
    model = LUState()  # the state the file held before the round (raw, no power cycle)
    deadline = time.monotonic() + TIME_BUDGET
    rounds = acknowledged = unacknowledged_commits = 0
    aptpl_survivals = told = 0
    while rounds < MAX_ROUNDS and time.monotonic() < deadline:
        rounds += 1
        seed = rng.randrange(1 << 30)
        start = "power-cycle" if rng.random() < 0.25 else "resume"
        acked = run_child(path, seed, 0, rng, start)
        assert acked == list(range(len(acked))), "acknowledgements out of order"
        acknowledged += len(acked)
        got = stored(path)
        # Candidates: untouched (killed before opening), or (power on, if the child played
        # one, then) commands 0..n-1, or one more (killed between COMMIT and acknowledgement).
        expected = model.copy()
        if start == "power-cycle":
            expected.power_on()
        for index in acked:
            replay(expected, seed, index)
        one_more = expected.copy()
        replay(one_more, seed, len(acked))
        candidates = [expected.snapshot(), one_more.snapshot()]
        if not acked:
            candidates.append(model.snapshot())
        assert got in candidates, f"round {rounds}: state after the kill is not a command boundary"
        if got == one_more.snapshot() and got != expected.snapshot():
            unacknowledged_commits += 1
        model = LUState.from_snapshot(got)
        # A restart resumes the state as it was, unit attentions included.
        store = SqliteStore(path, synchronous="normal")
        try:
            assert store.snapshot(LU) == got
        finally:
            store.close()
        if rounds % 2:
            continue
        # A restart with start=power-cycle: what APTPL keeps must be there, and every
        # nexus that had state is told.
        restarted = model.copy()
        known = restarted.known_nexuses()
        restarted.power_on()
        store = SqliteStore(path, synchronous="normal", power_on=True)
        try:
            assert store.snapshot(LU) == restarted.snapshot()
        finally:
            store.close()
        assert {n for n, _ in restarted.snapshot().unit_attentions} == set(known)
        told += len(known)
        if restarted.registrations:
            aptpl_survivals += 1
        model = restarted
    assert rounds >= 20, f"only {rounds} rounds in {TIME_BUDGET}s"
    assert acknowledged > 100, "the children hardly ran; the test proves nothing"
    assert aptpl_survivals > 0, "no round ended with APTPL state to keep"
    assert told > 0, "no power cycle had a nexus to tell"
    print(
        f"{rounds} kills, {acknowledged} acknowledged commands, "
        f"{unacknowledged_commits} committed-not-acknowledged, {aptpl_survivals} APTPL restarts,"
        f" {told} nexuses told of a power on"
    )
