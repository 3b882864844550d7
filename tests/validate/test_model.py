# SPDX-License-Identifier: MIT
"""The pieces under the suite: check outcomes, answers, bounded waits, the multipath check."""

from __future__ import annotations

import threading
from typing import cast

import pytest

from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.validate import Answer
from qompr.validate import NodeInfo
from qompr.validate import PathKind
from qompr.validate import Report
from qompr.validate import Status
from qompr.validate import Validator
from qompr.validate._model import CheckBook
from qompr.validate._nodes import _wait
from qompr.validate._nodes import _Worker

from .conftest import MakeNodes


def test_a_check_reports_its_worst_observation() -> None:
    book = CheckBook(["register", "generation", "latency"])
    book.passed("register", "a registered")
    book.warn("register", "b slow", "look")
    book.passed("register", "c registered")
    book.fail("generation", "stuck", "vendor")
    book.passed("generation", "moved later")
    book.skip("generation", "ignored: observed already")
    book.passed("latency", "first")
    book.summary("latency", "the summary")
    book.add("not-in-profile", Status.FAIL, "ignored")
    results = {r.id: r for r in book.results()}
    assert (results["register"].status, results["register"].reason) == (Status.WARN, "b slow")
    assert (results["generation"].status, results["generation"].hint) == (Status.FAIL, "vendor")
    assert results["latency"].reason == "the summary"
    assert list(results) == ["register", "generation", "latency"]


def test_render_shows_hints_only_for_warn_and_fail() -> None:
    book = CheckBook(["capabilities", "register"])
    book.passed("capabilities", "fine")
    book.fail("register", "refused", "do this")
    report = Report(
        "wsfc", (NodeInfo("a", "device", "/dev/sdb (SG_IO)", 0xA),), tuple(book.results())
    )
    assert report.render() == (
        "qompr validate: profile wsfc, 1 nodes\n"
        "  node a: /dev/sdb (SG_IO), key 0xa\n"
        "\n"
        "CHECK         RESULT  REASON\n"
        "capabilities  PASS    fine\n"
        "register      FAIL    refused\n"
        "                      hint: do this\n"
        "\n"
        "2 checks: 1 PASS, 0 WARN, 1 FAIL, 0 SKIP\n"
    )
    assert report.exit_status == 1


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (Answer(ScsiResult.good(), 0.0), "GOOD"),
        (Answer(ScsiResult.conflict(), 0.0), "RESERVATION CONFLICT"),
        (
            Answer(ScsiResult.check(SenseCode.REGISTRATIONS_PREEMPTED), 0.0),
            "CHECK CONDITION, UNIT ATTENTION, ASC/ASCQ 2Ah/05h (REGISTRATIONS PREEMPTED)",
        ),
        (Answer(ScsiResult(ScsiStatus.CHECK_CONDITION, b"\x70"), 0.0), "CHECK CONDITION"),
        (Answer(None, 5.0, "no answer within 5 s", timed_out=True), "no answer within 5 s"),
    ],
)
def test_answers_in_words(answer: Answer, text: str) -> None:
    assert answer.describe() == text


def test_wedged_answers() -> None:
    assert Answer(None, 1.0, "x", timed_out=True).wedged
    assert Answer(ScsiResult.check(SenseCode.COMMAND_TIMEOUT), 1.0).wedged
    assert not Answer(ScsiResult.check(SenseCode.LUN_COMM_FAILURE), 1.0).wedged
    ua = Answer(ScsiResult.check(SenseCode.RESERVATIONS_RELEASED), 0.0).unit_attention
    assert ua == SenseCode.RESERVATIONS_RELEASED


def test_a_worker_waits_a_bounded_time_and_refuses_while_busy() -> None:
    release = threading.Event()
    worker = _Worker("test")
    assert worker.call(lambda: release.wait(30), 0.05, shield=False) == (None, "timeout")
    assert worker.call(lambda: 1, 1.0, shield=False) == (
        None,
        "the previous command on this node never finished",
    )
    release.set()
    assert worker.settle(10)
    assert worker.call(lambda: 2, 10, shield=False) == (2, "")


class _InterruptedOnce:
    """An event whose first wait is interrupted by a KeyboardInterrupt."""

    def __init__(self) -> None:
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits == 1:
            raise KeyboardInterrupt
        return True


@pytest.mark.parametrize("shield", [True, False])
def test_a_shielded_wait_ends_before_the_interrupt_follows(shield: bool) -> None:
    """The clean-up's commands wait through a KeyboardInterrupt, which follows afterwards."""
    event = _InterruptedOnce()
    with pytest.raises(KeyboardInterrupt):
        _wait(cast(threading.Event, event), 1.0, shield=shield)
    assert event.waits == (2 if shield else 1)


def test_multipath_findings_fail_with_the_doctors_hint(
    make_nodes: MakeNodes, tmp_path: object
) -> None:
    """A node on a multipath map whose set-up is incomplete (here: not even a map)."""
    nodes = make_nodes("a", "b")
    nodes[0].kind = PathKind.MULTIPATH
    report = Validator(nodes, "wsfc", multipath_conf="/nonexistent/multipath.conf").run()
    check = report.check("multipath")
    assert check.status is Status.FAIL
    assert check.reason.startswith(f"node a ({nodes[0].device}): ")
    assert check.hint
    assert report.check("restored").status is Status.PASS
