# SPDX-License-Identifier: MIT
"""Faults in the middle of a cluster's random run: ``kill -9`` of a daemon, and (on
PostgreSQL) ``pg_ctl restart -m immediate`` of the database.

Each client is a VM on one host: it talks only to its own host's daemon, and reconnects to
it when the connection breaks (as QEMU's pr-manager-helper does).  Afterwards:

* the history, final reads through every daemon included, is explained by one serial order
  per logical unit (:mod:`qompr.testing.checker`): no acknowledged command lost, no answer
  a serial execution would not give; an answer during the outage is a retryable CHECK
  CONDITION (held to "applied nothing") or no answer at all, never HARDWARE ERROR;
* a *ledger* logical unit makes lost acknowledgements plain to count: every few commands a
  client registers a growing key there (REGISTER AND IGNORE EXISTING KEY, nobody else
  touches its registration), so its final key must be at least its last acknowledged one;
* service resumed by itself: every client got acknowledged answers after the fault.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from qompr.scsi import PrInAction
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing.checker import CheckReport
from qompr.testing.checker import Operation
from qompr.testing.checker import check

from .conftest import SharedStore
from .conftest import _store
from .harness import FAULT_TIMEOUT_MS
from .harness import AgentProcess
from .harness import Agents
from .harness import Cluster
from .harness import backend
from .harness import lu_file
from .test_concurrency import final_reads
from .test_concurrency import report_line
from .test_concurrency import requests

SECONDS = max(3.0, float(os.environ.get("QOMPR_CLUSTER_SECONDS", "4")))
DAEMONS = 3
CLIENTS_PER_DAEMON = 2
#: Deadline for service to come back after a fault (generous: a loaded 2-core machine).
RESUME_DEADLINE = 30.0


@attrs.frozen
class FaultRun:
    report: CheckReport
    history: list[Operation]
    fault_at: float
    back_at: float
    acknowledged_lost: int
    ledger_acks: int
    connects_failed: int
    retryable_applied: int


def ledger_lost(history: list[Operation], ledger: str, final: Operation) -> tuple[int, int]:
    """(acknowledged ledger registrations not visible at the end, all acknowledged ones)."""
    assert final.status == ScsiStatus.GOOD
    seen = {
        d.transport_id: d.reservation_key
        for d in ReadFullStatusData.from_bytes(final.data_in).descriptors
    }
    lost = 0
    acks = 0
    for op in history:
        if op.lu != ledger or not op.is_pr_out or op.status != ScsiStatus.GOOD:
            continue
        acks += 1
        key = int.from_bytes(op.data[8:16], "big")
        if seen.get(op.nexus.transport_id, 0) < key:
            lost += 1  # acknowledged, and not (or an older key) there at the end
    return lost, acks


def fault_run(
    store: SharedStore,
    workdir: Path,
    inject: Callable[[Cluster], None],
    name: str,
    *,
    retryable_may_apply: bool = False,
    unknown_after: float | None = None,
) -> FaultRun:
    """One run with *inject* a third into it.

    :param unknown_after: a fault that lasts longer than this many seconds may leave a
        command's outcome unknown (a cut COMMIT whose database is not back in time), so a
        retryable answer may then have applied; a shorter one may not.
    """
    lus = [lu_file(workdir, f"lu{i}") for i in range(2)]
    ledger = lu_file(workdir, "ledger")
    names = [f"f{i}" for i in range(DAEMONS * CLIENTS_PER_DAEMON)]
    spec = backend(store.state, timeout_ms=FAULT_TIMEOUT_MS, extra=store.extra)
    with Cluster(spec, workdir, DAEMONS) as cluster, Agents(names) as agents:
        members: list[AgentProcess] = list(agents)
        resume_file = workdir / "fault-over"
        reqs = requests(
            members,
            cluster.sockets,
            lus,
            SECONDS,
            ledger=ledger,
            ledger_every=3,
            resume_file=str(resume_file),
            resume_seconds=RESUME_DEADLINE,
        )
        for index, (agent, req) in enumerate(zip(members, reqs, strict=True)):
            home = cluster.sockets[index % DAEMONS]
            req["sockets"] = [home]  # its own host's daemon only
            agent.connect(home)  # started and connected: the run begins at once
        for agent, req in zip(members, reqs, strict=True):
            agent.send(req)
        # The fault falls a third into the run: a moment, not a synchronisation.
        time.sleep(SECONDS / 3)
        fault_at = time.monotonic()
        inject(cluster)
        back_at = time.monotonic()
        resume_file.touch()  # each client goes on until it was answered after this
        answers = [agent.receive(SECONDS + RESUME_DEADLINE + 60) for agent in members]
        history = [Operation.from_json(raw) for answer in answers for raw in answer["ops"]]
        finals = final_reads(members, cluster.sockets, [*lus, ledger])
        history += finals
        ledger_status = next(
            op
            for op in reversed(finals)
            if op.lu == ledger and op.cdb[1] == PrInAction.READ_FULL_STATUS
        )
        stderr = cluster.stop()
    # Kept for a post-mortem (qompr.testing.checker reads it back with Operation.from_json).
    dump = workdir / "history.json"
    dump.write_text(json.dumps([op.to_json() for op in history]))
    if unknown_after is not None and back_at - fault_at > unknown_after:
        retryable_may_apply = True
    report = check(history, retryable_may_apply=retryable_may_apply)
    lost, acks = ledger_lost(history, ledger, ledger_status)
    connects_failed = sum(int(a["connects_failed"]) for a in answers)
    retryable_applied = sum(
        1 for order in report.order.values() for i in order if history[i].retryable
    )
    report_line(
        name,
        report,
        faults=1,
        ledger_acks=acks,
        acknowledged_lost=lost,
        refused_connects=connects_failed,
        retryable_applied=retryable_applied,
        fault_seconds=f"{back_at - fault_at:.2f}",
        retryable_may_apply=retryable_may_apply,
    )
    assert not any("Traceback" in text for text in stderr), stderr
    return FaultRun(
        report, history, fault_at, back_at, lost, acks, connects_failed, retryable_applied
    )


def assert_resumed(run: FaultRun, initiators: set[str]) -> None:
    """Every client got acknowledged answers after the fault was over."""
    after = {op.initiator for op in run.history if op.acknowledged and op.invoked > run.back_at}
    assert after == initiators


def assert_no_wrong_kind_of_answer(run: FaultRun) -> None:
    """No HARDWARE ERROR: a store fault is answered as retryable (the checker would also
    refuse it, as no serial execution gives it; this says it plainly)."""
    for op in run.history:
        assert op.sense_code != SenseCode.TARGET_FAILURE, op.describe()


def test_kill_9_of_a_daemon_mid_run(shared_store: SharedStore, tmp_path: Path) -> None:
    def kill_and_restart(cluster: Cluster) -> None:
        cluster.kill(1)  # SIGKILL, reaped
        cluster.restart(1)  # as systemd's Restart=always would

    run = fault_run(shared_store, tmp_path, kill_and_restart, f"kill-9/{shared_store.kind}")
    assert run.acknowledged_lost == 0
    assert run.ledger_acks >= 10
    # The killed daemon's clients lost a connection: commands without an answer.
    victims = {f"vm:f{i}" for i in range(DAEMONS * CLIENTS_PER_DAEMON) if i % DAEMONS == 1}
    unanswered = {op.initiator for op in run.history if op.unanswered}
    assert unanswered and unanswered <= victims
    assert_resumed(run, {f"vm:f{i}" for i in range(DAEMONS * CLIENTS_PER_DAEMON)})
    assert_no_wrong_kind_of_answer(run)


@pytest.fixture
def postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    """A fresh PostgreSQL database (a database restart needs a database server)."""
    store = _store(request, "postgresql", tmp_path)
    yield store
    assert store.postgres is not None
    if store.postgres.running:
        store.postgres.drop_database(store.state.rsplit("/", 1)[1])


def test_database_restart_immediate_mid_run(postgres_store: SharedStore, tmp_path: Path) -> None:
    postgres = postgres_store.postgres
    assert postgres is not None

    def crash_the_database(cluster: Cluster) -> None:
        postgres.restart(mode="immediate")  # a crash and a recovery

    # A COMMIT whose connection the crash cut may have happened or not: the store reconnects
    # and looks it up, waiting for the database up to the command's deadline and one more
    # timeout, so when the database is back within a timeout every answer is the real one and
    # a retryable answer applied nothing.  Only a restart slower than that (a very loaded
    # machine) may leave an outcome unknown, answered retryable (docs/emulated.md), as a disk
    # whose acknowledgement is lost does; then a retryable answer may have applied, and
    # everything acknowledged is still held exactly.  (The margin: the store's reconnect
    # pauses, up to 0.2 s.)
    run = fault_run(
        postgres_store,
        tmp_path,
        crash_the_database,
        "pg-restart-immediate",
        unknown_after=FAULT_TIMEOUT_MS / 1000 - 0.3,
    )
    assert run.acknowledged_lost == 0
    assert run.ledger_acks >= 10
    # The daemons stayed up: every command was answered (a retryable CHECK CONDITION while
    # the database was away, held by the checker to "applied nothing").
    assert run.report.unanswered == 0
    assert_resumed(run, {f"vm:f{i}" for i in range(DAEMONS * CLIENTS_PER_DAEMON)})
    assert_no_wrong_kind_of_answer(run)
