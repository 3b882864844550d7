# SPDX-License-Identifier: MIT
"""The conformance kit: it passes a manager that answers like LIO, fails one that does not,
and says clearly when the objects under test cannot be made."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qompr import hookimpl
from qompr.managers import DelegatingPRManager
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import Object
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.testing.conformance import Conformance
from qompr.testing.conformance import ConformanceSetupError
from qompr.testing.scenario import ScenarioStepError
from qompr.testing.scenario import load_all


class PRManagerOneInitiator(DelegatingPRManager, qom_type="pr-manager-one-initiator"):
    """A broken wrapper: it drops the I_T nexus, so every initiator becomes one."""

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        return super().run(fd, cdb, data, nexus=None)


class BrokenPlugin:
    @hookimpl
    def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
        register(PRManagerOneInitiator)


EMULATED = Conformance(["pr-manager-emulated,id=e"])


def _failures(conformance: Conformance) -> list[str]:
    failed = []
    for scenario in conformance.scenarios():
        try:
            conformance.run(scenario)
        except ScenarioStepError as exc:
            failed.append(str(exc))
    return failed


def test_the_emulated_engine_passes_every_applicable_scenario() -> None:
    assert len(EMULATED.scenarios()) >= 80
    assert _failures(EMULATED) == []


def test_scenarios_that_do_not_apply_say_why() -> None:
    reasons = {e.scenario.id: e.reason for e in EMULATED.exclusions()}
    reads = [s for s in load_all() if any(step.do == "read10" for step in s.steps("lio"))]
    assert reads
    assert all(
        "READ_10" in reasons[s.id] and "no pr-manager carries" in reasons[s.id] for s in reads
    )
    two_ports = [s for s in load_all() if s.ports == 2 and s.id in reasons]
    assert two_ports
    assert all("target ports" in reasons[s.id] or "carries" in reasons[s.id] for s in two_ports)
    assert len(EMULATED.scenarios()) + len(reasons) == len(load_all())
    wider = Conformance(["pr-manager-emulated,id=e,target-ports=2"], target_ports=2)
    assert len(wider.scenarios()) > len(EMULATED.scenarios())
    assert _failures(wider) == []


def test_a_manager_that_answers_by_the_letter_of_spc4_fails() -> None:
    failed = _failures(Conformance(["pr-manager-emulated,id=e,mode=spc4"]))
    assert len(failed) >= 10
    assert any("RESERVATION_CONFLICT" in f for f in failed)


def test_a_wrapper_that_loses_the_initiator_fails() -> None:
    conformance = Conformance(
        ["pr-manager-emulated,id=e", "pr-manager-one-initiator,id=w,target=e"],
        plugins=[BrokenPlugin()],
    )
    assert conformance.check() == "pr-manager-one-initiator 'w'"
    failed = _failures(conformance)
    assert len(failed) >= 20
    scenario = next(s for s in conformance.scenarios() if s.id == "preempt-other-registrant")
    with pytest.raises(ScenarioStepError, match="preempt-other-registrant step"):
        conformance.run(scenario)


def test_tmp_is_each_scenarios_own_directory() -> None:
    conformance = Conformance(["pr-manager-emulated,id=e,state={tmp}/pr.db"])
    scenario = conformance.scenarios()[0]
    with conformance.target(scenario) as target:
        assert isinstance(target.manager, PRManagerEmulated)
        state = Path(target.manager.state)
        assert state.name == "pr.db" and state.exists()
    assert not state.exists()
    assert conformance.run(scenario) > 0


@pytest.mark.parametrize(
    ("objects", "manager", "message"),
    [
        (["pr-manager-emulated"], None, r"-object pr-manager-emulated: Parameter 'id' is missing"),
        (["pr-manager-emulated,id=e"], "x", "No persistent reservation manager with id 'x'"),
        (["pr-manager-emulated,id=e,help"], None, "asked for help"),
        (["pr-manager-forward,id=f,target=e"], None, "does not accept value"),
    ],
)
def test_setup_errors_are_clear(objects: list[str], manager: str | None, message: str) -> None:
    with pytest.raises(ConformanceSetupError, match=message):
        Conformance(objects, manager=manager).check()


def test_no_objects_is_an_error() -> None:
    with pytest.raises(ConformanceSetupError, match="no object to test"):
        Conformance([])


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest with the plugin, in an empty directory (no tests but the scenarios)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "qompr.testing.conformance",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def test_the_pytest_plugin_runs_the_scenarios(tmp_path: Path) -> None:
    proc = _pytest(
        tmp_path, "--qompr-object", "pr-manager-emulated,id=e", "-m", "qompr_conformance"
    )
    count = len(EMULATED.scenarios())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"qompr conformance (lio): {count} scenarios apply to pr-manager-emulated 'e'" in (
        proc.stdout
    )
    assert f"{count} passed" in proc.stdout


def test_the_pytest_plugin_reports_the_first_difference(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--qompr-object", "pr-manager-emulated,id=e,mode=spc4", "-x", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED qompr-conformance::" in proc.stdout
    assert "expected" in proc.stdout
    assert "Traceback" not in proc.stdout  # the step's difference, not the runner's stack


def test_the_pytest_plugin_refuses_a_bad_setup_at_once(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--qompr-object", "pr-manager-emulated,id=e", "--qompr-plugin", "x")
    assert proc.returncode == 4  # pytest's usage error
    assert "qompr conformance: cannot load the plugins" in proc.stderr
    assert "'qompr': x" in proc.stderr
