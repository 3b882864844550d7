# SPDX-License-Identifier: MIT
"""The store contract (``_store.py``), held against all three stores: memory, SQLite and a
real PostgreSQL.  A shared store is opened twice ("two hosts") where the contract is about
sharing."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.managers.emulated import LIO
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import Changes
from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineConfig
from qompr.managers.emulated import EngineOutcome
from qompr.managers.emulated import LUState
from qompr.managers.emulated import MemoryStore
from qompr.managers.emulated import Store
from qompr.managers.emulated import StoreOptions
from qompr.managers.emulated import open_store
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

from .harness import pr_in
from .harness import pr_out

ENGINE = Engine(EngineConfig(LIO))
A, B = Nexus("A"), Nexus("B")
_names = itertools.count()
Opener = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test; every call opens the same state again (for memory, the
    same object: one process is all it serves)."""
    opened: list[Store] = []
    if request.param == "memory":
        memory = MemoryStore()

        def open_memory() -> Store:
            return memory

        yield open_memory
        return
    if request.param == "sqlite":
        state = str(tmp_path / "pr.db")
    else:
        state = request.getfixturevalue("pg_state_uri")

    def open_again() -> Store:
        store = open_store(state, StoreOptions(timeout=10.0, synchronous="normal"))
        opened.append(store)
        return store

    yield open_again
    for store in opened:
        store.close()


@pytest.fixture
def lu() -> str:
    """A logical unit name no other test uses (the PostgreSQL database is shared)."""
    return f"contract-{time.time_ns()}-{next(_names)}"


def run(store: Store, lu: str, nexus: Nexus, command: tuple[bytes, bytes]) -> ScsiResult:
    cdb, data = command
    outcome = store.transact(lu, lambda state: ENGINE.execute(state, nexus, cdb, data))
    assert outcome.result is not None
    return outcome.result


def read(store: Store, lu: str, nexus: Nexus, action: PrInAction) -> ScsiResult:
    cdb = pr_in(action)
    outcome = store.transact(lu, lambda state: ENGINE.execute(state, nexus, cdb), read_first=True)
    assert outcome.result is not None
    return outcome.result


def test_a_committed_command_is_seen_by_every_opener(opener: Opener, lu: str) -> None:
    one, two = opener(), opener()
    assert run(one, lu, A, pr_out(PrOutAction.REGISTER, sark=0xA)).ok
    assert run(two, lu, B, pr_out(PrOutAction.REGISTER, sark=0xFFFF_FFFF_FFFF_FFFB)).ok
    assert run(one, lu, A, pr_out(PrOutAction.RESERVE, rk=0xA, pr_type=1)).ok
    for store in (one, two):
        snap = store.snapshot(lu)
        assert snap.keys == (0xA, 0xFFFF_FFFF_FFFF_FFFB)
        assert snap.reservation is not None and snap.reservation.holder == A
        assert snap.generation == 2
        keys = read(store, lu, B, PrInAction.READ_KEYS)
        assert keys.data[:8] == bytes.fromhex("00000002 00000010")
    assert lu in one.logical_units()


def test_reads_answer_from_the_latest_commit(opener: Opener, lu: str) -> None:
    one, two = opener(), opener()
    for key in range(1, 6):
        assert read(two, lu, B, PrInAction.READ_KEYS).data[4:8] == (8 * (key - 1)).to_bytes(
            4, "big"
        )
        assert run(one, lu, Nexus(f"I{key}"), pr_out(PrOutAction.REGISTER, sark=key)).ok


def test_unit_attention_reaches_its_nexus_through_any_opener(opener: Opener, lu: str) -> None:
    one, two = opener(), opener()
    assert run(one, lu, A, pr_out(PrOutAction.REGISTER, sark=0xA)).ok
    assert run(two, lu, B, pr_out(PrOutAction.REGISTER, sark=0xB)).ok
    assert run(one, lu, A, pr_out(PrOutAction.PREEMPT, rk=0xA, sark=0xB, pr_type=1)).ok
    # B's next command, through the other opener, reports REGISTRATIONS PREEMPTED once.
    first = read(two, lu, B, PrInAction.READ_KEYS)
    assert first.sense_code == SenseCode.REGISTRATIONS_PREEMPTED
    assert read(one, lu, B, PrInAction.READ_KEYS).ok


def test_commands_on_one_logical_unit_are_serial(opener: Opener, lu: str) -> None:
    """Eight threads over two openers each add 1 to PRgeneration 25 times, reading it in
    their decision: a lost update would leave less than 200."""
    stores = [opener(), opener()]
    errors: list[BaseException] = []

    def bump(state: LUState) -> EngineOutcome:
        return EngineOutcome(ScsiResult.good(), Changes(generation=state.generation + 1))

    def worker(store: Store) -> None:
        try:
            for _ in range(25):
                store.transact(lu, bump)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert stores[0].snapshot(lu).generation == 200
    assert stores[1].snapshot(lu).generation == 200


def test_a_failing_decision_applies_nothing_and_spares_the_others(opener: Opener, lu: str) -> None:
    store = opener()
    assert run(store, lu, A, pr_out(PrOutAction.REGISTER, sark=0xA)).ok

    def broken(state: LUState) -> EngineOutcome:
        raise RuntimeError("engine bug")

    with pytest.raises(RuntimeError, match="engine bug"):
        store.transact(lu, broken)
    assert store.snapshot(lu).keys == (0xA,)
    assert run(store, lu, B, pr_out(PrOutAction.REGISTER, sark=0xB)).ok
    assert opener().snapshot(lu).keys == (0xA, 0xB)


def test_a_read_that_changes_nothing_writes_nothing(opener: Opener, lu: str) -> None:
    store = opener()
    assert run(store, lu, A, pr_out(PrOutAction.REGISTER, sark=0xA)).ok
    before = store.snapshot(lu)
    seen: list[int] = []

    def look(state: LUState) -> EngineOutcome:
        seen.append(state.generation)
        return EngineOutcome(ScsiResult.good())

    store.transact(lu, look, read_first=True)
    assert seen == [1]  # decided once, on the committed state, not again as a write
    assert store.snapshot(lu) == before


@pytest.mark.parametrize("aptpl", [False, True])
def test_power_on_keeps_what_aptpl_keeps_and_tells_everyone(
    opener: Opener, lu: str, aptpl: bool
) -> None:
    one, two = opener(), opener()
    assert run(one, lu, A, pr_out(PrOutAction.REGISTER, sark=0xA, aptpl=aptpl)).ok
    assert run(one, lu, A, pr_out(PrOutAction.RESERVE, rk=0xA, pr_type=3)).ok
    assert run(two, lu, B, pr_out(PrOutAction.REGISTER, sark=0xB, aptpl=aptpl)).ok
    other = f"{lu}-other"
    assert run(one, other, A, pr_out(PrOutAction.REGISTER, sark=0xC)).ok
    two.power_on(lu)
    snap = one.snapshot(lu)
    assert snap.generation == 0
    assert snap.keys == ((0xA, 0xB) if aptpl else ())
    assert (snap.reservation is not None) is aptpl
    assert dict(snap.unit_attentions) == {A: (POWER_ON_OCCURRED,), B: (POWER_ON_OCCURRED,)}
    assert one.snapshot(other).keys == (0xC,)  # another logical unit is untouched


def test_the_contract_properties(opener: Opener) -> None:
    store = opener()
    assert isinstance(store.shared, bool)
    assert store.cannot_block is isinstance(store, MemoryStore)
    assert store.shared is (type(store).__name__ == "PostgresStore")
