# SPDX-License-Identifier: MIT
"""``pr-manager-emulated`` against real LIO: every conformance scenario, replayed in one boot.

The module fixture boots the bed once (``paths=3``) and runs
:func:`tests.vm.lio_scenarios.guest_main` in the guest: every scenario of
``qompr/testing/scenarios/*.toml`` (its ``lio`` steps) against the LIO LUN, one tcm_loop
path per initiator and target port, recording each step's status, sense bytes and data-in
(see ``tests/vm/lio_scenarios.py`` for the topology, the reset between scenarios and why
PREEMPT AND ABORT runs last).  Then, per scenario (test ids are the scenario ids):

* ``test_lio_answers_like_the_engine``: ``pr-manager-emulated`` (mode ``lio``) given the same
  steps answers every step with the same status, the same sense key/ASC/ASCQ, and the same
  PR IN data, PRgeneration taken relative to the scenario's start and RELATIVE TARGET PORT
  IDENTIFIERs mapped back to (initiator, port index); REQUEST SENSE data is compared by its
  sense key/ASC/ASCQ.  Both sides use tcm_loop's SAS TransportIDs, so those bytes compare
  exactly.  Data of other commands (INQUIRY, READ ...) is the medium's, not compared.
* ``test_lio_meets_the_scenario``: LIO's answers satisfy the scenario's own expectations, so
  a wrong expectation is caught as well as a wrong engine.

Scenarios whose PREEMPT AND ABORT is expected to succeed cannot be answered by LIO on this
kernel (the LU deadlocks, see ``test_preempt_and_abort_deadlocks_lio``).  They are not in
the two tests above; ``test_lio_answers_like_the_engine_up_to_the_hang`` compares the steps
LIO answered before the hang (both ways) and checks that LIO stopped exactly at the PREEMPT
AND ABORT.  In full they stay checked against the engine in ``tests/managers/emulated``.
"""

from __future__ import annotations

from typing import Any

import pytest

from qompr.testing.scenario import Scenario
from qompr.testing.scenario import load_all

from .lio_scenarios import HANG_TIMEOUT
from .lio_scenarios import INITIATORS
from .lio_scenarios import RESULT
from .lio_scenarios import LioRecord
from .lio_scenarios import check_expectations
from .lio_scenarios import compare_with_engine
from .lio_scenarios import expects_preempt_and_abort_to_succeed
from .lio_scenarios import preempt_and_abort_steps
from .vmbed import run_in_vm

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

SCENARIOS = load_all()
SCENARIOS_BY_ID = {s.id: s for s in SCENARIOS}
#: Scenarios with a PREEMPT AND ABORT that should succeed: LIO hangs there.
HANGS = frozenset(s.id for s in SCENARIOS if expects_preempt_and_abort_to_succeed(s))
CASES = [pytest.param(s, id=s.id) for s in SCENARIOS if s.id not in HANGS]
HANG_CASES = [pytest.param(s, id=s.id) for s in SCENARIOS if s.id in HANGS]
GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.lio_scenarios as m; m.guest_main()'
"""
#: The guest's replay of ~120 scenarios takes ~7 s under TCG; far more means a stall.
GUEST_SECONDS_LIMIT = 60.0


@pytest.fixture(scope="module")
def lio() -> LioRecord:
    """One boot: every scenario on LIO, recorded."""
    result = run_in_vm(GUEST_SCRIPT, paths=3, timeout=300).check()
    return LioRecord.from_json(result.json(RESULT))


def _recorded(lio: LioRecord, scenario: Scenario) -> dict[str, Any]:
    record = dict(lio.scenarios[scenario.id])
    if "crashed" in record:
        pytest.fail(f"the replay of {scenario.id} crashed in the guest: {record['crashed']}")
    if "not_run" in record and scenario.id not in HANGS:
        pytest.fail(f"{scenario.id} was not replayed on LIO: {record['not_run']}")
    if "reset" in record and not record["reset"]["ok"]:
        pytest.fail(f"the LU was not clean before {scenario.id}: {record['reset']['log']}")
    return record


@pytest.mark.parametrize("scenario", CASES)
def test_lio_answers_like_the_engine(lio: LioRecord, scenario: Scenario) -> None:
    record = _recorded(lio, scenario)
    differences = compare_with_engine(scenario, record, lio.target())
    assert not differences, f"{scenario.file}:{scenario.id}: LIO ≠ engine\n" + "\n".join(
        differences
    )
    assert len(record["steps"]) == len(list(scenario.steps("lio")))


@pytest.mark.parametrize("scenario", CASES)
def test_lio_meets_the_scenario(lio: LioRecord, scenario: Scenario) -> None:
    record = _recorded(lio, scenario)
    failures = check_expectations(scenario, record, lio.target())
    assert not failures, "LIO does not meet the scenario:\n" + "\n".join(failures)
    assert len(record["steps"]) == len(list(scenario.steps("lio")))


@pytest.mark.parametrize("scenario", HANG_CASES)
def test_lio_answers_like_the_engine_up_to_the_hang(lio: LioRecord, scenario: Scenario) -> None:
    """LIO (Linux 6.1) deadlocks on a successful PREEMPT AND ABORT: the steps before it are
    compared both ways; LIO must have stopped exactly there (or, once the LU hung in an
    earlier scenario, not have run this one at all)."""
    record = _recorded(lio, scenario)
    if "not_run" in record:
        assert "hung" in record["not_run"], record["not_run"]
        assert not record["steps"]
        return
    first = preempt_and_abort_steps(scenario)[0].index
    hung = record.get("hung")
    assert hung is not None, (
        f"LIO answered every step of {scenario.id}, PREEMPT AND ABORT included: "
        "move it back to the full comparison"
    )
    assert hung["step"] == first, hung
    assert [step["index"] for step in record["steps"]] == list(range(1, first))
    differences = compare_with_engine(scenario, record, lio.target())
    assert not differences, "\n".join(differences)
    failures = check_expectations(scenario, record, lio.target())
    assert not failures, "\n".join(failures)


def test_every_scenario_is_recorded(lio: LioRecord) -> None:
    assert set(lio.scenarios) == {s.id for s in SCENARIOS}
    assert not [k for k, v in lio.scenarios.items() if "crashed" in v]
    unanswered = {k for k, v in lio.scenarios.items() if "hung" in v or "not_run" in v}
    assert unanswered <= HANGS
    assert len(HANGS) <= 2  # the exclusion stays narrow


def test_the_bed_has_one_target_port_per_initiator_and_port(lio: LioRecord) -> None:
    paths = {(p["initiator"], p["port"]): p for p in lio.paths}
    assert set(paths) == {(name, port) for name in INITIATORS for port in (1, 2)}
    rtpis = [p["rtpi"] for p in lio.paths]
    assert len(set(rtpis)) == len(rtpis)  # with tcm_loop every path is its own target port
    # The same initiator WWN through both of its tcm_loop targets, each with an explicit ACL.
    for name, index in INITIATORS.items():
        wwn = f"naa.500140500000b{index:03x}"
        assert {f"{paths[(name, port)]['target']} {wwn}" for port in (1, 2)} <= set(
            lio.explicit_acls
        )
    assert lio.kernel.startswith("6.1.")


def test_preempt_and_abort_deadlocks_lio(lio: LioRecord) -> None:
    """A successful PREEMPT AND ABORT hangs LIO: the LUN reset it starts waits for itself.

    The refused ones (wrong key, unknown key, SARK=0, bad TYPE or SCOPE) are answered: the
    hang is the reset, which only a successful one starts.
    """
    refused = lio.scenarios["preempt-and-abort-refused"]
    assert "hung" not in refused
    steps = SCENARIOS_BY_ID["preempt-and-abort-refused"].steps("lio")
    assert len(refused["steps"]) == len(list(steps))
    hung = [(k, v["hung"]) for k, v in lio.scenarios.items() if "hung" in v]
    assert len(hung) == 1, hung
    scenario_id, where = hung[0]
    step = next(s for s in SCENARIOS_BY_ID[scenario_id].steps("lio") if s.index == where["step"])
    assert step.do == "preempt_and_abort"
    assert where["after_s"] == HANG_TIMEOUT
    waits = where["kernel_waits"]
    worker = [w for w in waits if "target_submission" in w["comm"]]
    assert worker, waits
    assert any("flush_work" in w["stack"] and "core_tmr_lun_reset" in w["stack"] for w in worker), (
        worker
    )


def test_the_replay_is_quick(lio: LioRecord) -> None:
    assert lio.seconds < GUEST_SECONDS_LIMIT
