# SPDX-License-Identifier: MIT
"""Benchmark: qompr-pr-helper against the real qemu-pr-helper, measured in the same run.

Run as root (qemu-pr-helper drops privileges at start and refuses otherwise)::

    .venv/bin/python bench/helper.py [--seconds 2] [--rounds 2] [--idle 10000]

For 1, 4 and 16 concurrent connections it sends PERSISTENT RESERVE IN / READ KEYS (allocation
length 255) back to back, each with a regular-file fd, and prints requests per second and the
p50/p99 latency of both helpers, and qompr's ratios.  qompr-pr-helper is measured twice: with
its default SG_IO executor (what qemu-pr-helper does: on a regular file the ioctl fails and both
answer CHECK CONDITION) and with ``--backend pr-manager-emulated`` (real READ KEYS answers; the
real helper has no such backend, so its SG_IO numbers are the reference), with an SQLite state
file (``qompr+emu``: a worker thread and a transaction per command) and in memory
(``qompr+mem``: run on the daemon's loop).  Last, it opens many
idle connections to each helper and prints their resident memory.

The load comes from client processes (one per core, each driving its share of the connections
with epoll), so that the client's own interpreter lock does not cap the numbers.  Targets from
issue 4: at 16 connections >= 1.2x qemu-pr-helper's throughput; single-connection p50 <= 1.5x
its latency; 10,000 idle connections in < 100 MB RSS.  This script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import time
from typing import Any

from qompr.testing import HelperProcess
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import recv_exact

READ_KEYS = pr_in(255)
MULTI = f"qompr x{os.cpu_count()}"
CONNECTIONS = (1, 4, 16)


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    recv_exact(sock, 4)
    sock.sendall(bytes(4))
    return sock


def _drive(job: tuple[str, int, float, str], go: Any, out: Any) -> None:
    """One client process: *nconn* connections, one command in flight on each."""
    path, nconn, seconds, regular = job
    socks = [_connect(path) for _ in range(nconn)]
    fd = os.open(regular, os.O_RDWR)
    sel = selectors.DefaultSelector()
    buf: dict[socket.socket, bytes] = {}
    sent: dict[socket.socket, float] = {}
    latencies: list[float] = []
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        buf[sock] = b""
    go.wait()
    end = time.perf_counter() + seconds
    for sock in socks:
        sent[sock] = time.perf_counter()
        socket.send_fds(sock, [READ_KEYS], [fd])
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for key, _ in sel.select(end - now):
            fileobj = key.fileobj
            assert isinstance(fileobj, socket.socket)
            sock = fileobj
            data = buf[sock] + sock.recv(65536)
            if len(data) < 104 or len(data) < 104 + struct.unpack(">i", data[4:8])[0]:
                buf[sock] = data
                continue
            buf[sock] = b""
            done = time.perf_counter()
            latencies.append(done - sent[sock])
            sent[sock] = done
            socket.send_fds(sock, [READ_KEYS], [fd])
    out.put(latencies)
    for sock in socks:
        sock.close()
    os.close(fd)


def measure(path: str, nconn: int, seconds: float, regular: str) -> dict[str, float]:
    """Requests per second and latency percentiles with *nconn* connections."""
    procs = min(nconn, os.cpu_count() or 1)
    shares = [nconn // procs + (1 if i < nconn % procs else 0) for i in range(procs)]
    ctx = mp.get_context("fork")
    go = ctx.Event()
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_drive, args=((path, share, seconds, regular), go, out))
        for share in shares
    ]
    for w in workers:
        w.start()
    time.sleep(0.3)  # connected and negotiated
    go.set()
    latencies: list[float] = []
    for _ in workers:
        latencies += out.get()
    for w in workers:
        w.join()
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2] * 1e6,
        "p99": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_memory(path: str, pid: int, count: int) -> tuple[int, int, int]:
    """(RSS before in KiB, after in KiB, connections that got their handshake)."""
    before = rss_kib(pid)
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            socks.append(sock)
        ok = 0
        for sock in socks:
            sock.settimeout(10)
            with contextlib.suppress(OSError):
                recv_exact(sock, 4)
                sock.sendall(bytes(4))
                ok += 1
        time.sleep(1.0)
        return before, rss_kib(pid), ok
    finally:
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per case (best kept)")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    args = parser.parse_args()
    real_bin = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"
    if os.geteuid() != 0 or not os.path.exists(real_bin):
        print("needs root and qemu-pr-helper (Debian qemu-system-common)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ours_argv = [sys.executable, "-m", "qompr.daemon.main"]
    with tempfile.TemporaryDirectory(prefix="qompr-bench-") as tmp:
        regular = os.path.join(tmp, "lu.img")
        with open(regular, "wb") as f:
            f.write(bytes(1 << 20))
        for sub in ("real", "ours", "multi", "emu", "mem"):
            os.mkdir(os.path.join(tmp, sub))
        emu_state = os.path.join(tmp, "pr.db")
        real = HelperProcess([real_bin], os.path.join(tmp, "real"))
        ours = HelperProcess(ours_argv, os.path.join(tmp, "ours"))
        ncpu = os.cpu_count() or 1
        multi = HelperProcess([*ours_argv, f"--processes={ncpu}"], os.path.join(tmp, "multi"))
        emu = HelperProcess(
            [*ours_argv, "--backend", f"pr-manager-emulated,id=emu0,state={emu_state}"],
            os.path.join(tmp, "emu"),
        )
        # In memory the engine says it cannot block: the daemon runs it on its loop.
        mem = HelperProcess(
            [*ours_argv, "--backend", "pr-manager-emulated,id=emu0"], os.path.join(tmp, "mem")
        )
        with real, ours, multi, emu, mem:
            _register_keys(emu.path, regular)
            _register_keys(mem.path, regular)
            table: dict[tuple[str, int], dict[str, float]] = {}
            for _round in range(args.rounds):
                for n in CONNECTIONS:
                    helpers = (
                        ("qemu", real),
                        ("qompr", ours),
                        (MULTI, multi),
                        ("qompr+emu", emu),
                        ("qompr+mem", mem),
                    )
                    for name, helper in helpers:
                        result = measure(helper.path, n, args.seconds, regular)
                        best = table.get((name, n))
                        if best is None or result["rps"] > best["rps"]:
                            table[(name, n)] = result
            _report(table)
            if args.idle:
                print(f"\n{args.idle} idle connections (VmRSS of the helper process):")
                for name, helper in (("qemu-pr-helper", real), ("qompr-pr-helper", ours)):
                    before, after, ok = idle_memory(helper.path, helper.pid, args.idle)
                    print(
                        f"  {name:16} {before / 1024:7.1f} MB -> {after / 1024:7.1f} MB"
                        f"  (+{(after - before) / 1024:.1f} MB, {ok} negotiated)"
                    )
    return 0


def _register_keys(path: str, regular: str) -> None:
    """Give the emulated LU four registrations, so READ KEYS has something to say."""
    fd = os.open(regular, os.O_RDWR)
    try:
        for key in range(1, 5):
            sock = _connect(path)
            params = bytes(8) + key.to_bytes(8, "big") + bytes(8)
            socket.send_fds(sock, [pr_out(24) + params], [fd])
            recv_exact(sock, 104)
            sock.close()
    finally:
        os.close(fd)


def _report(table: dict[tuple[str, int], dict[str, float]]) -> None:
    print("PR IN READ KEYS, regular-file fd; best of the rounds")
    print(f"{'conns':>5}  {'helper':10} {'req/s':>9} {'p50 us':>8} {'p99 us':>8}  vs qemu")
    for n in CONNECTIONS:
        ref = table[("qemu", n)]
        for name in ("qemu", "qompr", MULTI, "qompr+emu", "qompr+mem"):
            r = table[(name, n)]
            ratio = ""
            if name != "qemu":
                ratio = (
                    f"  throughput {r['rps'] / ref['rps']:.2f}x, p50 {r['p50'] / ref['p50']:.2f}x"
                )
            print(f"{n:>5}  {name:10} {r['rps']:9.0f} {r['p50']:8.0f} {r['p99']:8.0f}{ratio}")
    best16 = max(table[(name, 16)]["rps"] for name in ("qompr", MULTI))
    print(
        f"targets: 16-connection throughput >= 1.2x "
        f"(now {best16 / table[('qemu', 16)]['rps']:.2f}x, best qompr configuration); "
        f"1-connection p50 <= 1.5x "
        f"(now {table[('qompr', 1)]['p50'] / table[('qemu', 1)]['p50']:.2f}x)"
    )
    print(f"(load: {os.cpu_count()} client processes at most, one per core, epoll-driven)")


if __name__ == "__main__":
    sys.exit(main())
