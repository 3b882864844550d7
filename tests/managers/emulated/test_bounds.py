# SPDX-License-Identifier: MIT
"""Issue 16 bounds: registrations, the work of one command, and the wait for a locked store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from qompr.managers.emulated import DEFAULT_MAX_REGISTRATIONS
from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineConfig
from qompr.managers.emulated import LUState
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import ReadKeysData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import SenseKey
from qompr.scsi import TransportID

from .harness import new_manager
from .harness import pr_in
from .harness import pr_out

A = Nexus("A")
RETRYABLE = SenseCode(SenseKey.ABORTED_COMMAND, 0x08, 0x00)


def tids(count: int, prefix: str = "t") -> list[TransportID]:
    return [TransportID.iscsi(f"iqn.2026-11.org.qompr:{prefix}{n}") for n in range(count)]


def test_max_registrations_has_a_default_bound(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    assert manager.max_registrations == DEFAULT_MAX_REGISTRATIONS == 4096
    # One SPEC_I_PT REGISTER naming more initiators than the bound: refused whole.
    cdb, data = pr_out(PrOutAction.REGISTER, sark=1, transport_ids=tids(4200))
    result = manager.execute(-1, cdb, data, nexus=A)
    assert result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    assert manager.snapshot(-1).registrations == ()
    # Up to the bound it works, and the next one is refused.
    cdb, data = pr_out(PrOutAction.REGISTER, sark=1, transport_ids=tids(4095))
    assert manager.execute(-1, cdb, data, nexus=A).ok
    assert len(manager.snapshot(-1).registrations) == 4096
    cdb, data = pr_out(PrOutAction.REGISTER, sark=2)
    result = manager.execute(-1, cdb, data, nexus=Nexus("late"))
    assert result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    assert len(manager.snapshot(-1).registrations) == 4096


def test_spec_i_pt_work_stops_at_the_room_left() -> None:
    # 65535 target ports x 300 TransportIDs with ALL_TG_PT would be ~20 million nexuses to
    # build; the engine gives up as soon as they exceed the room (10) instead.
    engine = Engine(EngineConfig(target_ports=range(1, 0x10000), max_registrations=10))
    cdb, data = pr_out(PrOutAction.REGISTER, sark=1, all_tg_pt=False, transport_ids=tids(300))
    start = time.process_time()
    outcome = engine.execute(LUState(), A, cdb, data)
    assert outcome.result is not None
    assert outcome.result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    cdb, data = pr_out(PrOutAction.REGISTER, sark=1, all_tg_pt=True, transport_ids=tids(300))
    outcome = engine.execute(LUState(), Nexus("B", 7), cdb, data)
    assert outcome.result is not None
    assert outcome.result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    # Generous: the unbounded loop takes minutes; the bounded one well under a second.
    assert time.process_time() - start < 5
    # An exact fit is accepted.
    small = Engine(EngineConfig(target_ports=(1,), max_registrations=10))
    cdb, data = pr_out(PrOutAction.REGISTER, sark=1, transport_ids=tids(9))
    outcome = small.execute(LUState(), A, cdb, data)
    assert outcome.result is not None and outcome.result.ok
    assert outcome.changes is not None and len(outcome.changes.put) == 10


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.read()  # hold the write lock until told (EOF)
    conn.execute("ROLLBACK")
    """
)


def test_a_process_holding_the_write_lock_gets_a_retryable_answer(
    tree: ObjectTree, tmp_path: Path
) -> None:
    state = str(tmp_path / "pr.db")
    manager = new_manager(tree, state=state, state_sync="normal", timeout=300)
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x11)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, state],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        # PR IN takes no write transaction: answered as usual while the lock is held.
        read = manager.execute(-1, pr_in(PrInAction.READ_KEYS), nexus=A)
        assert read.ok and ReadKeysData.from_bytes(read.data).keys == (0x11,)
        # PR OUT waits at most `timeout`, then a retryable CHECK CONDITION, nothing applied.
        start = time.monotonic()
        cdb, data = pr_out(PrOutAction.REGISTER, rk=0x11, sark=0x12)
        result = manager.execute(-1, cdb, data, nexus=A)
        waited = time.monotonic() - start
        assert result.status == ScsiStatus.CHECK_CONDITION
        assert result.sense_code == RETRYABLE
        assert 0.25 <= waited < 10  # 300 ms, generously bounded above for a loaded machine
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # The initiator retries, and now it works.
    assert manager.execute(-1, cdb, data, nexus=A).ok
    assert manager.snapshot(-1).keys == (0x12,)


def test_queued_commands_share_the_bound(tree: ObjectTree, tmp_path: Path) -> None:
    # Commands queued behind a stalled one do not each wait `timeout` in turn: every one
    # is answered within about one `timeout` of its own arrival.
    state = str(tmp_path / "pr.db")
    manager = new_manager(tree, state=state, state_sync="normal", timeout=300)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, state],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    answers: list[tuple[float, SenseCode | None]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        cdb, data = pr_out(PrOutAction.REGISTER, sark=n + 1)
        start = time.monotonic()
        result = manager.execute(-1, cdb, data, nexus=Nexus(f"n{n}"))
        with lock:
            answers.append((time.monotonic() - start, result.sense_code))

    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert len(answers) == 8
    assert all(code == RETRYABLE for _, code in answers)
    # Serial waits would add up to 8 x 300 ms; allow a loaded machine a lot, not that.
    assert max(waited for waited, _ in answers) < 2.2
    assert manager.snapshot(-1).registrations == ()


def test_concurrent_writers_are_group_committed_and_all_applied(
    tree: ObjectTree, tmp_path: Path
) -> None:
    state = str(tmp_path / "pr.db")
    manager = new_manager(tree, state=state, state_sync="full")
    rounds, workers = 25, 8
    errors: list[str] = []

    def work(n: int) -> None:
        nexus = Nexus(f"w{n}")
        key = 0
        for r in range(rounds):
            cdb, data = pr_out(PrOutAction.REGISTER, rk=key, sark=(n << 16) | (r + 1))
            result = manager.execute(-1, cdb, data, nexus=nexus)
            if not result.ok:
                errors.append(f"{n}/{r}: {result}")
                return
            key = (n << 16) | (r + 1)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    snap = manager.snapshot(-1)
    assert sorted(snap.keys) == [(n << 16) | rounds for n in range(workers)]
    assert snap.generation == rounds * workers
    # Another process sees exactly the same state (every answer was committed).
    code = (
        "import sys; from qompr.managers.emulated import SqliteStore;"
        "s = SqliteStore(sys.argv[1], join=False); print(sorted(s.snapshot('lu0').keys),"
        " s.snapshot('lu0').generation)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code, state], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert out == f"{sorted(snap.keys)} {rounds * workers}\n"
