# SPDX-License-Identifier: MIT
"""Debian's real ``fence_scsi``, unchanged, fencing three nodes on one emulated LU.

``fence_scsi`` runs ``sg_persist`` and ``sg_turs`` once per step.  With
``contrib/fence_scsi``'s shim as those two programs (``--sg_persist-path``,
``--sg_turs-path``), each run is ``qompr persist|turs --helper SOCKET --initiator NODE``
against one ``qompr-pr-helper`` whose backend is ``pr-manager-emulated`` with a state file,
and the logical unit is a loop device (``fence_scsi`` insists on a block device).

Each node runs in a mount namespace of its own with a private ``/run``: ``fence_scsi``
keeps the local node's key in ``/var/run/cluster.key``, as one host has one; three nodes
on one machine need three.  Keys are given with ``--key``, so no corosync is needed.
What is asserted is ``fence_scsi``'s own output and exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.testing import HelperProcess
from qompr.testing import loop_device

pytestmark = pytest.mark.interop

FENCE_SCSI = shutil.which("fence_scsi") or "/usr/sbin/fence_scsi"
SHIM = Path(__file__).resolve().parents[2] / "contrib" / "fence_scsi"
_ENTRY = Path(sys.executable).with_name("qompr")
QOMPR = str(_ENTRY) if _ENTRY.exists() else f"{sys.executable} -m qompr"


def _missing() -> str | None:
    if not os.path.exists(FENCE_SCSI):
        return f"fence_scsi NOT INSTALLED at {FENCE_SCSI} (apt-get install fence-agents)"
    if os.geteuid() != 0:
        return "NOT ROOT: needs a loop device and a mount namespace per node"
    for tool in ("unshare", "losetup", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} NOT INSTALLED"
    return None


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[FenceBed]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    lus = []
    with HelperProcess.qompr(
        "--backend",
        f"pr-manager-emulated,id=e,state={tmp_path / 'pr.db'}",
        "--keep-privileges",
        workdir=str(tmp_path),
    ) as helper:
        try:
            for name in ("lu1", "lu2"):
                (tmp_path / name).mkdir()
                context = loop_device(tmp_path / name)
                try:
                    lus.append((context, context.__enter__()))
                except OSError as exc:
                    pytest.skip(f"NO LOOP DEVICE (losetup failed: {exc})")
            yield FenceBed(tmp_path, helper.path, [device for _, device in lus])
        finally:
            for context, _ in reversed(lus):
                context.__exit__(None, None, None)


class FenceBed:
    """Three nodes' private ``/run`` directories, the helper, and the loop devices."""

    def __init__(self, root: Path, socket: str, devices: list[str]) -> None:
        self.root = root
        self.socket = socket
        self.devices = devices
        self.state = root / "pr.db"
        for node in ("node1", "node2", "node3"):
            (root / node).mkdir()

    def env(self, node: str) -> dict[str, str]:
        return {
            **os.environ,
            "QOMPR_HELPER": self.socket,
            "QOMPR_INITIATOR": node,
            "QOMPR": QOMPR,
            "QOMPR_FENCE_CONF": str(self.root / "no-such.conf"),
        }

    def fence(
        self, node: str, *argv: str, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Run fence_scsi as *node* (its own /run), with the shim as sg_persist/sg_turs."""
        command = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", 'mount --bind "$0" /run && exec "$@"', str(self.root / node),
            FENCE_SCSI,
            f"--sg_persist-path={SHIM / 'sg_persist'}",
            f"--sg_turs-path={SHIM / 'sg_turs'}",
            *argv,
        ]  # fmt: skip
        done = subprocess.run(
            command,
            env=self.env(node) if env is None else env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    def keys(self, device: str) -> str:
        return qompr("persist", "--helper", self.socket, "-k", device)

    def emulated(self, command: str) -> str:
        """``qompr emulated COMMAND`` on the helper's state file: its output."""
        return qompr("emulated", command, str(self.state))


def qompr(*argv: str) -> str:
    """Run the ``qompr`` command; its output (a failure raises)."""
    done = subprocess.run(
        [*QOMPR.split(), *argv], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


ON = (0, "Success: Powered ON\n", "")
OFF = (0, "Success: Powered OFF\n", "")
STATUS_ON = (0, "Status: ON\n", "")
STATUS_OFF = (2, "Status: OFF\n", "")


def test_three_nodes_unfence_fence_and_unfence_again(bed: FenceBed) -> None:
    lu = bed.devices[0]
    for number in (1, 2, 3):
        assert bed.fence(f"node{number}", "-o", "on", "-d", lu, "-k", str(number)) == ON
    assert bed.keys(lu).endswith(
        "3 registered reservation keys follow:\n    0x1\n    0x2\n    0x3\n"
    )
    # Each node's key file is its own (its private /run).
    assert (bed.root / "node2" / "cluster.key").read_text() == "2\n"
    for number in (1, 2, 3):
        assert bed.fence(f"node{number}", "-o", "status", "-d", lu, "-k", str(number)) == STATUS_ON
    # fence_scsi declares force_on: "on" registers again (a no-op) rather than "Already ON".
    assert bed.fence("node1", "-o", "on", "-d", lu, "-k", "1") == ON
    assert bed.fence("node1", "-o", "monitor", "-d", lu, "-k", "1") == (0, "", "")

    # node1 fences node2: PREEMPT AND ABORT of key 2 with node1's key.
    code, out, err = bed.fence("node1", "-o", "off", "-d", lu, "-k", "1")
    assert (code, out) == (1, "")
    assert "Failed: keys cannot be same. You can not fence yourself." in err
    assert bed.fence("node1", "-o", "off", "-d", lu, "-k", "2") == OFF
    assert "0x2" not in bed.keys(lu)
    # The fenced node sees OFF (its sg_turs first takes the unit attention the preemption
    # left for it, so the READ KEYS after it answers).
    assert bed.fence("node2", "-o", "status", "-d", lu, "-k", "2") == STATUS_OFF
    assert bed.fence("node3", "-o", "status", "-d", lu, "-k", "3") == STATUS_ON
    assert bed.fence("node1", "-o", "off", "-d", lu, "-k", "2") == (0, "Success: Already OFF\n", "")

    # Unfence: node2 registers again and reads ON.
    assert bed.fence("node2", "-o", "on", "-d", lu, "-k", "2") == ON
    assert bed.fence("node2", "-o", "status", "-d", lu, "-k", "2") == STATUS_ON
    show = bed.emulated("show")
    # One initiator per node, whichever process ran each step; node1 holds the reservation.
    for number in (1, 2, 3):
        assert f"registered node{number} port 1 key=0x{number}" in show
    assert "reservation WE_RO held by node1 port 1" in show


def test_aptpl_registrations_survive_a_power_cycle_others_do_not(bed: FenceBed) -> None:
    persistent, volatile = bed.devices
    assert bed.fence("node1", "-o", "on", "-d", persistent, "-k", "1", "--aptpl") == ON
    assert bed.fence("node2", "-o", "on", "-d", persistent, "-k", "2", "--aptpl") == ON
    assert bed.fence("node1", "-o", "on", "-d", volatile, "-k", "1") == ON
    assert bed.fence("node2", "-o", "on", "-d", volatile, "-k", "2") == ON
    bed.emulated("power-cycle")
    # sg_turs takes each node's POWER ON OCCURRED; the keys read after it are what survived.
    for node, key in (("node1", "1"), ("node2", "2")):
        assert bed.fence(node, "-o", "status", "-d", persistent, "-k", key) == STATUS_ON
        assert bed.fence(node, "-o", "status", "-d", volatile, "-k", key) == STATUS_OFF
    # Fencing still works on the persistent LU after the power cycle.
    assert bed.fence("node1", "-o", "off", "-d", persistent, "-k", "2") == OFF
    assert bed.fence("node2", "-o", "status", "-d", persistent, "-k", "2") == STATUS_OFF


def test_the_shim_reads_its_config_file_and_says_what_is_missing(bed: FenceBed) -> None:
    lu = bed.devices[0]
    conf = bed.root / "fence_scsi.conf"
    conf.write_text(
        f"# qompr's fence_scsi shim\nhelper = {bed.socket}\ninitiator = node3\nqompr = {QOMPR}\n"
    )
    env = {**os.environ, "QOMPR_FENCE_CONF": str(conf)}
    for name in ("QOMPR_HELPER", "QOMPR_INITIATOR", "QOMPR"):
        env.pop(name, None)
    assert bed.fence("node3", "-o", "on", "-d", lu, "-k", "3", env=env) == ON
    assert "registered node3 port 1 key=0x3" in bed.emulated("show")
    # Without a helper socket the shim refuses, and fence_scsi reports it cannot read keys.
    conf.write_text("initiator = node3\n")
    done = subprocess.run(
        [str(SHIM / "sg_persist"), "-n", "-i", "-k", "-d", lu],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"sg_persist: no qompr-pr-helper socket: set QOMPR_HELPER or 'helper = PATH' in {conf}\n"
    )
    conf.write_text("helper = /x\ncolour = blue\n")
    done = subprocess.run(
        [str(SHIM / "sg_turs"), lu], env=env, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (1, f"sg_turs: {conf}:2: unknown setting 'colour'\n")
