# SPDX-License-Identifier: MIT
"""The ``pr-manager-helper`` client's reconnect policy, once, for every I/O style.

QEMU's ``pr_manager_helper_run`` (scsi/pr-manager-helper.c) tries up to
``PR_MAX_RECONNECT_ATTEMPTS`` (5) times to get the CDB out: without a connection it connects,
and a failed connect sleeps one second; a failed write of the CDB drops the connection and
tries again at once.  Once the CDB is out there is no retry: any failure answers LOGICAL UNIT
COMMUNICATION FAILURE, and the next command reconnects.

:func:`command_plan` states that policy as a generator that does no I/O: it yields each
:class:`Step` to perform with the connection it concerns, and is sent the step's result.
:func:`run_plan` performs the steps of one request with blocking calls, :func:`run_plan_async`
awaits them;
the ``pr-manager-helper`` manager drives its thread pool with the first and its per-loop pool
with the second, so the two can never disagree (on cancellation either: an exception thrown
into the plan gives back the slot it holds).

A *slot* is the right to own one connection of a bounded pool: :attr:`Step.CHECKOUT` gives an
idle connection or reserves a slot for a new one, and every path out of the plan returns what
it took (:meth:`Connections.checkin` or :meth:`Connections.discard`).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from collections.abc import Generator
from typing import Any
from typing import Protocol
from typing import TypeVar

from qompr.errors import LocalProtocolError
from qompr.protocol.helper import HelperRequest
from qompr.protocol.helper import HelperResponse

__all__ = [
    "PR_MAX_RECONNECT_ATTEMPTS",
    "AsyncConnections",
    "Connections",
    "Plan",
    "Sent",
    "Slots",
    "Step",
    "command_plan",
    "run_plan",
    "run_plan_async",
]

#: QEMU's ``PR_MAX_RECONNECT_ATTEMPTS``.
PR_MAX_RECONNECT_ATTEMPTS = 5

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


class Step(enum.Enum):
    """What the plan asks the driver to do next (and what it is sent back)."""

    #: An idle connection, or ``None``: a slot is now reserved for a new one.
    CHECKOUT = "checkout"
    #: A new connection in the reserved slot, or ``None`` when connecting failed.
    CONNECT = "connect"
    #: Wait the reconnect delay (QEMU: one second).
    PAUSE = "pause"
    #: Send the request on the connection: a :class:`Sent`.
    SEND = "send"
    #: The response, or ``None`` when the connection failed after the CDB.
    READ = "read"


class Sent(enum.Enum):
    """How far sending a request got."""

    #: All of it: wait for the response.
    ALL = "all"
    #: Not all of the CDB: the helper never saw the command, so it may go elsewhere.
    NONE = "none"
    #: The CDB but not the parameter list: the command is lost with the connection.
    PART = "part"


class Slots(Protocol[C_contra]):
    """Giving connections back: never waits, so it is the same for every I/O style."""

    def checkin(self, conn: C_contra) -> None:
        """Give a healthy connection back to the idle pool."""

    def discard(self, conn: C_contra | None, *, lost: bool) -> None:
        """Close *conn* (if any) and free its slot; *lost* announces the helper as gone."""


class Connections(Slots[C], Protocol[C]):
    """The blocking pool a plan draws on (the manager's thread-shared pool)."""

    def checkout(self) -> C | None:
        """:attr:`Step.CHECKOUT` (may wait for a slot)."""

    def connect(self) -> C | None:
        """:attr:`Step.CONNECT`."""

    def pause(self) -> None:
        """:attr:`Step.PAUSE`."""

    def send(self, conn: C, request: HelperRequest) -> Sent:
        """:attr:`Step.SEND`."""

    def read(self, conn: C, request: HelperRequest) -> HelperResponse | None:
        """:attr:`Step.READ`."""


class AsyncConnections(Slots[C], Protocol[C]):
    """The asyncio pool a plan draws on (one per event loop)."""

    async def checkout(self) -> C | None:
        """:attr:`Step.CHECKOUT` (may wait for a slot)."""

    async def connect(self) -> C | None:
        """:attr:`Step.CONNECT`."""

    async def pause(self) -> None:
        """:attr:`Step.PAUSE`."""

    async def send(self, conn: C, request: HelperRequest) -> Sent:
        """:attr:`Step.SEND`."""

    async def read(self, conn: C, request: HelperRequest) -> HelperResponse | None:
        """:attr:`Step.READ`."""


#: A plan: yields (step, connection), is sent each step's result, returns the response or
#: ``None`` (answer LOGICAL UNIT COMMUNICATION FAILURE).
Plan = Generator[tuple[Step, Any], Any, HelperResponse | None]


def command_plan(pool: Slots[C], attempts: int = PR_MAX_RECONNECT_ATTEMPTS) -> Plan:
    """One command's way through the pool (QEMU's policy, see the module docstring).

    :param pool: where connections go back to; the driver performs the other steps.
    :param attempts: how many times to try getting the CDB out (at least once).
    """
    conn: C | None = None
    holding = False  # a slot is ours: reserved for a connection, or holding *conn*
    try:
        for _ in range(max(1, attempts)):
            conn = yield Step.CHECKOUT, None
            holding = True
            if conn is None:
                conn = yield Step.CONNECT, None
                if conn is None:
                    holding = False
                    pool.discard(None, lost=False)
                    yield Step.PAUSE, None  # QEMU sleeps after the last failure too
                    continue
            try:
                sent = yield Step.SEND, conn
            except LocalProtocolError:  # a caller error found before any byte went out
                holding = False
                pool.checkin(conn)
                raise
            if sent is Sent.ALL:
                break
            holding = False
            pool.discard(conn, lost=True)
            if sent is Sent.PART:
                return None
            conn = None
        else:
            return None
        response: HelperResponse | None = yield Step.READ, conn
        holding = False
        if response is None:
            pool.discard(conn, lost=True)
        else:
            pool.checkin(conn)
        return response
    except BaseException:
        # Interrupted or cancelled while holding a slot: a connection may be mid-message,
        # so it goes; the slot comes back either way.
        if holding:
            pool.discard(conn, lost=False)
        raise


def _perform(pool: Any, step: Step, conn: Any, request: HelperRequest) -> Any:
    if step is Step.SEND:
        return pool.send(conn, request)
    if step is Step.READ:
        return pool.read(conn, request)
    if step is Step.CHECKOUT:
        return pool.checkout()
    if step is Step.CONNECT:
        return pool.connect()
    return pool.pause()


class _Driver:
    """Where a :data:`Plan` stands: what to send into it next, or its answer once it returned.

    The sync and async runners differ only in whether a step is awaited; resuming the plan
    (with a step's value, or throwing its exception in) is this one piece.
    """

    __slots__ = ("error", "plan", "result", "value")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: HelperResponse | None = None

    def next_step(self) -> tuple[Step, Any] | None:
        """The plan's next step, or ``None`` once it returned (its answer in :attr:`result`)."""
        try:
            if self.error is None:
                return self.plan.send(self.value)
            return self.plan.throw(self.error)
        except StopIteration as done:
            self.result = done.value
            return None


def run_plan(
    pool: Connections[C], request: HelperRequest, attempts: int = PR_MAX_RECONNECT_ATTEMPTS
) -> HelperResponse | None:
    """Send *request* through *pool* by :func:`command_plan`, with blocking calls.

    :returns: the response, or ``None`` when the helper could not be reached or the
        connection failed (answer LOGICAL UNIT COMMUNICATION FAILURE).
    """
    driver = _Driver(command_plan(pool, attempts))
    while (todo := driver.next_step()) is not None:
        step, conn = todo
        try:
            driver.value, driver.error = _perform(pool, step, conn, request), None
        except BaseException as exc:  # handed to the plan, which cleans up and re-raises
            driver.value, driver.error = None, exc
    return driver.result


async def run_plan_async(
    pool: AsyncConnections[C], request: HelperRequest, attempts: int = PR_MAX_RECONNECT_ATTEMPTS
) -> HelperResponse | None:
    """:func:`run_plan`, awaiting *pool*'s coroutines."""
    driver = _Driver(command_plan(pool, attempts))
    while (todo := driver.next_step()) is not None:
        step, conn = todo
        try:
            pending: Awaitable[Any] = _perform(pool, step, conn, request)
            driver.value, driver.error = await pending, None
        except BaseException as exc:  # cancellation included: the plan gives its slot back
            driver.value, driver.error = None, exc
    return driver.result
