# SPDX-License-Identifier: MIT
"""The suite against pr-manager-emulated: every profile and check, roles, keys, the LU left
as found, --skip, and a node that stops answering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qompr._compat import override
from qompr.managers import PRManager
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import ScsiResult
from qompr.validate import CHECKS
from qompr.validate import PROFILES
from qompr.validate import Answer
from qompr.validate import ExitStatus
from qompr.validate import ManagerNode
from qompr.validate import PathKind
from qompr.validate import Report
from qompr.validate import Status
from qompr.validate import Validator
from qompr.validate import manager_node
from qompr.validate import new_key

from .conftest import MakeNodes
from .conftest import emulated

PROFILE_NAMES = sorted(PROFILES)
# What a manager path cannot check: WRITEs do not go through a PR manager, and no node is a
# multipath map.
NOT_CHECKABLE = {"write-conflict", "multipath"}


def _statuses(report: Report) -> dict[str, Status]:
    return {c.id: c.status for c in report.checks}


def _register(manager: object, fd: int, who: str, key: int, *, aptpl: bool = False) -> None:
    assert isinstance(manager, PRManager)
    params = PrOutParameters(sa_key=key, aptpl=aptpl).to_bytes()
    cdb = PrOutCdb(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, PrScope.LU_SCOPE, 0, 24)
    assert manager.execute(fd, cdb.to_bytes(), params, nexus=Nexus(who)).ok


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_check_passes_on_the_emulated_lio_target(
    make_nodes: MakeNodes, profile: str, count: int
) -> None:
    nodes = make_nodes(*"abc"[:count])
    report = Validator(nodes, profile).run()
    statuses = _statuses(report)
    assert [c.id for c in report.checks] == list(PROFILES[profile].checks)
    assert {name for name, s in statuses.items() if s is not Status.PASS} == NOT_CHECKABLE, (
        report.render()
    )
    assert report.exit_status is ExitStatus.OK
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == () and snapshot.reservation is None
    assert not snapshot.aptpl


def test_spc4_mode_passes_too(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", "c", mode="spc4")
    report = Validator(nodes, "fence_scsi").run()
    assert not report.failed and report.count(Status.WARN) == 0, report.render()


def test_profiles_play_their_own_sequence(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    wsfc = Validator(nodes, "wsfc").run()
    fence = Validator(nodes, "fence_scsi").run()
    lvm = Validator(nodes, "lvmpersist").run()
    runs = {"wsfc": wsfc, "fence": fence, "lvm": lvm}
    sent = {name: [c.command for c in run.commands] for name, run in runs.items()}
    # wsfc registers with REGISTER, the Linux tools with REGISTER AND IGNORE EXISTING KEY.
    assert any(c.startswith("PR OUT REGISTER RK=0x0 SARK=") for c in sent["wsfc"])
    assert not any("IGNORE EXISTING KEY RK=0x0 SARK=0x716f" in c for c in sent["wsfc"][:8])
    assert any("REGISTER AND IGNORE EXISTING KEY RK=0x0" in c for c in sent["fence"][:12])
    # Types: registrants only for wsfc and fence_scsi, all registrants for lvmpersist.
    assert any(c.startswith("PR OUT RESERVE WE_RO") for c in sent["wsfc"])
    assert any(c.startswith("PR OUT RESERVE WE_AR") for c in sent["lvm"])
    # Only the Linux tools fence with PREEMPT AND ABORT.
    assert not any("PREEMPT AND ABORT" in c for c in sent["wsfc"])
    assert any(c.startswith("PR OUT PREEMPT AND ABORT WE_RO") for c in sent["fence"])
    assert any(c.startswith("PR OUT PREEMPT AND ABORT WE_AR") for c in sent["lvm"])
    # The challenger takes the disk in wsfc; the holder fences in the others.
    assert wsfc.check("preempt").reason.startswith("b removed a's key")
    assert fence.check("preempt").reason.startswith("a removed b's key")
    assert wsfc.check("unit-attention").reason == (
        "node a got REGISTRATIONS PREEMPTED once after b's PREEMPT"
    )
    assert "WE_AR held by a" in lvm.check("read-reservation").reason


def test_keys_are_fresh_and_marked(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", "c")
    report = Validator(nodes, "wsfc").run()
    keys = [n.key for n in report.nodes]
    assert len(set(keys)) == 3
    assert all(k is not None and k >> 32 == 0x716F6D70 for k in keys)
    assert new_key({0x716F6D70_00000001}) != 0x716F6D70_00000001


def test_given_keys_are_used(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    report = Validator(nodes, "fence_scsi", keys=[0xA, 0xB]).run()
    assert [n.key for n in report.nodes] == [0xA, 0xB]
    assert any("SARK=0xb" in c.command for c in report.commands)
    assert not report.failed


def test_report_json_and_table(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    report = Validator(nodes, "wsfc").run()
    data = json.loads(report.dumps())
    assert data["profile"] == "wsfc" and data["exit_status"] == 0
    assert [c["id"] for c in data["checks"]] == list(PROFILES["wsfc"].checks)
    assert data["summary"] == {"PASS": 15, "WARN": 0, "FAIL": 0, "SKIP": 2}
    assert data["nodes"][0]["path"] == "manager" and data["nodes"][0]["key"].startswith("0x716f")
    assert all({"node", "command", "elapsed_ms", "answer"} <= c.keys() for c in data["commands"])
    text = report.render()
    assert "CHECK             RESULT  REASON" in text
    assert "17 checks: 15 PASS, 0 WARN, 0 FAIL, 2 SKIP" in text
    assert "note: wsfc approximates Windows' validation" in text
    assert set(CHECKS) >= set(PROFILES["fence_scsi"].checks)


def test_skip_leaves_out_a_check_and_what_needs_it(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    report = Validator(nodes, "fence_scsi", skip=["preempt-abort"]).run()
    assert report.check("preempt-abort").status is Status.SKIP
    assert report.check("preempt-abort").reason == "skipped on request (--skip)"
    assert not any("PREEMPT AND ABORT" in c.command for c in report.commands)
    assert report.exit_status is ExitStatus.OK
    report = Validator(nodes, "fence_scsi", skip=["reserve"]).run()
    for check in ("reserve", "read-reservation", "preempt", "release", "preempt-abort"):
        assert report.check(check).status is Status.SKIP, check
    assert report.check("preempt").reason == "not run: needs 'reserve', which was skipped"
    assert not any("RESERVE" in c.command for c in report.commands)
    assert report.check("clear").status is Status.PASS
    with pytest.raises(ValueError, match="cannot skip: restored"):
        Validator(nodes, "wsfc", skip=["restored"])


def test_the_lu_keeps_ptpl_a_as_found(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    manager = emulated(nodes[0].manager.tree)
    # Someone registered with APTPL and left with APTPL: no registrations, PTPL_A=1.
    _register(manager, nodes[0].fd, "x", 0x99, aptpl=True)
    params = PrOutParameters(reservation_key=0x99, aptpl=True).to_bytes()
    cdb = PrOutCdb(PrOutAction.REGISTER, PrScope.LU_SCOPE, 0, 24).to_bytes()
    assert manager.execute(nodes[0].fd, cdb, params, nexus=Nexus("x")).ok
    assert manager.snapshot(nodes[0].fd).aptpl
    report = Validator(nodes, "fence_scsi").run()
    assert not report.failed, report.render()
    after = manager.snapshot(nodes[0].fd)
    assert after.aptpl and after.registrations == ()
    assert report.check("restored").reason == "no registrations and no reservation, as found"


def test_a_node_that_stops_answering_ends_the_run_and_the_lu_is_restored(
    make_nodes: MakeNodes, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    nodes = make_nodes("a", "b", wrapper=None)
    tree = nodes[0].manager.tree
    pause = tree.object_add("pr-manager-test-pause", "p", target="e", marker=str(marker))
    assert isinstance(pause, PRManager)
    paused = [manager_node(n.name, pause, n.device or "", nexus=n.nexus) for n in nodes]
    try:
        report = Validator(paused, "fence_scsi", timeout=0.2).run()
    finally:
        marker.unlink(missing_ok=True)  # let the held PREEMPT go
        for node in paused:
            node.close()
    assert report.check("preempt").status is Status.FAIL
    reason = report.check("preempt").reason
    assert "node a's PREEMPT got no answer (no answer within 5.2 s)" in reason
    assert report.check("latency").status is Status.FAIL
    for check in ("release", "clear", "preempt-abort"):
        assert report.check(check).status is Status.SKIP
        assert report.check(check).reason.startswith("not run: node a's PREEMPT got no answer")
    # Node a never answered again; b cleared what the run had left.
    assert report.check("restored").status is Status.PASS, report.render()
    assert report.exit_status is ExitStatus.FAILED


def test_an_interrupt_in_a_command_restores_the_lu(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")

    class Interrupting:
        calls = 0

    real = nodes[1].manager.execute

    def execute(
        fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        # The third command of node b after the reservation: mid-run.
        if cdb[0] == 0x5F and cdb[1] & 0x1F == PrOutAction.RESERVE:
            Interrupting.calls += 1
        if Interrupting.calls and cdb[0] == 0x5E and nexus == Nexus("b"):
            Interrupting.calls = 0
            raise KeyboardInterrupt
        return real(fd, cdb, data, nexus=nexus)

    nodes[1].manager.execute = execute  # type: ignore[method-assign]
    try:
        report = Validator(nodes, "wsfc").run()
    finally:
        del nodes[1].manager.execute
    assert report.interrupted and report.exit_status is ExitStatus.INTERRUPTED
    assert report.check("reserve").status is Status.PASS
    assert report.check("restored").status is Status.PASS, report.render()
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == () and snapshot.reservation is None
    assert "interrupted" in report.render()


def test_validator_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least two nodes"):
        Validator([], "wsfc")


class _Writing(ManagerNode):
    """A node whose write probe answers as a device would: RESERVATION CONFLICT unless the
    node is registered (these profiles' types let registrants write), or always GOOD for a
    target that does not enforce reservations."""

    enforced = True

    @override
    def write_probe(self, timeout: float, *, shield: bool = False) -> Answer | None:
        snapshot = emulated(self.manager.tree).snapshot(self.fd)
        registered = self.nexus in {who for who, _ in snapshot.registrations}
        if self.enforced and not registered:
            return Answer(ScsiResult.conflict(), 0.001)
        return Answer(ScsiResult.good(), 0.001)


@pytest.mark.parametrize("enforced", [True, False])
def test_write_conflict(make_nodes: MakeNodes, enforced: bool) -> None:
    nodes = []
    for node in make_nodes("a", "b"):
        fd = os.dup(node.fd)
        writing = _Writing(node.name, PathKind.DEVICE, "fake", node.manager, fd, nexus=node.nexus)
        writing.enforced = enforced
        nodes.append(writing)
    try:
        report = Validator(nodes, "fence_scsi").run()
    finally:
        for node in nodes:
            node.close()
    check = report.check("write-conflict")
    if enforced:
        assert (check.status, check.reason) == (
            Status.PASS,
            "b's WRITE: RESERVATION CONFLICT; a's: GOOD",
        )
    else:
        assert check.status is Status.FAIL
        assert check.reason == (
            "node b's WRITE after being preempted answered GOOD, not RESERVATION CONFLICT"
        )
        assert check.hint is not None and check.hint.startswith("A fenced node can still write")
    assert report.check("restored").status is Status.PASS
