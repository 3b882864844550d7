# SPDX-License-Identifier: MIT
"""The load generator of bench/helper.py and bench/cluster.py: helper-protocol commands back
to back on many connections, from client processes, as light as Python allows.

Why light: the benchmarks run on small machines (two cores here) where the client processes
share the CPU with the daemon under test, so every microsecond the load generator spends on
a request is a microsecond taken from the daemon, and the daemon needs only some 30-40 us
per request.  This one keeps the per-request path to a handful of C calls:

* :class:`select.epoll` on fd numbers; each connection's state sits in lists indexed by its
  fd (no selector keys, no dicts keyed by socket);
* the SCM_RIGHTS ancillary item is built once per connection and each request list once
  (``sock.sendmsg([request], ancillary)``: what :func:`socket.send_fds` rebuilds each time);
* replies are read with ``recv_into`` a buffer allocated once per connection, and one
  ``perf_counter()`` per reply is both that reply's end and the next request's start;
* the run ends with a timer signal, so the wait in epoll arms no kernel timer and the loop
  compares no clocks.

Measured here (2 vCPUs, 16 connections, medians of 10 runs of 1.5 s interleaved with the
generator the scripts had, built on :mod:`selectors` and :func:`socket.send_fds`): client CPU
per request 17.6 -> 11.7 us for READ KEYS and 18.4 -> 12.9 us for PR OUT against the
in-memory emulated helper, 13.5 -> 9.5 us against qemu-pr-helper; its user-space part
halved (7.2 -> 3.6 us for READ KEYS).  What is left is mostly the kernel's and the same for
any client of this protocol: the sleep and wake-up in ``epoll_wait`` (a reply at a time when
the daemon is the bottleneck), ``sendmsg`` with SCM_RIGHTS, ``recv``.

What is measured does not change: every request carries the logical unit's fd in SCM_RIGHTS
(as QEMU's do), one command is in flight per connection, the whole reply (status, data
length, 96 bytes of sense, data) is read however the kernel splits it, its status is checked
and its latency recorded.  Each client process also measures its own CPU time
(:func:`time.process_time`, user + system) over the run, so a report can show what the load
cost beside what the daemon did.
"""

from __future__ import annotations

import array
import itertools
import multiprocessing as mp
import os
import queue
import select
import signal
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

from qompr.testing import recv_exact

NCPU = os.cpu_count() or 1
#: Status (4 bytes) + data length (4, big-endian) + sense (96): a reply's fixed part.
HEADER = 104
#: Per-connection read buffer: the fixed part and the largest data a helper sends (QEMU's
#: PR_HELPER_DATA_SIZE is 8 KiB), with room to spare.
BUFFER = HEADER + 65536
_LENGTH = struct.Struct(">i")


class Connection(NamedTuple):
    """One connection of the load: where, what it sends, on which logical unit."""

    path: str
    #: Sent in turn, one in flight, the first one first.
    requests: tuple[bytes, ...]
    #: Index of the logical unit (in the *lus* given to :func:`run`) whose fd each request
    #: carries.
    lu: int = 0


class Load(NamedTuple):
    """What a run measured, over all client processes."""

    seconds: float
    #: Each completed request's latency in seconds, sorted.
    latencies: list[float]
    #: Replies whose status was not GOOD, plus connections the peer closed.
    errors: int
    #: CPU time (user + system) the client processes spent in the run, in seconds.
    cpu: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        """The latency (seconds) that *fraction* of the requests did not exceed; NaN if none
        completed."""
        if not self.latencies:
            return float("nan")
        return self.latencies[min(int(len(self.latencies) * fraction), len(self.latencies) - 1)]

    @property
    def cpu_per_request(self) -> float:
        """Client CPU seconds per completed request; NaN if none completed."""
        return self.cpu / len(self.latencies) if self.latencies else float("nan")


def connect(path: str) -> socket.socket:
    """A connection to the helper at *path*, past the protocol's handshake (the helper's
    4-byte capabilities, then ours)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    recv_exact(sock, 4)
    sock.sendall(bytes(4))
    return sock


def run(shares: Sequence[Sequence[Connection]], lus: Sequence[str], seconds: float) -> Load:
    """Drive each share of connections from its own client process for *seconds*; every
    process connects first, then all start together."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_drive, args=(list(share), list(lus), seconds, go, out))
        for share in shares
    ]
    for w in workers:
        w.start()
    time.sleep(0.5)  # connected and negotiated (a benchmark, not a test)
    go.set()
    latencies: list[float] = []
    errors = 0
    cpu = 0.0
    for _ in workers:
        try:
            got = out.get(timeout=seconds + 60)
        except queue.Empty:
            for w in workers:
                w.kill()
            raise RuntimeError("a client process of the load generator died") from None
        if isinstance(got, BaseException):
            for w in workers:
                w.kill()
            raise RuntimeError(f"a client process of the load generator failed: {got}") from got
        raw, err, used = got
        latencies += array.array("d", raw)
        errors += err
        cpu += used
    for w in workers:
        w.join()
    latencies.sort()
    return Load(seconds, latencies, errors, cpu)


class _TimeUp(BaseException):
    """The run's time is up (a BaseException: no ``except OSError`` in the loop takes it)."""


def _time_up(signum: int, frame: object) -> None:
    raise _TimeUp


def _drive(conns: list[Connection], lus: list[str], seconds: float, go: Any, out: Any) -> None:
    """One client process: its connections, one command in flight on each, for *seconds*;
    puts (latencies as doubles, errors, CPU seconds) on *out*, or what went wrong."""
    try:
        _drive_loop(conns, lus, seconds, go, out)
    except Exception as exc:
        out.put(exc)


def _drive_loop(conns: list[Connection], lus: list[str], seconds: float, go: Any, out: Any) -> None:
    lu_fds = [os.open(lu, os.O_RDWR) for lu in lus]
    socks = [connect(conn.path) for conn in conns]
    ep = select.epoll(len(socks))
    size = max(sock.fileno() for sock in socks) + 1
    # Per connection, indexed by its fd: what the loop calls and the buffer it reads into.
    state: list[Any] = [None] * size
    sent = [0.0] * size
    have = [0] * size
    for conn, sock in zip(conns, socks, strict=True):
        sock.setblocking(False)
        fd = sock.fileno()
        fds = array.array("i", [lu_fds[conn.lu]]).tobytes()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        buf = bytearray(BUFFER)
        following = itertools.cycle([[request] for request in conn.requests]).__next__
        state[fd] = (sock.sendmsg, following, ancillary, sock.recv_into, buf, memoryview(buf))
        ep.register(fd, select.EPOLLIN)
    latencies = array.array("d")
    record = latencies.append
    perf = time.perf_counter
    poll = ep.poll
    length = _LENGTH.unpack_from
    errors = 0
    live = len(socks)
    most = live  # epoll.poll allocates room for this many events at each call
    go.wait()
    # The run ends with a timer signal rather than an epoll timeout (see the module's doc).
    signal.signal(signal.SIGALRM, _time_up)
    cpu = time.process_time()
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        for fd, item in enumerate(state):
            if item is not None:
                sent[fd] = perf()
                item[0](item[1](), item[2])
        while live:
            for fd, _ in poll(-1, most):
                sendmsg, following, ancillary, recv_into, buf, view = state[fd]
                got = have[fd]
                try:
                    n = recv_into(view[got:]) if got else recv_into(buf)
                    if n:
                        got += n
                        if got < HEADER or got < HEADER + length(buf, 4)[0]:
                            have[fd] = got  # a partial reply: the rest comes later
                            continue
                        have[fd] = 0
                        now = perf()
                        record(now - sent[fd])
                        sent[fd] = now
                        if buf[3]:  # not GOOD: counted, so a broken store cannot look fast
                            errors += 1
                        sendmsg(following(), ancillary)
                        continue
                except OSError:
                    pass
                # The peer closed or failed: counted, so a crashing daemon cannot look fast.
                ep.unregister(fd)
                errors += 1
                live -= 1
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimeUp:
        pass
    cpu = time.process_time() - cpu
    out.put((latencies.tobytes(), errors, cpu))
    ep.close()
    for sock in socks:
        sock.close()
    for fd in lu_fds:
        os.close(fd)
