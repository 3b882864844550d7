# SPDX-License-Identifier: MIT
"""The child of the crash test: applies numbered random PR OUT commands to a state file.

Run as ``python crash_child.py STATE SEED FIRST [SYNC [START]]`` (SYNC: ``normal`` or
``full``; START: ``resume``, the default, or ``power-cycle`` to open as the first user with
``start=power-cycle`` does).
Command *i* is a pure function of (SEED, i) (:func:`command_for`), so the parent can replay
exactly what the child did.  After
each command is committed the child prints its number; the parent kills it with SIGKILL at a
random moment and checks that the file holds the state after the last printed command (or,
if the kill fell between commit and print, after the one following it).
"""

from __future__ import annotations

import functools
import random
import sys

from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineOutcome
from qompr.managers.emulated import LUState
from qompr.managers.emulated import SqliteStore
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters

NEXUSES = tuple(Nexus(name) for name in ("A", "B", "C", "D"))
LU = "crash-lu"
_ACTIONS = (
    [PrOutAction.REGISTER] * 5
    + [PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY] * 2
    + [PrOutAction.RESERVE] * 3
    + [PrOutAction.RELEASE] * 2
    + [PrOutAction.PREEMPT, PrOutAction.PREEMPT_AND_ABORT, PrOutAction.CLEAR]
)


def command_for(seed: int, index: int) -> tuple[Nexus, bytes, bytes]:
    """Command number *index* of run *seed*: (nexus, CDB, parameter list)."""
    rng = random.Random(f"{seed}:{index}")
    nexus = rng.choice(NEXUSES)
    action = rng.choice(_ACTIONS)
    own = 0x10 + NEXUSES.index(nexus)
    rk = own if rng.random() < 0.8 else rng.choice([0, 0x10, 0x11, 0x12, 0x13])
    sark = rng.choice([0, 0x10, 0x11, 0x12, 0x13, own, own])
    pr_type = rng.choice([1, 3, 5, 6, 7, 8])
    data = PrOutParameters(reservation_key=rk, sa_key=sark, aptpl=rng.random() < 0.3).to_bytes()
    return nexus, PrOutCdb(action, 0, pr_type, len(data)).to_bytes(), data


def _decide(engine: Engine, nexus: Nexus, cdb: bytes, data: bytes, state: LUState) -> EngineOutcome:
    return engine.execute(state, nexus, cdb, data)


def main(argv: list[str]) -> int:
    path, seed, first = argv[1], int(argv[2]), int(argv[3])
    store = SqliteStore(
        path,
        synchronous=argv[4] if len(argv) > 4 else "normal",
        power_on=len(argv) > 5 and argv[5] == "power-cycle",
    )
    engine = Engine()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    index = first
    while True:
        nexus, cdb, data = command_for(seed, index)
        store.transact(LU, functools.partial(_decide, engine, nexus, cdb, data))
        out.write(f"{index}\n")  # acknowledged: committed before this line is written
        out.flush()
        index += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
