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
  They share the cores with the daemons, so their CPU is taken from the daemons: the load
  generator (bench/_load.py, shared with bench/helper.py) is kept light, and a line after
  the table gives its CPU per command.

Targets (issue 11) are printed beside the rows they apply to: PostgreSQL, 3 daemons, 16
clients: >= 1,000 PR OUT/s and >= 5,000 PR IN/s aggregate, p99 < 20 ms; SQLite, 1 daemon, 16
connections: >= 25,000 READ KEYS/s.  This script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The load generator is bench/_load.py, shared with bench/helper.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._load import NCPU
from bench._load import Connection
from bench._load import run

from qompr.errors import QomprError
from qompr.scsi import PrOutAction
from qompr.testing import HelperProcess
from qompr.testing import pr_in
from qompr.testing import pr_out_command
from qompr.testing.postgres import PostgresCluster

READ_KEYS = pr_in(255)
KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
STORES = ("memory", "sqlite", "postgresql")
DAEMONS = (1, 3)
CLIENTS = (1, 16)


def _register(key: int) -> bytes:
    cdb, data = pr_out_command(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=key)
    return cdb.ljust(16, b"\0") + data


def measure(paths: list[str], kind: str, seconds: float, lus: list[str]) -> dict[str, float]:
    """Commands per second, latency percentiles (ms), commands not GOOD and the load
    generator's own CPU per command (us), one connection per entry of *paths*.

    The connections are dealt to at most one client process per core; connection *i* of
    process *seed* uses logical unit ``(seed + i) % len(lus)`` and, for PR OUT, keys of its
    own (registered alternately, so every command moves PRgeneration)."""
    procs = min(len(paths), NCPU)
    shares = []
    for seed in range(procs):
        share = []
        for index, path in enumerate(paths[seed::procs]):
            base = (seed << 20 | index << 8) + 1
            requests = (READ_KEYS,) if kind == "in" else (_register(base + 1), _register(base))
            share.append(Connection(path, requests, (seed + index) % len(lus)))
        shares.append(share)
    load = run(shares, lus, seconds)
    return {
        "rate": load.rate,
        "p50": load.percentile(0.5) * 1e3,
        "p99": load.percentile(0.99) * 1e3,
        "errors": load.errors,
        "cpu": load.cpu_per_request * 1e6,
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
    # The clients share the cores with the daemons: what they spend is not the daemons'.
    light = []
    for clients in CLIENTS:
        picked = [(out, pin) for _, _, n, out, pin in rows if n == clients]
        if picked:
            cpu_out = statistics.median(out["cpu"] for out, _ in picked)
            cpu_in = statistics.median(pin["cpu"] for _, pin in picked)
            who = f"{clients} client{'s' if clients > 1 else ''}"
            light.append(f"{who}: PR OUT {cpu_out:.1f} us, PR IN {cpu_in:.1f} us")
    if light:
        print(f"load generator CPU per command (medians of the rows): {'; '.join(light)}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{NCPU} CPUs (load average {load}), {args.seconds:g} s per figure, "
        f"{args.lus} logical unit(s); memory x3 = three unshared states"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
