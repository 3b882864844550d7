# SPDX-License-Identifier: MIT
"""The daemon's event loop: readiness callbacks on epoll, timers, wake-ups from worker
threads, and signals.  Nothing more.

The protocol core is sans-IO and the server only needs these few calls, so the loop is a free
choice.  This one is the standard library's ``select.epoll`` with about a hundred lines around
it: not asyncio, because ``import asyncio`` alone more than doubles the interpreter's resident
memory (it pulls in ssl and much else) and one ``qompr-pr-helper`` runs per VM; not
``selectors``, whose per-event bookkeeping shows on the request path.  The method names are
asyncio's (``add_reader``, ``call_soon_threadsafe``, ``call_later``...), so the server reads
the same on either.

Callbacks run on the loop's thread, one at a time; an exception in one is logged and the
loop goes on.  Only :meth:`Loop.call_soon_threadsafe` and :meth:`Loop.stop` may be called
from other threads.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Loop", "Timer"]

log = logging.getLogger("qompr.daemon")

Callback = Callable[..., object]

_READ = select.EPOLLIN
_WRITE = select.EPOLLOUT
# An error or hang-up wakes both sides up, as selectors reports it: the callbacks find out.
_READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
_WRITABLE = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
#: Which events call which handler of a (reader, writer) pair, the reader first.
_SLOTS = ((_READABLE, 0), (_WRITABLE, 1))


class Timer:
    """A call scheduled by :meth:`Loop.call_later`; :meth:`cancel` it if it is not wanted."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback, args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not call it (it leaves the heap when its time comes)."""
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Loop:
    """One thread's reactor.  :meth:`run` until :meth:`stop`; :meth:`close` afterwards."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # fd -> (read callback and args, write callback and args)
        self._handlers: dict[int, list[tuple[Callback, tuple[Any, ...]] | None]] = {}
        self._timers: list[Timer] = []
        self._ready: collections.deque[tuple[Callback, tuple[Any, ...]]] = collections.deque()
        # Appended to by other threads (deque.append is atomic), drained by the loop.
        self._from_threads: collections.deque[tuple[Callback, tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, _READ)
        self._signals: dict[int, tuple[Callback, tuple[Any, ...]]] = {}
        self._old_handlers: dict[int, Any] = {}
        self._caught: list[int] = []
        self._old_wakeup_fd: int | None = None
        self._running = False
        self._stop = False
        self._closed = False
        #: While a readiness callback runs: how many other fds of the same turn are still to
        #: be handled (0 for the turn's last, and outside readiness callbacks).  A server
        #: that gathers what a turn brings knows from 0 that nothing more is coming.
        self.ready_left = 0
        # Held while writing the wake-up byte and while closing the pipe: a worker thread that
        # saw the loop open must not write into an fd number that close() has freed and the
        # process has since reused for another file.
        self._wake_lock = threading.RLock()  # re-entrant: stop() may run in a signal handler

    # == readiness =============================================================================
    def add_reader(self, fd: int, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` whenever *fd* is readable (level-triggered)."""
        self._set(fd, 0, (callback, args))

    def remove_reader(self, fd: int) -> None:
        """Stop watching *fd* for reading (no error if it was not)."""
        self._set(fd, 0, None)

    def add_writer(self, fd: int, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` whenever *fd* is writable."""
        self._set(fd, 1, (callback, args))

    def remove_writer(self, fd: int) -> None:
        """Stop watching *fd* for writing (no error if it was not)."""
        self._set(fd, 1, None)

    def _set(self, fd: int, which: int, handler: tuple[Callback, tuple[Any, ...]] | None) -> None:
        handlers = self._handlers.get(fd)
        if handlers is None:
            if handler is None:
                return
            handlers = self._handlers[fd] = [None, None]
            handlers[which] = handler
            self._epoll.register(fd, _READ if which == 0 else _WRITE)
            return
        had = (_READ if handlers[0] else 0) | (_WRITE if handlers[1] else 0)
        handlers[which] = handler
        mask = (_READ if handlers[0] else 0) | (_WRITE if handlers[1] else 0)
        if mask == had:
            return
        if mask == 0:
            del self._handlers[fd]
            self._epoll.unregister(fd)
        else:
            self._epoll.modify(fd, mask)

    # == calls =================================================================================
    def call_soon(self, callback: Callback, *args: Any) -> None:
        """Call it on the next turn of the loop."""
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callback, *args: Any) -> None:
        """:meth:`call_soon` from any thread (the loop wakes up for it)."""
        self._from_threads.append((callback, args))
        self._wake()

    def call_later(self, delay: float, callback: Callback, *args: Any) -> Timer:
        """Call it after *delay* seconds (on the loop's monotonic clock)."""
        timer = Timer(time.monotonic() + delay, callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def time(self) -> float:
        """The loop's clock (:func:`time.monotonic`)."""
        return time.monotonic()

    # == signals (main thread only) ============================================================
    def add_signal_handler(self, signum: int, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` on the loop when *signum* arrives."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._signals[signum] = (callback, args)
        old = signal.signal(signum, self._on_signal)
        self._old_handlers.setdefault(signum, old)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._caught.append(signum)  # the wake-up fd got a byte: select returns

    # == running ===============================================================================
    def stop(self) -> None:
        """Make :meth:`run` return after the current turn (thread-safe)."""
        self._stop = True
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            if self._closed:
                return  # the fd number may belong to another file by now
            # A full pipe means the loop is awake anyway.
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.write(self._wake_w, b"\0")

    def run(self) -> None:
        """Run callbacks until :meth:`stop` (at once if it was called before)."""
        self._running = True
        poll = self._epoll.poll
        handlers = self._handlers
        ready = self._ready
        wake_r = self._wake_r
        try:
            while not self._stop:
                if ready or self._from_threads or self._caught:
                    timeout = 0.0
                elif self._timers:
                    timeout = max(0.0, self._timers[0].when - time.monotonic())
                else:
                    timeout = -1.0
                ready_fds = poll(timeout)
                left = len(ready_fds)
                for fd, events in ready_fds:
                    left -= 1
                    self.ready_left = left
                    if fd == wake_r:
                        self._drain_wakeups()
                        continue
                    for mask, slot in _SLOTS:
                        if events & mask:
                            pair = handlers.get(fd)  # the reader may have changed them
                            if pair is not None and (handler := pair[slot]) is not None:
                                callback, args = handler
                                try:
                                    callback(*args)
                                except Exception:
                                    log.exception("internal error in %r", callback)
                self.ready_left = 0
                self._run_due()
        finally:
            self._running = False

    def _run_due(self) -> None:
        while self._caught:
            handler = self._signals.get(self._caught.pop(0))
            if handler is not None:
                self._run(*handler)
        timers = self._timers
        if timers:
            now = time.monotonic()
            while timers and timers[0].when <= now:
                timer = heapq.heappop(timers)
                if not timer.cancelled:
                    self._run(timer.callback, timer.args)
        from_threads = self._from_threads
        while from_threads:
            self._run(*from_threads.popleft())
        ready = self._ready
        for _ in range(len(ready)):  # what later callbacks add waits for the next turn
            self._run(*ready.popleft())

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    @staticmethod
    def _run(callback: Callback, args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("internal error in %r", callback)

    def close(self) -> None:
        """Release the selector, the wake-up pipe and the signal handlers."""
        with self._wake_lock:
            if self._closed:
                return
            self._closed = True
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
        self._epoll.close()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
