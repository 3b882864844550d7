# SPDX-License-Identifier: MIT
"""Faulty targets (tests/validate/faulty.py) make the right check FAIL, and the LU is still
left as found."""

from __future__ import annotations

from qompr.validate import ExitStatus
from qompr.validate import Report
from qompr.validate import Status
from qompr.validate import Validator

from .conftest import MakeNodes
from .conftest import emulated


def _failed(report: Report) -> set[str]:
    return {c.id for c in report.checks if c.status is Status.FAIL}


def _left_as_found(report: Report) -> None:
    assert report.check("restored").status is Status.PASS, report.render()


def test_a_target_that_never_advances_prgeneration(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-stuck-generation")
    report = Validator(nodes, "fence_scsi").run()
    assert _failed(report) == {"generation"}, report.render()
    check = report.check("generation")
    assert check.reason == "PRgeneration stayed 0x0 across node a's REGISTER"
    assert check.hint is not None and "SPC-4" in check.hint
    assert report.exit_status is ExitStatus.FAILED
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == () and snapshot.reservation is None
    _left_as_found(report)


def test_a_target_that_refuses_write_exclusive_registrants_only(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-no-we-ro")
    report = Validator(nodes, "wsfc").run()
    assert _failed(report) == {"capabilities", "reserve"}, report.render()
    assert report.check("capabilities").reason == (
        "Write Exclusive - Registrants Only (WE_RO, 5) not advertised "
        "(types: WE EA EA_RO WE_AR EA_AR)"
    )
    reserve = report.check("reserve")
    assert reserve.reason == (
        "node a: RESERVE WE_RO answered CHECK CONDITION, ILLEGAL REQUEST, ASC/ASCQ 24h/00h "
        "(INVALID FIELD IN CDB)"
    )
    assert reserve.hint == (
        "The target refuses Write Exclusive - Registrants Only (WE_RO, 5); the cluster needs it"
    )
    assert report.check("preempt").status is Status.SKIP
    assert report.check("preempt").reason == "not run: the reservation failed"
    _left_as_found(report)


def test_the_same_target_suits_lvm_which_needs_all_registrants(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-no-we-ro")
    report = Validator(nodes, "lvmpersist").run()
    assert not report.failed, report.render()


def test_a_target_that_answers_preempt_wrongly(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-bad-preempt")
    report = Validator(nodes, "fence_scsi").run()
    assert "preempt" in _failed(report), report.render()
    preempt = report.check("preempt")
    b_key = report.nodes[1].key
    assert preempt.reason.startswith(
        f"after a's PREEMPT of 0x{b_key:x} the keys are: 2 registrations"
    )
    assert preempt.hint is not None and "fencing through it does not fence" in preempt.hint
    # The preempted node was never told: the unit attention check says so too.
    assert report.check("unit-attention").status is Status.WARN
    assert report.check("unit-attention").reason == "node b got no unit attention after a's PREEMPT"
    assert report.check("preempt-abort").status is Status.SKIP
    _left_as_found(report)
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == () and snapshot.reservation is None


def test_one_nexus_behind_a_manager_fails_distinct_nexus(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-one-port")
    report = Validator(nodes, "wsfc").run()
    assert _failed(report) == {"distinct-nexus"}, report.render()
    check = report.check("distinct-nexus")
    assert check.reason == (
        "nodes a and b are one I_T nexus: b's registration replaced a's, so a reservation one "
        "takes is held by both and neither can fence the other"
    )
    assert check.hint == "The manager gives both nodes one I_T nexus: give each --node its own name"
    assert report.check("reserve").reason == "not run: nodes a and b are one I_T nexus"
    _left_as_found(report)
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == ()


def test_two_nodes_with_one_name_are_one_nexus(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    twin = make_nodes("a")[0]
    twin.name = "c"
    report = Validator([nodes[0], twin], "fence_scsi").run()
    assert report.check("distinct-nexus").status is Status.FAIL
    assert report.check("distinct-nexus").reason.startswith("nodes a and c are one I_T nexus")
    _left_as_found(report)


def test_a_target_that_cannot_persist_through_power_loss(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-no-aptpl")
    report = Validator(nodes, "fence_scsi").run()
    check = report.check("aptpl")
    assert check.status is Status.WARN, report.render()
    assert check.reason == (
        "REGISTER with APTPL answered CHECK CONDITION, ILLEGAL REQUEST, ASC/ASCQ 26h/00h "
        "(INVALID FIELD IN PARAMETER LIST) (PTPL_C=0)"
    )
    assert check.hint is not None and "fence_scsi --aptpl" in check.hint
    assert not report.failed and report.exit_status is ExitStatus.OK
    _left_as_found(report)


def test_a_unit_attention_nobody_clears(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b", wrapper="pr-manager-test-sticky-ua")
    report = Validator(nodes, "fence_scsi").run()
    check = report.check("unit-attention")
    assert check.status is Status.FAIL, report.render()
    assert (
        check.reason == "node b got UNIT ATTENTION 4 times after a's PREEMPT: it is never cleared"
    )
    # Node b answers nothing else any more; node a puts the LU back.
    _left_as_found(report)
    snapshot = emulated(nodes[0].manager.tree).snapshot(nodes[0].fd)
    assert snapshot.registrations == () and snapshot.reservation is None
