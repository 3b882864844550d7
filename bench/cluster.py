# SPDX-License-Identifier: MIT
"""Benchmark: ``pr-manager-emulated`` behind 1 and 3 ``qompr-pr-helper`` daemons, on each
store (memory, SQLite, PostgreSQL), with 1 and 16 client connections: PR OUT/s and PR IN/s
with p50/p99 latency, in one table from one run.

    .venv/bin/python bench/cluster.py [--seconds 2] [--stores memory,sqlite,postgresql]

* PR OUT is REGISTER AND IGNORE EXISTING KEY, alternating two keys per connection: every
  command is a committed write (PRgeneration moves).  PR IN is READ KEYS (allocation 255) on
  the registrations the PR OUT phase left.  Every request carries the LU file's fd, as
  QEMU's do; the daemons name each client process an initiator (``initiator-rule=pid``).
* With 3 daemons the connections are spread over them; "memory" then means three separate
  states (nothing is shared: a ceiling, not a cluster), SQLite one file on this host,
  PostgreSQL one database (``fsync=on``, ``synchronous_commit=on``: the suite's
  :class:`qompr.testing.postgres.PostgresCluster`, started by this script).
* SQLite uses ``state-sync=full`` (fsync per commit group), the default.
* The load comes from client processes (as many as cores, each driving its share of the
  connections with epoll), so the client's own interpreter lock does not cap the numbers.

Targets (issue 11) are printed beside the rows they apply to: PostgreSQL, 3 daemons, 16
clients: >= 1,000 PR OUT/s and >= 5,000 PR IN/s aggregate, p99 < 20 ms; SQLite, 1 daemon, 16
connections: >= 25,000 READ KEYS/s.  This script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qompr.errors import QomprError
from qompr.scsi import PrOutAction
from qompr.testing import HelperProcess
from qompr.testing import pr_in
from qompr.testing import pr_out_command
from qompr.testing import recv_exact
from qompr.testing.postgres import PostgresCluster

READ_KEYS = pr_in(255)
NCPU = os.cpu_count() or 1
KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
STORES = ("memory", "sqlite", "postgresql")
DAEMONS = (1, 3)
CLIENTS = (1, 16)


def _register(key: int) -> bytes:
    cdb, data = pr_out_command(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=key)
    return cdb.ljust(16, b"\0") + data


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    recv_exact(sock, 4)
    sock.sendall(bytes(4))
    return sock


def _drive(job: tuple[list[str], str, float, list[str], int], go: Any, out: Any) -> None:
    """One client process: a connection per path in *paths*, one command in flight each,
    connection i on logical unit i modulo the LUs."""
    paths, kind, seconds, lus, seed = job
    socks = [_connect(path) for path in paths]
    lu_fds = [os.open(lu, os.O_RDWR) for lu in lus]
    fds = {sock: lu_fds[(seed + i) % len(lu_fds)] for i, sock in enumerate(socks)}
    sel = selectors.DefaultSelector()
    requests: dict[socket.socket, list[bytes]] = {}
    turn: dict[socket.socket, int] = {}
    buf: dict[socket.socket, bytes] = {}
    sent: dict[socket.socket, float] = {}
    latencies: list[float] = []
    errors = 0
    for index, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        base = (seed << 20 | index << 8) + 1
        requests[sock] = [READ_KEYS] if kind == "in" else [_register(base), _register(base + 1)]
        turn[sock] = 0
        buf[sock] = b""
    go.wait()
    end = time.perf_counter() + seconds

    def send(sock: socket.socket) -> None:
        reqs = requests[sock]
        turn[sock] += 1
        sent[sock] = time.perf_counter()
        socket.send_fds(sock, [reqs[turn[sock] % len(reqs)]], [fds[sock]])

    for sock in socks:
        send(sock)
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
            latencies.append(time.perf_counter() - sent[sock])
            if data[3] != 0:  # not GOOD: counted, so a broken store cannot look fast
                errors += 1
            send(sock)
    out.put((latencies, errors))
    for sock in socks:
        sock.close()
    for fd in lu_fds:
        os.close(fd)


def measure(paths: list[str], kind: str, seconds: float, lus: list[str]) -> dict[str, float]:
    """Commands per second and latency percentiles, one connection per entry of *paths*."""
    procs = min(len(paths), NCPU)
    shares = [paths[i::procs] for i in range(procs)]
    ctx = mp.get_context("fork")
    go = ctx.Event()
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_drive, args=((share, kind, seconds, lus, seed), go, out))
        for seed, share in enumerate(shares)
    ]
    for w in workers:
        w.start()
    time.sleep(0.5)  # connected and negotiated (a benchmark, not a test)
    go.set()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        lat, err = out.get()
        latencies += lat
        errors += err
    for w in workers:
        w.join()
    latencies.sort()
    if not latencies:
        return {"rate": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": errors}
    return {
        "rate": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2] * 1e3,
        "p99": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": errors,
    }


@contextlib.contextmanager
def daemons(spec: str, count: int, workdir: Path) -> Iterator[list[str]]:
    helpers = []
    try:
        for index in range(count):
            where = workdir / f"d{index}"
            where.mkdir(parents=True, exist_ok=True)
            helper = HelperProcess.qompr(*KEEP, "--backend", spec, workdir=str(where))
            helpers.append(helper.start(timeout=60))
        yield [h.path for h in helpers]
    finally:
        for helper in helpers:
            helper.__exit__(None, None, None)


def target(store: str, ndaemons: int, clients: int) -> tuple[str, str]:
    """The targets that apply to a row: (PR OUT column, PR IN column)."""
    if store == "postgresql" and ndaemons == 3 and clients == 16:
        return ">=1000/s p99<20", ">=5000/s p99<20"
    if store == "sqlite" and ndaemons == 1 and clients == 16:
        return "", ">=25000/s"
    return "", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument(
        "--lus",
        type=int,
        default=1,
        help="logical units the connections spread over (default 1: every command on one "
        "LU, whose commands the store runs one at a time, across daemons too)",
    )
    args = parser.parse_args()
    stores = args.stores.split(",")
    rows: list[tuple[str, int, int, dict[str, float], dict[str, float]]] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        pg: PostgresCluster | None = None
        if "postgresql" in stores:
            try:
                pg = stack.enter_context(PostgresCluster.create())
            except QomprError as exc:
                notes.append(f"postgresql: not run ({exc})")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qompr-bench-")))
        for store in stores:
            for ndaemons in DAEMONS:
                where = tmp / f"{store}-{ndaemons}"
                where.mkdir()
                lus = []
                for index in range(args.lus):
                    lu = where / f"lu{index}.img"
                    lu.write_bytes(bytes(4096))
                    lus.append(str(lu))
                if store == "memory":
                    spec = "pr-manager-emulated,id=emu"
                elif store == "sqlite":
                    spec = f"pr-manager-emulated,id=emu,state={where / 'pr.db'}"
                elif pg is not None:
                    uri = pg.create_database()
                    spec = f"pr-manager-emulated,id=emu,state={uri},lu-id=path,create-schema=on"
                else:
                    continue
                try:
                    with daemons(spec, ndaemons, where) as paths:
                        for clients in CLIENTS:
                            spread = [paths[i % len(paths)] for i in range(clients)]
                            out = measure(spread, "out", args.seconds, lus)
                            pin = measure(spread, "in", args.seconds, lus)
                            rows.append((store, ndaemons, clients, out, pin))
                            print(f"  {store} x{ndaemons} {clients} clients done", file=sys.stderr)
                except QomprError as exc:
                    notes.append(f"{store} x{ndaemons}: not run ({exc})")
    print()
    print(
        f"{'store':<11}{'daemons':>8}{'clients':>8}"
        f"{'PR OUT/s':>11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'PR IN/s':>11}{'p50 ms':>8}{'p99 ms':>8}  targets (OUT | IN)"
    )
    for store, ndaemons, clients, out, pin in rows:
        t_out, t_in = target(store, ndaemons, clients)
        errors = int(out["errors"] + pin["errors"])
        flag = f"  [{errors} not GOOD]" if errors else ""
        targets = f"  {t_out} | {t_in}" if t_out or t_in else ""
        print(
            f"{store:<11}{ndaemons:>8}{clients:>8}"
            f"{out['rate']:>11,.0f}{out['p50']:>8.2f}{out['p99']:>8.2f}"
            f"{pin['rate']:>11,.0f}{pin['p50']:>8.2f}{pin['p99']:>8.2f}{targets}{flag}"
        )
    for note in notes:
        print(note)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{NCPU} CPUs (load average {load}), {args.seconds:g} s per figure, "
        f"{args.lus} logical unit(s); memory x3 = three unshared states"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
