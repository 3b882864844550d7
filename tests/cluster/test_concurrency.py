# SPDX-License-Identifier: MIT
"""Concurrency: three daemons, three client processes each, random PR IN/OUT on a few
logical units for a bounded time; the history must be explained by one serial order per LU
(:mod:`qompr.testing.checker`).

``QOMPR_CLUSTER_SECONDS`` sets the run's length (default 4 s; the report's runs use more).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.testing.checker import CheckReport
from qompr.testing.checker import HistoryError
from qompr.testing.checker import Operation
from qompr.testing.checker import check

from .conftest import SharedStore
from .harness import AgentProcess
from .harness import Agents
from .harness import Cluster
from .harness import backend
from .harness import lu_file
from .harness import run_all

SECONDS = float(os.environ.get("QOMPR_CLUSTER_SECONDS", "4"))
DAEMONS = 3
CLIENTS_PER_DAEMON = 3
LUS = 3
FINAL_READS = (PrInAction.READ_FULL_STATUS, PrInAction.READ_KEYS, PrInAction.READ_RESERVATION)


def requests(
    agents: list[AgentProcess], sockets: list[str], lus: list[str], seconds: float, **extra: Any
) -> list[dict[str, Any]]:
    """One ``run`` request per agent: its home daemon first, then the others."""
    peers = [agent.initiator for agent in agents]
    out = []
    for index in range(len(agents)):
        home = index % len(sockets)
        order = sockets[home:] + sockets[:home]
        out.append(
            {
                "do": "run",
                "seed": index,
                "peers": peers,
                "sockets": order,
                "lus": lus,
                "seconds": seconds,
                "ledger_base": index + 1,
                **extra,
            }
        )
    return out


def final_reads(agents: list[AgentProcess], sockets: list[str], lus: list[str]) -> list[Operation]:
    """After the run: every LU read through every daemon (what each host sees)."""
    ops = []
    for index, socket_path in enumerate(sockets):
        agent = agents[index]
        agent.connect(socket_path)
        for lu in lus:
            for action in FINAL_READS:
                op = agent.command(lu, PrInCdb(action, 4096).to_bytes())
                assert op.status is not None, f"no answer from {socket_path} after the run"
                ops.append(op)
    return ops


def report_line(name: str, report: CheckReport, **counts: object) -> str:
    extra = "".join(f", {k}={v}" for k, v in counts.items())
    line = f"[{name}] {report.summary()}{extra}"
    target = os.environ.get("QOMPR_CLUSTER_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")
    print(line)
    return line


def test_random_commands_from_three_daemons_are_serializable(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    lus = [lu_file(tmp_path, f"lu{i}") for i in range(LUS)]
    names = [f"c{i}" for i in range(DAEMONS * CLIENTS_PER_DAEMON)]
    spec = backend(shared_store.state, extra=shared_store.extra)
    with Cluster(spec, tmp_path, DAEMONS) as cluster, Agents(names) as agents:
        members = list(agents)
        for index, agent in enumerate(members):
            agent.connect(cluster.sockets[index % DAEMONS])  # started: the runs overlap
        answers = run_all(members, requests(members, cluster.sockets, lus, SECONDS), SECONDS)
        history = [Operation.from_json(raw) for answer in answers for raw in answer["ops"]]
        history += final_reads(members, cluster.sockets, lus)
    report = check(history)
    report_line(f"concurrency/{shared_store.kind}", report, seconds=SECONDS)
    # The run did something worth checking: every client was answered, and PR OUT
    # commands succeeded on every LU.
    assert report.unanswered == 0 and report.retryable == 0
    assert {op.initiator for op in history if op.acknowledged} == {a.initiator for a in members}
    good_out_lus = {op.lu for op in history if op.is_pr_out and op.status == 0}
    assert good_out_lus == set(lus)
    assert report.good_pr_out >= 50

    # The same history with one acknowledged answer changed must fail: the check can fail.
    index = next(i for i, op in enumerate(history) if op.status == 0 and len(op.data_in) >= 8)
    op = history[index]
    generation = (int.from_bytes(op.data_in[:4], "big") + 7) & 0xFFFF_FFFF
    history[index] = Operation.from_json(
        {**op.to_json(), "data_in": (generation.to_bytes(4, "big") + op.data_in[4:]).hex()}
    )
    with pytest.raises(HistoryError):
        check(history)
