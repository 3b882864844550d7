# SPDX-License-Identifier: MIT
"""The stores: SQLite durability, power-on (APTPL) semantics, sharing between processes."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from qompr.managers.emulated import LIO
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineConfig
from qompr.managers.emulated import EngineOutcome
from qompr.managers.emulated import LUState
from qompr.managers.emulated import MemoryStore
from qompr.managers.emulated import SqliteStore
from qompr.managers.emulated import StateFileError
from qompr.managers.emulated import StateSnapshot
from qompr.managers.emulated import StoreUnavailableError
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import TransportID

from .harness import pr_out

ENGINE = Engine(EngineConfig(LIO))
A, B, C = Nexus("A"), Nexus("B"), Nexus("C")
ROOT = Path(__file__).resolve().parents[3]


def do(store: MemoryStore | SqliteStore, nexus: Nexus, command: tuple[bytes, bytes]) -> bool:
    cdb, data = command
    outcome = store.transact("lu0", lambda state: ENGINE.execute(state, nexus, cdb, data))
    assert outcome.result is not None
    return outcome.result.ok


def populate(store: MemoryStore | SqliteStore, *, aptpl: bool) -> None:
    assert do(store, A, pr_out(PrOutAction.REGISTER, sark=0xA, aptpl=aptpl))
    assert do(store, B, pr_out(PrOutAction.REGISTER, sark=0xF000_0000_0000_000B, aptpl=aptpl))
    assert do(store, C, pr_out(PrOutAction.REGISTER, sark=0xC, aptpl=aptpl))
    assert do(store, B, pr_out(PrOutAction.RESERVE, rk=0xF000_0000_0000_000B, pr_type=5))
    # Key change keeps the position; RELEASE queues unit attentions for A and C.
    assert do(store, A, pr_out(PrOutAction.REGISTER, rk=0xA, sark=0xAA, aptpl=aptpl))
    assert do(store, B, pr_out(PrOutAction.RELEASE, rk=0xF000_0000_0000_000B, pr_type=5))
    assert do(store, B, pr_out(PrOutAction.RESERVE, rk=0xF000_0000_0000_000B, pr_type=8))


def test_sqlite_reopened_equals_memory(tmp_path: Path) -> None:
    memory = MemoryStore()
    populate(memory, aptpl=False)
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    populate(store, aptpl=False)
    assert store.snapshot("lu0") == memory.snapshot("lu0")
    store.close()
    again = SqliteStore(path, power_on=False)
    assert again.snapshot("lu0") == memory.snapshot("lu0")
    assert again.logical_units() == ["lu0"]
    assert again.snapshot("other") == StateSnapshot()
    again.close()


@pytest.mark.parametrize("aptpl", [False, True])
def test_power_cycle_at_start_keeps_only_what_aptpl_keeps(tmp_path: Path, aptpl: bool) -> None:
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    populate(store, aptpl=aptpl)
    before = store.snapshot("lu0")
    assert before.unit_attentions  # A and C were told of the RELEASE
    store.close()
    resumed = SqliteStore(path)  # a restart is not a power cycle
    assert resumed.snapshot("lu0") == before
    resumed.close()
    restarted = SqliteStore(path, power_on=True)  # the only user asks for one
    after = restarted.snapshot("lu0")
    if aptpl:
        assert after.registrations == before.registrations
        assert after.reservation == before.reservation
        assert after.aptpl
    else:
        assert after.registrations == () and after.reservation is None
    assert after.generation == 0
    # Every registered nexus is told, and nothing else is left queued.
    assert after.unit_attentions == tuple((n, (POWER_ON_OCCURRED,)) for n in (A, B, C))
    # The same as the in-memory power cycle.
    expected = LUState.from_snapshot(before)
    expected.power_on()
    assert after == expected.snapshot()
    restarted.close()


def test_second_opener_joins_without_power_cycle(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    first = SqliteStore(path, power_on=True)
    populate(first, aptpl=False)
    second = SqliteStore(path, power_on=True)
    assert second.snapshot("lu0") == first.snapshot("lu0")
    # A change through one is seen by the other (re-read inside the next transaction).
    assert do(second, B, pr_out(PrOutAction.REGISTER, rk=0xF000_0000_0000_000B, sark=0x1234))
    assert do(first, B, pr_out(PrOutAction.REGISTER, rk=0x1234, sark=0x5678))
    # A's pending unit attention, reported through the second store, is gone for both.
    assert not do(second, A, pr_out(PrOutAction.REGISTER, rk=0xAA, sark=0xAB))
    assert first.snapshot("lu0") == second.snapshot("lu0")
    assert dict(first.snapshot("lu0").registrations)[B].key == 0x5678
    assert A not in dict(first.snapshot("lu0").unit_attentions)
    assert do(first, A, pr_out(PrOutAction.REGISTER, rk=0xAA, sark=0xAB))
    first.close()
    third = SqliteStore(path, power_on=True)  # second is still open: no power cycle
    assert third.snapshot("lu0").registrations
    second.close()
    third.close()
    inspector = SqliteStore(path, join=False)  # an administrator's look does not count
    fourth = SqliteStore(path, power_on=True)  # nobody serves from it: power cycle, APTPL 0
    assert fourth.snapshot("lu0").registrations == ()
    assert {n for n, _ in fourth.snapshot("lu0").unit_attentions} == {A, B, C}
    fourth.close()
    inspector.close()


def test_power_cycle_of_one_logical_unit(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    other = SqliteStore(path)
    populate(store, aptpl=False)
    assert (
        store.transact(
            "lu1", lambda state: ENGINE.execute(state, A, *pr_out(PrOutAction.REGISTER, sark=1))
        ).result
        == ScsiResult.good()
    )
    before = store.snapshot("lu1")
    other.power_on("lu0")
    assert store.snapshot("lu1") == before
    assert store.snapshot("lu0").registrations == ()
    assert store.snapshot("lu0").generation == 0
    store.close()
    other.close()


def test_close_releases_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    fd = os.open(path + ".lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        store.close()
        store.close()  # idempotent
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    with pytest.raises(StateFileError, match="closed"):
        store.snapshot("lu0")


def test_failed_decision_rolls_back(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "pr.db"))
    populate(store, aptpl=False)
    before = store.snapshot("lu0")

    def broken(state: LUState) -> EngineOutcome:
        raise RuntimeError("engine bug")

    with pytest.raises(RuntimeError, match="engine bug"):
        store.transact("lu0", broken)
    assert store.snapshot("lu0") == before
    assert do(store, B, pr_out(PrOutAction.REGISTER, rk=0xF000_0000_0000_000B, sark=0xAB))
    store.close()


def test_failed_write_applies_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path, timeout=0.05)
    populate(store, aptpl=False)
    before = store.snapshot("lu0")
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    with pytest.raises(StoreUnavailableError, match="locked"):
        do(store, B, pr_out(PrOutAction.CLEAR, rk=0xF000_0000_0000_000B))
    blocker.rollback()
    blocker.close()
    assert store.snapshot("lu0") == before
    store.close()


def test_not_a_state_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateFileError, match="Could not open PR state file"):
        SqliteStore(str(junk))
    with pytest.raises(StateFileError, match="Could not open"):
        SqliteStore(str(tmp_path / "missing-dir" / "pr.db"))


def test_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pr.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateFileError, match="layout 99"):
        SqliteStore(str(path))


def test_synchronous_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(str(tmp_path / "pr.db"), synchronous="off")


def test_fc_and_sas_transport_ids_round_trip(tmp_path: Path) -> None:
    fc = Nexus("fc", transport_id=TransportID.fc("21:00:00:24:ff:01:02:03"))
    sas = Nexus("sas", transport_id=TransportID.sas(0x5000C50012345678))
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    assert do(store, fc, pr_out(PrOutAction.REGISTER, sark=1))
    assert do(store, sas, pr_out(PrOutAction.REGISTER, sark=2))
    assert do(store, fc, pr_out(PrOutAction.CLEAR, rk=1))  # UA for the SAS port
    snap = store.snapshot("lu0")
    store.close()
    again = SqliteStore(path, power_on=False)
    assert again.snapshot("lu0") == snap
    assert snap.unit_attentions == ((sas, (SenseCode.RESERVATIONS_PREEMPTED,)),)
    again.close()


CHILD = textwrap.dedent(
    """
    import sys
    from qompr.managers.emulated import Engine, SqliteStore
    from qompr.scsi import Nexus, PrOutAction, PrOutCdb, PrOutParameters

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SqliteStore(path, synchronous="normal")
    engine = Engine()
    nexus = Nexus(name)
    key = 0
    for n in range(1, count + 1):
        data = PrOutParameters(reservation_key=key, sa_key=n).to_bytes()
        cdb = PrOutCdb(PrOutAction.REGISTER, 0, 0, 24).to_bytes()
        out = store.transact("lu0", lambda s: engine.execute(s, nexus, cdb, data))
        assert out.result.ok, out.result
        key = n
    store.close()
    """
)


def test_processes_share_one_state_file(tmp_path: Path) -> None:
    """Four processes change their own registrations at once; nothing is lost."""
    path = str(tmp_path / "pr.db")
    keeper = SqliteStore(path)  # keeps the file "powered" while the children come and go
    count = 40
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, path, f"p{i}", str(count)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    snap = keeper.snapshot("lu0")
    assert sorted((n.transport_id.identifier, r.key) for n, r in snap.registrations) == [
        (f"iqn.2026-11.org.qompr:p{i}", count) for i in range(4)
    ]
    # Every REGISTER (one new registration, count-1 key changes) bumped PRgeneration once.
    assert snap.generation == 4 * count
    keeper.close()


@pytest.mark.parametrize("sqlite", [False, True])
def test_reported_unit_attention_clears_the_queue(tmp_path: Path, sqlite: bool) -> None:
    """LIO mode: one reported unit attention clears the nexus's whole queue, in both stores."""
    store: MemoryStore | SqliteStore = (
        SqliteStore(str(tmp_path / "pr.db")) if sqlite else MemoryStore()
    )
    populate(store, aptpl=False)  # queues RESERVATIONS RELEASED for A and C
    assert do(store, B, pr_out(PrOutAction.PREEMPT, rk=0xF000_0000_0000_000B, sark=0xC, pr_type=8))
    queued = dict(store.snapshot("lu0").unit_attentions)
    assert queued[C] == (SenseCode.RESERVATIONS_RELEASED, SenseCode.REGISTRATIONS_PREEMPTED)
    outcome = store.transact("lu0", lambda state: ENGINE.admit(state, C, bytes(6)))
    assert outcome.result is not None and outcome.result.sense_code == queued[C][0]
    left = dict(store.snapshot("lu0").unit_attentions)
    assert C not in left and left[A] == (SenseCode.RESERVATIONS_RELEASED,)
    if isinstance(store, SqliteStore):
        store.close()


def test_reads_together_share_one_look_and_miss_no_earlier_commit(tmp_path: Path) -> None:
    """``reads_together()`` (the daemon's batch of PR IN received in one turn): the block's
    reads see every commit made before it began, look at ``data_version`` once (a commit
    after that look is not seen by a unit already checked), and other threads still look
    every time."""
    path = str(tmp_path / "pr.db")
    reader, writer = SqliteStore(path), SqliteStore(path)  # two processes' connections

    def generation() -> int:
        seen: list[int] = []

        def look(state: LUState) -> EngineOutcome:
            seen.append(state.generation)
            return EngineOutcome(ScsiResult.good())

        reader.transact("lu0", look, read_first=True)
        return seen[0]

    assert do(writer, A, pr_out(PrOutAction.REGISTER, sark=0xA))
    assert generation() == 1  # cached, and lu0 checked
    assert do(writer, B, pr_out(PrOutAction.REGISTER, sark=0xB))
    with reader.reads_together():
        assert generation() == 2  # committed before the block: seen
        assert do(writer, C, pr_out(PrOutAction.REGISTER, sark=0xC))
        assert generation() == 2  # after the block's one look: not looked for again
        elsewhere: list[int] = []
        thread = threading.Thread(target=lambda: elsewhere.append(generation()))
        thread.start()
        thread.join()
        assert elsewhere == [3]  # another thread looks for itself
    assert generation() == 3
    with reader.reads_together():
        assert do(writer, A, pr_out(PrOutAction.REGISTER, rk=0xA, sark=0xAA))
        assert generation() == 4  # the first read of a block looks
    reader.close()
    writer.close()
