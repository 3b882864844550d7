# SPDX-License-Identifier: MIT
"""The pr-manager-helper client's reconnect plan, driven by hand (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qompr.errors import LocalProtocolError
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol.retry import PR_MAX_RECONNECT_ATTEMPTS
from qompr.protocol.retry import Sent
from qompr.protocol.retry import Step
from qompr.protocol.retry import command_plan
from qompr.protocol.retry import run_plan
from qompr.protocol.retry import run_plan_async

OK = HelperResponse(0)
REQUEST = HelperRequest(bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 3)


class Pool:
    """Records what the plan gives back; answers steps from scripted lists."""

    def __init__(self) -> None:
        self.returned: list[tuple[str, Any, bool | None]] = []

    def checkin(self, conn: Any) -> None:
        self.returned.append(("checkin", conn, None))

    def discard(self, conn: Any, *, lost: bool) -> None:
        self.returned.append(("discard", conn, lost))


def walk(pool: Pool, answers: list[Any], attempts: int = PR_MAX_RECONNECT_ATTEMPTS) -> Any:
    """Run the plan, sending *answers* in turn; (steps seen, result)."""
    plan = command_plan(pool, attempts)
    steps = [plan.send(None)]
    try:
        for answer in answers:
            if isinstance(answer, BaseException):
                steps.append(plan.throw(answer))
            else:
                steps.append(plan.send(answer))
    except StopIteration as done:
        return [s for s, _ in steps], done.value
    raise AssertionError(f"the plan wants more: {steps[-1]}")


def test_a_pooled_connection_sends_reads_and_goes_back() -> None:
    pool = Pool()
    steps, result = walk(pool, ["c1", Sent.ALL, OK])
    assert steps == [Step.CHECKOUT, Step.SEND, Step.READ]
    assert result == OK
    assert pool.returned == [("checkin", "c1", None)]


def test_failed_connects_pause_and_give_up_after_five() -> None:
    pool = Pool()
    steps, result = walk(pool, [None, None, None] * PR_MAX_RECONNECT_ATTEMPTS)
    assert steps == [Step.CHECKOUT, Step.CONNECT, Step.PAUSE] * PR_MAX_RECONNECT_ATTEMPTS
    assert result is None
    assert pool.returned == [("discard", None, False)] * PR_MAX_RECONNECT_ATTEMPTS


def test_an_unsent_cdb_retries_at_once_on_another_connection() -> None:
    pool = Pool()
    steps, result = walk(pool, ["c1", Sent.NONE, None, "c2", Sent.ALL, OK])
    assert steps == [
        Step.CHECKOUT,
        Step.SEND,
        Step.CHECKOUT,
        Step.CONNECT,
        Step.SEND,
        Step.READ,
    ]
    assert result == OK
    assert pool.returned == [("discard", "c1", True), ("checkin", "c2", None)]


def test_once_the_cdb_is_out_there_is_no_retry() -> None:
    pool = Pool()
    assert walk(pool, ["c1", Sent.PART]) == ([Step.CHECKOUT, Step.SEND], None)
    assert pool.returned == [("discard", "c1", True)]
    pool = Pool()
    assert walk(pool, ["c1", Sent.ALL, None]) == ([Step.CHECKOUT, Step.SEND, Step.READ], None)
    assert pool.returned == [("discard", "c1", True)]


def test_a_caller_error_keeps_the_connection() -> None:
    pool = Pool()
    with pytest.raises(LocalProtocolError):
        walk(pool, ["c1", LocalProtocolError("bad CDB")])
    assert pool.returned == [("checkin", "c1", None)]


@pytest.mark.parametrize(
    ("answers", "returned"),
    [
        ([], []),  # interrupted while waiting for a slot: it holds nothing
        ([None], [("discard", None, False)]),  # while connecting: the reserved slot
        (["c1"], [("discard", "c1", False)]),  # while sending: the connection
        (["c1", Sent.ALL], [("discard", "c1", False)]),  # while reading: the connection
        ([None, None], [("discard", None, False)]),  # while pausing: given back before
    ],
)
def test_an_interrupted_plan_gives_back_what_it_holds(
    answers: list[Any], returned: list[Any]
) -> None:
    pool = Pool()
    with pytest.raises(KeyboardInterrupt):
        walk(pool, [*answers, KeyboardInterrupt()])
    assert pool.returned == returned


class SyncPool(Pool):
    def __init__(self, script: list[Any]) -> None:
        super().__init__()
        self.script = script
        self.calls: list[str] = []

    def _next(self, name: str) -> Any:
        self.calls.append(name)
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def checkout(self) -> Any:
        return self._next("checkout")

    def connect(self) -> Any:
        return self._next("connect")

    def pause(self) -> None:
        self._next("pause")

    def send(self, conn: Any, request: HelperRequest) -> Sent:
        assert request is REQUEST
        result: Sent = self._next("send")
        return result

    def read(self, conn: Any, request: HelperRequest) -> HelperResponse | None:
        result: HelperResponse | None = self._next("read")
        return result


class AsyncPool(SyncPool):
    async def checkout(self) -> Any:
        return self._next("checkout")

    async def connect(self) -> Any:
        return self._next("connect")

    async def pause(self) -> None:  # type: ignore[override]
        self._next("pause")

    async def send(self, conn: Any, request: HelperRequest) -> Sent:  # type: ignore[override]
        result: Sent = self._next("send")
        return result

    async def read(  # type: ignore[override]
        self, conn: Any, request: HelperRequest
    ) -> HelperResponse | None:
        result: HelperResponse | None = self._next("read")
        return result


SCRIPT = ["c1", Sent.NONE, None, None, None, None, "c3", Sent.ALL, OK]
CALLS = ["checkout", "send", "checkout", "connect", "pause", "checkout", "connect", "send", "read"]


def test_both_drivers_perform_the_same_steps() -> None:
    sync = SyncPool(list(SCRIPT))
    assert run_plan(sync, REQUEST) == OK
    aio = AsyncPool(list(SCRIPT))
    assert asyncio.run(run_plan_async(aio, REQUEST)) == OK
    assert sync.calls == aio.calls == CALLS
    assert sync.returned == aio.returned


def test_a_step_that_raises_reaches_the_plan_in_both_drivers() -> None:
    sync = SyncPool(["c1", Sent.ALL, RuntimeError("boom")])
    with pytest.raises(RuntimeError):
        run_plan(sync, REQUEST)
    aio = AsyncPool(["c1", Sent.ALL, asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_plan_async(aio, REQUEST))
    assert sync.returned == aio.returned == [("discard", "c1", False)]
