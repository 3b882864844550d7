# SPDX-License-Identifier: MIT
"""The daemon's event loop: readiness, timers, wake-ups from threads, signals."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from qompr.daemon._loop import Loop


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


def test_readers_and_writers_fire_while_registered(loop: Loop) -> None:
    a, b = socket.socketpair()
    seen: list[str] = []

    def readable() -> None:
        seen.append(a.recv(10).decode())
        if len(seen) == 2:
            loop.remove_reader(a.fileno())
            loop.stop()

    def writable() -> None:
        loop.remove_writer(b.fileno())  # the reader of the same socket stays
        b.sendall(b"x")
        loop.call_later(0.01, b.sendall, b"y")

    loop.add_reader(a.fileno(), readable)
    loop.add_writer(b.fileno(), writable)
    loop.run()
    assert seen == ["x", "y"]
    a.close()
    b.close()


def test_timers_run_in_order_and_cancelled_ones_do_not(loop: Loop) -> None:
    seen: list[int] = []
    loop.call_later(0.03, seen.append, 3)
    loop.call_later(0.01, seen.append, 1).cancel()
    loop.call_later(0.02, seen.append, 2)
    loop.call_later(0.04, loop.stop)
    loop.run()
    assert seen == [2, 3]


def test_other_threads_wake_it_and_stop_before_run_is_kept(loop: Loop) -> None:
    seen: list[str] = []
    started = threading.Event()

    def other() -> None:
        started.wait(5)
        loop.call_soon_threadsafe(seen.append, "from a thread")
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=other)
    thread.start()
    loop.call_soon(started.set)
    loop.run()  # blocks in select until the thread wakes it
    thread.join()
    assert seen == ["from a thread"]
    second = Loop()
    second.stop()
    second.run()  # returns at once
    second.close()


def test_an_exception_in_a_callback_is_logged_and_the_loop_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    loop.call_soon(broken)
    loop.call_later(0.01, loop.stop)
    loop.run()
    assert "boom" in caplog.text


def test_signals_are_handled_on_the_loop_and_restored_after(loop: Loop) -> None:
    before = signal.getsignal(signal.SIGUSR2)
    seen: list[str] = []

    def on_usr2(what: str) -> None:
        seen.append(what)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR2, on_usr2, "usr2")
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
    loop.run()
    assert seen == ["usr2"]
    loop.close()
    assert signal.getsignal(signal.SIGUSR2) == before
    loop.call_soon_threadsafe(seen.append, "late")  # after close: no write to a stale fd


def test_ready_left_counts_the_other_fds_of_the_turn(loop: Loop) -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    seen: list[int] = []
    after: list[int] = []

    def readable(sock: socket.socket) -> None:
        sock.recv(10)
        seen.append(loop.ready_left)

    def end_of_turn() -> None:
        after.append(loop.ready_left)
        loop.stop()

    for ours, theirs in pairs:
        loop.add_reader(ours.fileno(), readable, ours)
        theirs.sendall(b"x")  # all three ready before the loop looks
    loop.call_soon(end_of_turn)
    loop.run()
    assert sorted(seen) == [0, 1, 2] and seen[-1] == 0 and after == [0]
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
