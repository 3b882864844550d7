# SPDX-License-Identifier: MIT
"""Nodes through helper sockets: each node is a process of its own, as each QEMU is.

* ``qompr-pr-helper`` with the emulated backend naming clients by VM name (or by pid): two
  nodes on one socket are two initiators, every check passes;
* two sockets served by one helper whose device sees one initiator port (what a real LU
  behind one qemu-pr-helper on one device path is): one I_T nexus, FAIL with the explanation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from qompr.cli import validate as cli
from qompr.managers import PRManager
from qompr.managers.emulated import initiator_name
from qompr.managers.emulated import vm_name
from qompr.managers.emulated._identity import process_cmdline
from qompr.qom import ObjectTree
from qompr.testing import QOMPR_PR_HELPER
from qompr.testing import HelperProcess
from qompr.testing import InProcessServer
from qompr.validate import AgentNode
from qompr.validate import Status
from qompr.validate import Validator
from qompr.validate import helper_node


@pytest.fixture(params=["vm-name", "pid"])
def emulated_helper(request: pytest.FixtureRequest) -> Iterator[HelperProcess]:
    backend = f"pr-manager-emulated,id=e,initiator-rule={request.param}"
    with HelperProcess([*QOMPR_PR_HELPER, f"--backend={backend}"]) as helper:
        yield helper


def _nodes(socket_paths: list[str], device: str) -> list[AgentNode]:
    nodes: list[AgentNode] = []
    try:
        for name, path in zip("abc", socket_paths, strict=False):
            nodes.append(helper_node(name, path, device, timeout=10))
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return nodes


@pytest.mark.parametrize("profile", ["wsfc", "fence_scsi"])
def test_two_vms_through_one_qompr_pr_helper_are_two_initiators(
    emulated_helper: HelperProcess, image: str, profile: str
) -> None:
    nodes = _nodes([emulated_helper.path, emulated_helper.path], image)
    try:
        report = Validator(nodes, profile).run()
    finally:
        for node in nodes:
            node.close()
    statuses = {c.id: c.status for c in report.checks}
    not_passed = {k for k, s in statuses.items() if s is not Status.PASS}
    assert not_passed == {"write-conflict", "multipath"}, report.render()
    victim = "a" if profile == "wsfc" else "b"  # the challenger preempts the holder in wsfc
    assert report.check("write-conflict").reason.startswith(
        f"not checkable through node {victim}'s path (helper)"
    )
    assert report.check("unit-attention").reason.startswith(
        f"node {victim} got REGISTRATIONS PREEMPTED"
    )


def test_each_helper_node_is_a_named_vm_process(emulated_helper: HelperProcess, image: str) -> None:
    nodes = _nodes([emulated_helper.path, emulated_helper.path], image)
    try:
        pids = {node.pid for node in nodes}
        assert len(pids) == 2 and os.getpid() not in pids
        for node in nodes:
            assert node.vm_name == f"qompr-validate-{os.getpid()}-{node.name}"
            assert vm_name(process_cmdline(node.pid)) == node.vm_name
            assert initiator_name(node.pid, "vm-name") == f"vm:{node.vm_name}"
    finally:
        for node in nodes:
            node.close()
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture
def one_port_helper(vtree: ObjectTree, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """One helper whose LU sees one initiator port, on two socket names."""
    vtree.object_add("pr-manager-emulated", "e")
    manager = vtree.object_add("pr-manager-test-one-port", "w", target="e")
    assert isinstance(manager, PRManager)
    with InProcessServer.serving(manager) as server:
        second = tmp_path / "second.sock"
        second.symlink_to(server.path)
        yield server.path, str(second)


def test_two_sockets_of_one_helper_on_one_device_path_are_one_nexus(
    one_port_helper: tuple[str, str], image: str
) -> None:
    nodes = _nodes(list(one_port_helper), image)
    try:
        report = Validator(nodes, "wsfc").run()
    finally:
        for node in nodes:
            node.close()
    check = report.check("distinct-nexus")
    assert check.status is Status.FAIL, report.render()
    assert check.reason.startswith("nodes a and b are one I_T nexus: b's registration replaced a's")
    assert check.hint is not None
    assert check.hint.startswith(
        "Both reach the LU through the same device path, i.e. through this host's one "
        "initiator port: VMs on one host sharing a helper are one initiator"
    )
    assert report.check("restored").status is Status.PASS, report.render()
    assert report.exit_status == 1


def test_the_command_line_through_a_helper(
    emulated_helper: HelperProcess, image: str, pm: pluggy.PluginManager,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = emulated_helper.path
    status = cli.run(["--helper", path, "--helper", path, image], plugin_manager=pm)
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert f"node a: {image} through helper {path}" in out
    assert "15 PASS, 0 WARN, 0 FAIL, 2 SKIP" in out


def test_an_unreachable_helper_cannot_run(
    image: str, tmp_path: Path, pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = str(tmp_path / "nobody.sock")
    status = cli.run(["--helper", gone, "--helper", gone, image], plugin_manager=pm)
    out, err = capsys.readouterr()
    assert status == 4 and out == ""
    assert err.startswith(f"qompr validate: node a: Failed to connect to '{gone}'")


def test_named_nodes_through_one_helper(
    emulated_helper: HelperProcess, image: str, pm: pluggy.PluginManager,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = emulated_helper.path
    argv = ["--helper", path, "--node", "alpha", "--node", "beta", image]
    status = cli.run(argv, plugin_manager=pm)
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert f"node alpha: {image} through helper {path} as alpha" in out
    assert f"node beta: {image} through helper {path} as beta" in out
    assert "15 PASS, 0 WARN, 0 FAIL, 2 SKIP" in out


def test_named_nodes_that_share_a_name_are_one_nexus(
    emulated_helper: HelperProcess, image: str
) -> None:
    """The helper gives the name, not the process: two agents named alike are one node."""
    nodes = [
        helper_node(name, emulated_helper.path, image, timeout=10, initiator="same")
        for name in ("a", "b")
    ]
    try:
        report = Validator(nodes, "wsfc").run()
    finally:
        for node in nodes:
            node.close()
    assert report.check("distinct-nexus").status is Status.FAIL, report.render()
