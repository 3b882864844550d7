# SPDX-License-Identifier: MIT
"""The conformance scenarios (``qompr/testing/scenarios/*.toml``) against the emulated engine.

Every scenario runs in each mode it applies to, with the state in memory and in an SQLite
file, so both stores are held to the same answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import qompr.testing.scenario as scenario_module
from qompr.qom import ObjectTree
from qompr.testing.scenario import EXPECTATIONS
from qompr.testing.scenario import PR_IN_COMMANDS
from qompr.testing.scenario import PR_OUT_COMMANDS
from qompr.testing.scenario import Scenario
from qompr.testing.scenario import ScenarioFormatError
from qompr.testing.scenario import ScenarioStepError
from qompr.testing.scenario import load_all
from qompr.testing.scenario import load_file
from qompr.testing.scenario import run

from .harness import EmulatedTarget
from .harness import new_manager

SCENARIOS = load_all()
CASES = [
    pytest.param(scenario, mode, id=f"{scenario.id}-{mode}")
    for scenario in SCENARIOS
    for mode in scenario.modes
]


@pytest.mark.parametrize(("scenario", "mode"), CASES)
def test_scenario_in_memory(tree: ObjectTree, scenario: Scenario, mode: str) -> None:
    manager = new_manager(tree, mode=mode, target_ports=scenario.ports)
    target = EmulatedTarget(manager, scenario.initiators, scenario.ports)
    assert run(scenario, target, mode) > 0


@pytest.mark.parametrize(("scenario", "mode"), CASES)
def test_scenario_with_state_file(
    tree: ObjectTree, tmp_path: Path, scenario: Scenario, mode: str
) -> None:
    manager = new_manager(
        tree,
        mode=mode,
        target_ports=scenario.ports,
        state=str(tmp_path / "pr.db"),
        state_sync="normal",
    )
    target = EmulatedTarget(manager, scenario.initiators, scenario.ports)
    assert run(scenario, target, mode) > 0


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 60
    # Count the initiators the steps really use, not the ones declared.
    multi = [s for s in SCENARIOS if len({step.initiator for step in s.steps("lio")}) >= 2]
    assert len(multi) >= 60


def test_every_service_action_and_type_is_covered() -> None:
    used_commands: set[str] = set()
    used_types: set[str] = set()
    for scenario in SCENARIOS:
        for step in scenario.steps("lio"):
            used_commands.add(step.do)
            pr_type = step.params.get("type")
            if isinstance(pr_type, str):
                used_types.add(pr_type)
    assert set(PR_OUT_COMMANDS) <= used_commands
    assert set(PR_IN_COMMANDS) <= used_commands
    assert {"WE", "EA", "WE_RO", "EA_RO", "WE_AR", "EA_AR"} <= used_types


def test_both_modes_have_mode_specific_expectations() -> None:
    overridden = {
        mode
        for scenario in SCENARIOS
        for raw in scenario.raw_steps
        for mode in ("lio", "spc4")
        if mode in raw
    }
    assert overridden == {"lio", "spc4"}


def test_a_wrong_expectation_fails(tree: ObjectTree, tmp_path: Path) -> None:
    """The runner really compares: a scenario expecting the wrong answer fails."""
    path = tmp_path / "bad.toml"
    path.write_text(
        "[[scenario]]\n"
        'id = "bad"\n'
        "step = [\n"
        '  { as = "A", do = "register", sark = 5 },\n'
        '  { as = "A", do = "read_keys", keys = [6] },\n'
        "]\n"
    )
    (scenario,) = load_file(path)
    target = EmulatedTarget(new_manager(tree), scenario.initiators, 1)
    with pytest.raises(ScenarioStepError, match=r"bad step 2 .*keys"):
        run(scenario, target, "lio")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ('{ as = "A", do = "fly" }', "unknown command"),
        ('{ as = "Z", do = "tur" }', "initiators"),
        ('{ as = "A", do = "tur", colour = 1 }', "unknown step keys"),
        ('{ as = "A", do = "tur", sense = "NOPE" }', "unknown sense"),
        ('{ as = "A", do = "tur", lio = { colour = 1 } }', "override"),
        ('{ as = "A", do = "tur", port = 2 }', "port"),
    ],
)
def test_format_errors_are_caught(tmp_path: Path, step: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[[scenario]]\nid = "x"\nstep = [ {step} ]\n')
    with pytest.raises(ScenarioFormatError, match=message):
        load_file(path)


def test_expectation_names_are_documented() -> None:
    doc = Path(scenario_module.__file__).read_text()
    for name in EXPECTATIONS:
        assert f'"{name}"' in doc
