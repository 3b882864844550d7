# SPDX-License-Identifier: MIT
"""Where the persistent-reservation state lives: the store contract, and the memory store.

Every store runs a command the same way (:meth:`Store.transact`): hand the current
:class:`~._state.LUState` of one logical unit to the engine, and apply the
:class:`~._state.Changes` it returns, atomically.  :class:`MemoryStore` keeps the state in
this process; :class:`~._sqlite.SqliteStore` in a file that several processes share;
:class:`~._postgres.PostgresStore` in a PostgreSQL database that several hosts share.  Other
stores come from plugins (the ``qompr_emulated_store`` hook, given :class:`StoreOptions`).

What every store promises (the contract tests in ``tests/managers/emulated/test_contract.py``
hold all three to it):

* **Serial per logical unit.**  The commands on one logical unit behave as if they ran one
  at a time, in one order, whichever process or host sent them: ``decide`` sees the state
  every earlier command left.
* **Durable before answered.**  :meth:`Store.transact` returns only after the changes are
  committed as durably as the store promises; if it raises, nothing was applied (or, only
  for a shared store whose commit was in flight when the deadline passed, the outcome is
  unknown: documented in ``docs/emulated.md``).
* **Bounded.**  Given a deadline it returns or raises by then: a store that cannot answer in
  time raises :class:`StoreUnavailableError`, one that failed :class:`StoreFailureError`.
* **Reads do not write.**  With ``read_first`` a command that changes nothing (PR IN with no
  unit attention to report) takes no write lock.

**Power cycles are explicit** (:meth:`Store.power_on`): the state lasts, whatever processes
come and go, until one is played; APTPL decides what survives it, and every I_T nexus the
logical unit knew is told with UNIT ATTENTION 29h/01h (:meth:`~._state.LUState.power_on`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import attrs

from qompr.errors import QomprError
from qompr.managers.emulated._outcome import EngineOutcome
from qompr.managers.emulated._state import GENERATION_MASK
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import StateSnapshot
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

__all__ = [
    "Decide",
    "MemoryStore",
    "StateFileError",
    "Store",
    "StoreError",
    "StoreFailureError",
    "StoreOptions",
    "StoreUnavailableError",
    "administrator_clear",
]

Decide = Callable[[LUState], EngineOutcome]


class StateFileError(QomprError):
    """The state file cannot be opened or used (not SQLite, newer layout, I/O error)."""


class StoreError(QomprError):
    """A command could not be run on the store; nothing was applied."""


class StoreUnavailableError(StoreError):
    """The store did not answer within the command's deadline (a lock held by another
    process, a database failing over): worth retrying.  The manager answers CHECK
    CONDITION ABORTED COMMAND 0Bh/08h/00h, which initiators retry."""


class StoreFailureError(StoreError):
    """The store answered with an error that waiting will not cure (a corrupt or unwritable
    file).  The manager answers CHECK CONDITION HARDWARE ERROR 44h/00h."""


@attrs.frozen
class StoreOptions:
    """What ``pr-manager-emulated`` asks of the store it opens (its properties).

    :param timeout: the longest a command waits for the store when :meth:`Store.transact`
        is given no deadline, in seconds (``timeout`` property / 1000).
    :param power_on: play a power cycle when this is the first process to open the state
        (``start=power-cycle``); a shared store may refuse it (power cycles of a shared
        logical unit are explicit).
    :param synchronous: ``"full"`` (durable across power loss) or ``"normal"`` (across a
        crash of the process), for stores that can choose (``state-sync``).
    :param create_schema: a database store may create its tables (``create-schema=on``);
        otherwise it expects them (``qompr emulated schema URI --apply``).
    :param join: open as a serving process (``False``: for inspection and administration).
    """

    timeout: float = 5.0
    power_on: bool = False
    synchronous: str = "full"
    create_schema: bool = False
    join: bool = True


class Store(Protocol):
    """What the manager needs from a store (the contract above)."""

    @property
    def shared(self) -> bool:
        """Whether processes on other hosts may share this state.  Logical units must then
        be named the same on every host, so the manager refuses ``lu-id=inode``."""
        ...

    @property
    def cannot_block(self) -> bool:
        """Whether every call returns at once (no file, no network, no lock of another
        process): the manager may then run on a daemon's event loop."""
        ...

    def transact(
        self, lu: str, decide: Decide, *, deadline: float | None = None, read_first: bool = False
    ) -> EngineOutcome:
        """Run *decide* on the state of *lu* and apply its changes, atomically.

        :param deadline: ``time.monotonic()`` by which to give up waiting for the store.
        :param read_first: the command probably only reads (PR IN): run *decide* on the
            committed state without a write transaction, and again as a write only if it
            has changes to make.
        :raises StoreUnavailableError: not done by *deadline*; nothing applied.
        :raises StoreFailureError: the store failed; nothing applied.
        """
        ...

    def snapshot(self, lu: str) -> StateSnapshot:
        """The current state of *lu*."""
        ...

    def logical_units(self) -> list[str]:
        """The names of the logical units that have state."""
        ...

    def power_on(self, lu: str | None = None) -> None:
        """Play a power cycle on *lu*, or on every logical unit (what APTPL keeps survives,
        and every I_T nexus the logical unit knew gets UNIT ATTENTION 29h/01h)."""
        ...

    def close(self) -> None:
        """Release files and locks."""
        ...


def administrator_clear(state: LUState) -> EngineOutcome:
    """What ``qompr emulated clear`` does to a logical unit, as a store decision.

    As a CLEAR (SPC-4 §5.12.11.2.7) sent by nobody: every registration and the reservation are
    removed, PRgeneration is incremented, APTPL is turned off, an SPC-2 reservation is
    released, and every registered I_T nexus gets UNIT ATTENTION 2Ah/03h RESERVATIONS
    PREEMPTED, so no initiator loses its registration without being told.
    """
    return EngineOutcome(
        ScsiResult.good(),
        Changes(
            clear=True,
            reservation=None,
            generation=(state.generation + 1) & GENERATION_MASK,
            aptpl=False,
            legacy_holder=None,
            add_ua=tuple((n, SenseCode.RESERVATIONS_PREEMPTED) for n in state.registrations),
        ),
    )


class MemoryStore:
    """State in memory only: it lives and dies with this process.

    A restart of the process loses everything, APTPL registrations too, and tells nobody:
    the new process does not know which I_T nexuses there were (``docs/emulated.md``).
    """

    def __init__(self) -> None:
        self._states: dict[str, LUState] = {}
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """False: one process."""
        return False

    @property
    def cannot_block(self) -> bool:
        """True: a command is a dictionary lookup and a pure function."""
        return True

    def transact(
        self, lu: str, decide: Decide, *, deadline: float | None = None, read_first: bool = False
    ) -> EngineOutcome:
        with self._lock:
            state = self._states.get(lu)
            if state is None:
                state = self._states[lu] = LUState()
            outcome = decide(state)
            if outcome.changes is not None:
                state.apply(outcome.changes)
            return outcome

    def snapshot(self, lu: str) -> StateSnapshot:
        with self._lock:
            state = self._states.get(lu)
            return state.snapshot() if state is not None else StateSnapshot()

    def logical_units(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def power_on(self, lu: str | None = None) -> None:
        """Play a power cycle on *lu*, or on every logical unit."""
        with self._lock:
            for name, state in self._states.items():
                if lu is None or name == lu:
                    state.power_on()

    def close(self) -> None:
        """Nothing to release."""
