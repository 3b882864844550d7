# SPDX-License-Identifier: MIT
"""pr-manager-forward answers like LIO: qompr's conformance scenarios, sent through it.

``conformance_test`` (qompr.testing.conformance) runs every scenario that applies to a
pr-manager against a fresh ``pr-manager-forward`` over ``pr-manager-emulated``: each
initiator's commands go through the forwarder with its own I_T nexus and must come back as
LIO answers them.  The same from the command line, with the plugin installed::

    pytest -p qompr.testing.conformance -m qompr_conformance --qompr-plugin forward \\
        --qompr-object 'pr-manager-emulated,id=backend,target-ports=2' \\
        --qompr-object 'pr-manager-forward,id=under-test,target=backend' \\
        --qompr-target-ports 2
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import qompr_forward
from qompr_forward import PRManagerForward

from qompr.testing.conformance import Conformance
from qompr.testing.conformance import conformance_test
from qompr.testing.scenario import run

PLUGIN = Path(__file__).resolve().parents[1]
OBJECTS = (
    "pr-manager-emulated,id=backend,target-ports=2",
    "pr-manager-forward,id=under-test,target=backend",
)
CONFORMANCE = Conformance(OBJECTS, manager="under-test", plugins=[qompr_forward], target_ports=2)

test_forward_answers_like_lio = conformance_test(
    *OBJECTS, manager="under-test", plugins=[qompr_forward], target_ports=2
)


def test_most_scenarios_apply_to_a_forwarder() -> None:
    """Only scenarios that need commands no pr-manager carries (READ, WRITE, SPC-2
    RESERVE...) are left out, each with its reason."""
    assert len(CONFORMANCE.scenarios()) >= 80
    for exclusion in CONFORMANCE.exclusions():
        assert "which no pr-manager carries" in exclusion.reason, exclusion


def test_every_command_goes_through_the_forwarder() -> None:
    scenario = next(s for s in CONFORMANCE.scenarios() if s.id == "preempt-other-registrant")
    with CONFORMANCE.target(scenario) as target:
        assert isinstance(target.manager, PRManagerForward)
        steps = run(scenario, target, "lio")
        tur_steps = sum(1 for step in scenario.steps("lio") if step.do == "tur")
        # The runner's READ KEYS probe, then every PR IN/OUT step; TEST UNIT READY is
        # passed to the target without a log line.
        assert target.manager.commands == 1 + steps - tur_steps


def test_the_command_line_of_the_docs(tmp_path: Path) -> None:
    """docs/testing.md's command, with the plugin pip-installed (its entry point found)."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", "--target", str(site), str(PLUGIN)],
        check=True,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "QOMPR_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "qompr.testing.conformance",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-m", "qompr_conformance", "--qompr-plugin", "forward",
         "--qompr-object", OBJECTS[0], "--qompr-object", OBJECTS[1],
         "--qompr-target-ports", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = len(CONFORMANCE.scenarios())
    assert f"{count} scenarios apply to pr-manager-forward 'under-test'" in proc.stdout
    assert f"{count} passed" in proc.stdout
