# SPDX-License-Identifier: MIT
"""Safe on a live LUN: refusal without --force (the LU untouched), --force running only what
leaves others alone, and SIGINT / SIGTERM in the middle of a run (the LU restored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pluggy
import pytest

from qompr.cli import validate as cli
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.validate import ExitStatus
from qompr.validate import Status
from qompr.validate import Validator

from .conftest import MakeNodes
from .conftest import emulated

RUNNER = Path(__file__).with_name("run_validate.py")


def _out(
    manager: PRManagerEmulated,
    fd: int,
    who: str,
    action: PrOutAction,
    *,
    type_: int = 0,
    rk: int = 0,
    sark: int = 0,
) -> None:
    params = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
    cdb = PrOutCdb(action, PrScope.LU_SCOPE, type_, len(params)).to_bytes()
    assert manager.execute(fd, cdb, params, nexus=Nexus(who)).ok


def _in_use(manager: PRManagerEmulated, fd: int) -> None:
    """Another cluster's state: two registrations, one holding Write Exclusive."""
    _out(manager, fd, "x", PrOutAction.REGISTER, sark=0x11)
    _out(manager, fd, "y", PrOutAction.REGISTER, sark=0x22)
    _out(manager, fd, "x", PrOutAction.RESERVE, type_=PrType.WE, rk=0x11)


def test_a_lu_in_use_is_refused_and_untouched(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    manager = emulated(nodes[0].manager.tree)
    _in_use(manager, nodes[0].fd)
    before = manager.snapshot(nodes[0].fd)
    report = Validator(nodes, "fence_scsi").run()
    assert report.exit_status is ExitStatus.REFUSED
    assert report.refused is not None
    assert report.refused.startswith(
        "node a sees 2 registrations (keys 0x11, 0x22) and a reservation (Write Exclusive (WE, "
        "1) with key 0x11): the LU is in use, so validate changes nothing"
    )
    assert report.checks == ()
    assert not any(c.command.startswith("PR OUT") for c in report.commands)
    assert manager.snapshot(nodes[0].fd) == before
    assert "refused: node a sees" in report.render()


def test_force_runs_only_what_leaves_others_alone(make_nodes: MakeNodes) -> None:
    nodes = make_nodes("a", "b")
    manager = emulated(nodes[0].manager.tree)
    _in_use(manager, nodes[0].fd)
    before = manager.snapshot(nodes[0].fd).persistent()
    report = Validator(nodes, "wsfc", force=True).run()
    statuses = {c.id: c.status for c in report.checks}
    assert {k for k, s in statuses.items() if s is Status.PASS} == {
        "capabilities",
        "register",
        "read-keys",
        "distinct-nexus",
        "unregister",
        "generation",
        "latency",
        "restored",
    }, report.render()
    assert report.check("reserve").reason == "not run: the LU has others' registrations (--force)"
    sent = [c.command for c in report.commands if c.command.startswith("PR OUT")]
    assert sent and all(c.startswith("PR OUT REGISTER RK=") for c in sent)
    after = manager.snapshot(nodes[0].fd).persistent()
    assert after.registrations == before.registrations
    assert after.reservation == before.reservation
    assert report.check("restored").reason == (
        "2 registrations (keys 0x11, 0x22) and Write Exclusive (WE, 1) with key 0x11, as found"
    )
    assert report.exit_status is ExitStatus.OK


@pytest.fixture
def shared_lu(tmp_path: Path, vtree: ObjectTree) -> tuple[PRManagerEmulated, str, str, int]:
    """An emulated LU in a state file that this test keeps open (so another process using
    it is no power cycle): (manager, state file, image, fd)."""
    state = str(tmp_path / "pr.db")
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    manager = vtree.object_add("pr-manager-emulated", "held", state=state)
    assert isinstance(manager, PRManagerEmulated)
    fd = os.open(image, os.O_RDWR)
    return manager, state, str(image), fd


def test_the_command_refuses_with_exit_status_3(
    shared_lu: tuple[PRManagerEmulated, str, str, int],
    pm: pluggy.PluginManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager, state, image, fd = shared_lu
    _in_use(manager, fd)
    before = manager.snapshot(fd)
    argv = ["--json", "--object", f"pr-manager-emulated,id=e,state={state}", "--node", "a"]
    status = cli.run([*argv, "--node", "b", image], plugin_manager=pm)
    out, err = capsys.readouterr()
    assert status == 3
    assert json.loads(out)["refused"].startswith("node a sees 2 registrations")
    assert err.startswith("qompr validate: refused: node a sees 2 registrations")
    assert manager.snapshot(fd) == before
    os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_restores_the_lu(
    shared_lu: tuple[PRManagerEmulated, str, str, int], tmp_path: Path, sig: signal.Signals
) -> None:
    manager, state, image, fd = shared_lu
    marker = tmp_path / "paused"
    argv = [
        sys.executable,
        str(RUNNER),
        "--json",
        "--profile",
        "fence_scsi",
        "--object",
        f"pr-manager-emulated,id=e,state={state}",
        "--object",
        f"pr-manager-test-pause,id=p,target=e,marker={marker}",
        "--node",
        "a",
        "--node",
        "b",
        image,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached its PREEMPT"
            time.sleep(0.01)
        # Mid-run: both registered, a holds the reservation, a's PREEMPT is held.
        middle = manager.snapshot(fd)
        assert len(middle.registrations) == 2 and middle.reservation is not None
        proc.send_signal(sig)
        marker.unlink()  # the PREEMPT in flight completes, then the clean-up runs
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["restored"]["status"] == "PASS", out
    assert checks["reserve"]["status"] == "PASS"
    assert checks["clear"]["reason"] == "not run: interrupted"
    after = manager.snapshot(fd)
    assert after.registrations == () and after.reservation is None
    os.close(fd)
