# SPDX-License-Identifier: MIT
"""Benchmark: qompr-pr-helper against the real qemu-pr-helper, measured in the same run.

Run as root (qemu-pr-helper drops privileges at start and refuses otherwise)::

    .venv/bin/python bench/helper.py [--rounds 3] [--seconds 2] [--idle 10000]

Every figure is taken for both helpers in the same round, rounds interleave them, and the
table gives each figure's median over the rounds (these machines are shared and noisy) with
qompr's ratio to qemu-pr-helper beside it.  The targets are issue 14's (the daemon part):

* start-up: listening socket ready <= 120 ms after exec (the time from ``exec`` to the first
  connection the helper accepts);
* memory: resident <= 16 MB after start, <= 18 MB after 10,000 requests; 10,000 idle
  connections < +30 MB;
* request path, SG_IO executor, one process: 1-connection p50 latency <= 1.2x
  qemu-pr-helper's; 16-connection throughput >= 1.2x;
* the emulated backend in memory (``qompr+mem``): 16-connection throughput >= 1.0x
  qemu-pr-helper's SG_IO throughput;
* the emulated backend with an SQLite state file (``qompr+sqlite``): 16-connection
  throughput >= 0.5x qemu-pr-helper's SG_IO throughput and >= 25,000/s (issue 11: ten times
  the 2.5k READ KEYS/s it had).

The request is PERSISTENT RESERVE IN / READ KEYS (allocation length 255) with a regular-file
fd, back to back on each connection: on a regular file SG_IO fails at once and both helpers
answer CHECK CONDITION, so it measures the helpers, not a device.  ``qompr+mem`` answers real
READ KEYS from ``pr-manager-emulated`` (four registrations), ``qompr+sqlite`` the same from a
state file (a PR IN is read on the daemon's loop without a write transaction;
bench/emulated.py is that engine's own benchmark), ``qompr xN`` is ``--processes=N``
(informative: the targets are for one process).

qompr runs as installed: with its modules' bytecode compiled (as ``pip install`` leaves it;
the script compiles it into a temporary ``PYTHONPYCACHEPREFIX``, so an environment that sets
``PYTHONDONTWRITEBYTECODE`` does not make every start compile the sources).

The load comes from client processes (one per core, each driving its share of the
connections with epoll), so that the client's own interpreter lock does not cap the numbers.
They share the cores with the helper under test, so their CPU is taken from it: the load
generator (bench/_load.py, shared with bench/cluster.py) is kept light, and the last line
gives its CPU per request beside each helper.  This script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The load generator is bench/_load.py, shared with bench/cluster.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._load import NCPU
from bench._load import Connection
from bench._load import connect
from bench._load import run

from qompr.testing import QOMPR_PR_HELPER
from qompr.testing import HelperProcess
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import recv_exact

READ_KEYS = pr_in(255)
CONNECTIONS = (1, 16)
MULTI = f"qompr x{NCPU}"
MEM = "qompr+mem"
SQLITE = "qompr+sqlite"


def measure(path: str, nconn: int, seconds: float, regular: str) -> dict[str, float]:
    """Requests per second, latency percentiles (us) and the load generator's own CPU per
    request (us) with *nconn* connections, spread over at most one client process per core."""
    procs = min(nconn, NCPU)
    shares = [nconn // procs + (1 if i < nconn % procs else 0) for i in range(procs)]
    conn = Connection(path, (READ_KEYS,))
    load = run([[conn] * share for share in shares], [regular], seconds)
    return {
        "rps": load.rate,
        "p50": load.percentile(0.5) * 1e6,
        "p99": load.percentile(0.99) * 1e6,
        "cpu": load.cpu_per_request * 1e6,
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def startup(argv: list[str], workdir: str, env: dict[str, str]) -> tuple[float, int]:
    """(ms from exec to the first accepted connection, VmRSS in KiB half a second later)."""
    path = os.path.join(workdir, "start.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    start = time.perf_counter()
    proc = subprocess.Popen([*argv, "-k", path], stderr=subprocess.DEVNULL, env=env)
    try:
        while True:
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(path)
                    ready = time.perf_counter() - start
                    sock.recv(4)
                    break
                except OSError:
                    pass
            if proc.poll() is not None or time.perf_counter() - start > 30:
                raise RuntimeError(f"{argv[0]} did not start")
            time.sleep(0.0005)
        time.sleep(0.5)
        return ready * 1000, rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def after_requests(path: str, pid: int, count: int, regular: str) -> int:
    """VmRSS (KiB) after *count* READ KEYS on one connection."""
    fd = os.open(regular, os.O_RDWR)
    try:
        with connect(path) as sock:
            for _ in range(count):
                socket.send_fds(sock, [READ_KEYS], [fd])
                recv_exact(sock, 104)
    finally:
        os.close(fd)
    return rss_kib(pid)


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


def _register_keys(path: str, regular: str) -> None:
    """Give the emulated LU four registrations, so READ KEYS has something to say."""
    fd = os.open(regular, os.O_RDWR)
    try:
        for key in range(1, 5):
            sock = connect(path)
            params = bytes(8) + key.to_bytes(8, "big") + bytes(8)
            socket.send_fds(sock, [pr_out(24) + params], [fd])
            recv_exact(sock, 104)
            sock.close()
    finally:
        os.close(fd)


def _bytecode_env(prefix: str) -> dict[str, str]:
    """An environment in which every module loads from compiled bytecode under *prefix*
    (with a prefix Python looks for bytecode there only: the standard library and
    site-packages are compiled into it too)."""
    import sysconfig

    import qompr

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = prefix
    trees = {os.path.dirname(qompr.__file__), sysconfig.get_path("stdlib")}
    trees.add(sysconfig.get_path("purelib"))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j0", *sorted(trees)],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return env


class Table:
    """Figures per (what, helper) over the rounds; medians on demand."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[float]] = {}

    def add(self, what: str, helper: str, value: float) -> None:
        self.values.setdefault((what, helper), []).append(value)

    def median(self, what: str, helper: str) -> float:
        return statistics.median(self.values[(what, helper)])

    def row(
        self,
        label: str,
        what: str,
        fmt: Callable[[float], str],
        *,
        target: str = "",
        check: Callable[[float, float], bool] | None = None,
        helper: str = "qompr",
    ) -> str:
        ours, theirs = self.median(what, helper), self.median(what, "qemu")
        met = "" if check is None else "yes" if check(ours, theirs) else "NO"
        ratio = ours / theirs if theirs else float("nan")
        line = f"  {label:38} {fmt(ours):>10} {fmt(theirs):>10} {ratio:6.2f}x   {target:22} {met}"
        return line.rstrip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    parser.add_argument("--starts", type=int, default=5, help="start-ups timed per round")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    args = parser.parse_args()
    real_bin = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"
    if os.geteuid() != 0 or not os.path.exists(real_bin):
        print("needs root and qemu-pr-helper (Debian qemu-system-common)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ours_argv = list(QOMPR_PR_HELPER)
    installed = shutil.which("qompr-pr-helper")
    start_argv = [installed] if installed else ours_argv  # the console script, as libvirt runs
    table = Table()
    with tempfile.TemporaryDirectory(prefix="qompr-bench-") as tmp:
        env = _bytecode_env(os.path.join(tmp, "pycache"))
        regular = os.path.join(tmp, "lu.img")
        with open(regular, "wb") as f:
            f.write(bytes(1 << 20))
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            _one_round(
                args, table, tmp, regular,
                real_bin=real_bin, ours_argv=ours_argv, start_argv=start_argv, env=env,
            )  # fmt: skip
    _report(table, args)
    return 0


def _one_round(
    args: argparse.Namespace,
    table: Table,
    tmp: str,
    regular: str,
    *,
    real_bin: str,
    ours_argv: list[str],
    start_argv: list[str],
    env: dict[str, str],
) -> None:
    for _ in range(args.starts):
        for name, argv in (("qemu", [real_bin]), ("qompr", start_argv)):
            ms, rss = startup(argv, tmp, env)
            table.add("start_ms", name, ms)
            table.add("rss_start", name, rss / 1024)
    sub = tempfile.mkdtemp(dir=tmp)
    for name in ("real", "ours", "multi", "sqlite", "mem"):
        os.mkdir(os.path.join(sub, name))
    state = os.path.join(sub, "pr.db")
    helpers = {
        "qemu": HelperProcess([real_bin], os.path.join(sub, "real")),
        "qompr": HelperProcess(ours_argv, os.path.join(sub, "ours"), env),
        MULTI: HelperProcess([*ours_argv, f"--processes={NCPU}"], os.path.join(sub, "multi"), env),
        SQLITE: HelperProcess(
            [*ours_argv, "--backend", f"pr-manager-emulated,id=emu0,state={state}"],
            os.path.join(sub, "sqlite"),
            env,
        ),
        # In memory the engine says it cannot block: the daemon runs it on its loop.
        MEM: HelperProcess(
            [*ours_argv, "--backend", "pr-manager-emulated,id=emu0"],
            os.path.join(sub, "mem"),
            env,
        ),
    }
    with contextlib.ExitStack() as stack:
        for helper in helpers.values():
            stack.enter_context(helper)
        _register_keys(helpers[SQLITE].path, regular)
        _register_keys(helpers[MEM].path, regular)
        for n in CONNECTIONS:
            for name, helper in helpers.items():
                result = measure(helper.path, n, args.seconds, regular)
                table.add(f"rps{n}", name, result["rps"])
                table.add(f"p50_{n}", name, result["p50"])
                table.add(f"cpu{n}", name, result["cpu"])
        for name in ("qemu", "qompr"):
            helper = helpers[name]
            rss = after_requests(helper.path, helper.pid, 10000, regular)
            table.add("rss_10k", name, rss / 1024)
            if args.idle:
                before, after, ok = idle_memory(helper.path, helper.pid, args.idle)
                table.add("idle_mb", name, (after - before) / 1024)
                table.add("idle_ok", name, ok)


def _report(table: Table, args: argparse.Namespace) -> None:
    ms = "{:.0f} ms".format
    mb = "{:.1f} MB".format
    rps = "{:.0f}/s".format
    us = "{:.0f} us".format
    targets: list[tuple[str, str, Callable[[float], str], str, Callable[[float, float], bool]]]
    targets = [
        ("listening socket after exec", "start_ms", ms, "<= 120 ms", lambda o, t: o <= 120),
        ("resident after start", "rss_start", mb, "<= 16 MB", lambda o, t: o <= 16),
        ("resident after 10,000 requests", "rss_10k", mb, "<= 18 MB", lambda o, t: o <= 18),
        ("1 connection, p50 latency", "p50_1", us, "<= 1.2x qemu", lambda o, t: o <= 1.2 * t),
        ("16 connections, throughput", "rps16", rps, ">= 1.2x qemu", lambda o, t: o >= 1.2 * t),
    ]
    if args.idle:
        label = f"+ for {args.idle} idle connections"
        targets.insert(3, (label, "idle_mb", mb, "< +30 MB", lambda o, t: o < 30))
    print(f"qompr-pr-helper vs qemu-pr-helper: medians of {args.rounds} rounds")
    print(f"  {'':38} {'qompr':>10} {'qemu':>10} {'ratio':>7}   {'target':22} met")
    for label, what, fmt, target, check in targets:
        print(table.row(label, what, fmt, target=target, check=check))
    label = "16 connections, emulated in memory"
    target = ">= 1.0x qemu SG_IO"
    print(table.row(label, "rps16", rps, target=target, check=lambda o, t: o >= t, helper=MEM))
    label = "16 connections, emulated SQLite file"
    target = ">= 0.5x qemu, >= 25k/s"
    print(
        table.row(
            label,
            "rps16",
            rps,
            target=target,
            check=lambda o, t: o >= 0.5 * t and o >= 25000,
            helper=SQLITE,
        )
    )
    print("informative (no target):")
    helpers = ("qompr", MULTI, MEM, SQLITE)
    for name in helpers:
        for n in CONNECTIONS:
            label = f"{name}, {n} connection{'s' if n > 1 else ''}, throughput"
            print(table.row(label, f"rps{n}", rps, helper=name))
    print(f"(load: at most {NCPU} client processes, one per core, epoll-driven)")
    # The clients share the cores with the daemon: what they spend is not the daemon's.
    light = ", ".join(f"{name} {table.median('cpu16', name):.1f} us" for name in ("qemu", *helpers))
    print(f"(load generator CPU per request, 16 connections: {light})")


if __name__ == "__main__":
    sys.exit(main())
