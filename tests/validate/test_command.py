# SPDX-License-Identifier: MIT
"""``qompr validate``'s command line: nodes from the options, clear errors, output, exit."""

from __future__ import annotations

import json
from pathlib import Path

import pluggy
import pytest

from qompr.cli import validate as cli
from qompr.cli.main import main
from qompr.validate import PROFILES
from qompr.validate import SKIPPABLE


def _run(
    argv: list[str], pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    status = cli.run(argv, plugin_manager=pm)
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_lists_what_the_engine_has() -> None:
    assert set(cli.PROFILE_NAMES) == set(PROFILES)
    assert set(cli.SKIP_NAMES) == set(SKIPPABLE)


def test_emulated_nodes_from_the_command_line(
    image: str, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--profile", "lvmpersist", "--object", "pr-manager-emulated,id=e"]
    status, out, err = _run([*argv, "--node", "n1", "--node", "n2", image], pm, capsys)
    assert status == 0, out + err
    assert out.startswith("qompr validate: profile lvmpersist, 2 nodes\n")
    assert f"  node n1: {image} (pr-manager-emulated 'e' as n1), key 0x716f6d70" in out
    assert "preempt-abort     PASS    n1 removed n2's key and holds WE_AR" in out


def test_json_output(
    image: str, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--json", "--object", "pr-manager-emulated,id=e", "--node", "a", "--node", "b"]
    status, out, _ = _run([*argv, image], pm, capsys)
    data = json.loads(out)
    assert status == data["exit_status"] == 0
    assert data["summary"]["FAIL"] == 0 and data["refused"] is None


def test_a_failing_check_exits_1(
    image: str, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--profile",
        "fence_scsi",
        "--object",
        "pr-manager-emulated,id=e",
        "--object",
        "pr-manager-test-bad-preempt,id=w,target=e",
    ]
    status, out, _ = _run([*argv, "--node", "a", "--node", "b", image], pm, capsys)
    assert status == 1
    assert "preempt           FAIL    after a's PREEMPT of 0x" in out
    assert "hint: The target answered GOOD but did not remove the preempted registration" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--helper", "/a", "--helper", "/b", "--node", "a", "--node", "b", "IMG"],
            "qompr validate: --node names the initiators of nodes on one --helper: give one\n",
        ),
        (
            ["--helper", "/run/s.sock", "--object", "pr-manager-emulated,id=e", "IMG"],
            "qompr validate: --helper and --object are alternatives: give one of them\n",
        ),
        (
            ["--helper", "/a", "--helper", "/b", "--helper", "/c", "D1", "D2"],
            "qompr validate: 3 --helper and 2 DEVICEs: give one DEVICE for all, or one each\n",
        ),
        (
            ["--helper", "/a", "--helper", "/b"],
            "qompr validate: --helper needs the DEVICE its nodes open (a DEVICE operand)\n",
        ),
        (
            ["--object", "pr-manager-emulated,id=e", "IMG"],
            "qompr validate: --object: pr-manager-emulated 'e' emulates initiators: give --node "
            "NAME for each node\n",
        ),
        (
            ["--node", "a", "--node", "b", "IMG"],
            "qompr validate: --node names the initiators of an --object or --helper manager\n",
        ),
        (
            ["IMG"],
            "qompr validate: DEVICE operands go with --helper or --object; give --device PATH "
            "for SG_IO\n",
        ),
        (
            ["--object", "pr-manager-emulated,id=e", "--node", "a", "IMG"],
            "qompr validate: a cluster needs two or more nodes, the options give 1: see "
            "'qompr validate --help'\n",
        ),
        (
            ["--object", "test-thing,id=t", "--node", "a", "--node", "b", "IMG"],
            "qompr validate: --object: none of the objects is a persistent reservation manager\n",
        ),
    ],
)
def test_usage_errors(
    argv: list[str],
    message: str,
    image: str,
    pm: pluggy.PluginManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = _run([image if a == "IMG" else a for a in argv], pm, capsys)
    assert (status, out, err) == (2, "", message)


def test_a_device_that_cannot_be_opened(
    tmp_path: Path, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = str(tmp_path / "sdz")
    status, out, err = _run(["--device", gone, "--device", gone], pm, capsys)
    assert (status, out) == (4, "")
    assert err == f"qompr validate: Could not open '{gone}': No such file or directory\n"


def test_a_file_is_no_scsi_device(
    image: str, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    """--device on something that is no SCSI device: capabilities FAIL, nothing changed."""
    status, out, _ = _run(["--device", image, "--device", image], pm, capsys)
    assert status == 1
    assert "capabilities      FAIL    node a: REPORT CAPABILITIES answered CHECK CONDITION" in out
    assert "hint: SG_IO failed on the device (QEMU's mapping of an errno): it is no SCSI" in out
    assert "restored          PASS    nothing was changed" in out


def test_object_help_is_printed(
    pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(["--object", "pr-manager-emulated,help", "X"], pm, capsys)
    assert status == 0 and "pr-manager-emulated options:" in out


def test_registered_in_the_qompr_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--profile {wsfc,fence_scsi,lvmpersist}" in out
    assert "130 interrupted" in out
