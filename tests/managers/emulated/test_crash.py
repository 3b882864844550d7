# SPDX-License-Identifier: MIT
"""Crash test: SIGKILL a process in the middle of PR OUT commands, many times.

Each round starts ``crash_child.py`` on the same state file and kills it at a random moment
(sometimes before it has done anything, usually while it is committing commands: after it
has acknowledged a random number of them, so how far a child gets does not depend on the
CPU time it is given).  Then:

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
ROUNDS = 60
MOST_ACKNOWLEDGED = 600  # a round kills its child after up to this many acknowledgements
WAIT = 30.0  # seconds: the longest a child may take to print its next line


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


def read_lines(fd: int, count: int) -> bytes:
    """What the child printed until *count* whole lines (or its end of output)."""
    seen = b""
    while seen.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], WAIT)
        assert ready, f"the child printed nothing for {WAIT:g} s after {seen[-40:]!r}"
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # it exited: its status and stderr say why
        seen += chunk
    return seen


def run_child(path: str, seed: int, first: int, rng: random.Random, start: str) -> list[int]:
    """Start the child, kill it at a random moment, return the acknowledged numbers.

    The moment is chosen in the child's progress, not on the clock: after "ready" and a
    random number of acknowledgements (then a random instant more), so a slow machine
    changes how long a round takes, not what it tests."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    sync = "full" if rng.random() < 0.25 else "normal"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), path, str(seed), str(first), sync, start],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    seen = b""
    if rng.random() < 0.1:
        time.sleep(rng.uniform(0.0, 0.15))  # maybe while it starts, maybe while it opens
    else:
        seen = read_lines(child.stdout.fileno(), 1 + rng.randrange(MOST_ACKNOWLEDGED))
        time.sleep(rng.uniform(0.0, 0.002))
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=WAIT)
    assert child.returncode == -signal.SIGKILL, err.decode()
    return [int(line) for line in (seen + out).decode().split() if line != "ready"]


@pytest.mark.slow
def test_sigkill_never_loses_or_half_applies(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    rng = random.Random(0xC0FFEE)
    model = LUState()  # the state the file held before the round (raw, no power cycle)
    acknowledged = unacknowledged_commits = 0
    aptpl_survivals = told = 0
    for rounds in range(1, ROUNDS + 1):
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
    assert acknowledged > 100, "the children hardly ran; the test proves nothing"
    assert aptpl_survivals > 0, "no round ended with APTPL state to keep"
    assert told > 0, "no power cycle had a nexus to tell"
    print(
        f"{ROUNDS} kills, {acknowledged} acknowledged commands, "
        f"{unacknowledged_commits} committed-not-acknowledged, {aptpl_survivals} APTPL restarts,"
        f" {told} nexuses told of a power on"
    )
