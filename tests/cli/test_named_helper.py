# SPDX-License-Identifier: MIT
"""``qompr persist`` / ``qompr turs`` with ``--helper --initiator``: one node across processes.

Each run is a new process with a new connection, as Pacemaker's ``fence_scsi`` runs
``sg_persist``; behind ``qompr-pr-helper`` with the emulated backend, the name makes them
one initiator (qompr's protocol extension), so REGISTER in one run and RESERVE in the next
work, and a TEST UNIT READY reports the unit attention a PREEMPT left for that node.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.testing import HelperProcess

QOMPR = (sys.executable, "-m", "qompr")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[HelperProcess]:
    with HelperProcess.qompr(
        "--backend", "pr-manager-emulated,id=e", "--keep-privileges", workdir=str(tmp_path)
    ) as helper:
        yield helper


@pytest.fixture
def lu(tmp_path: Path) -> str:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(1 << 20))
    return str(path)


def qompr(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run([*QOMPR, *argv], check=False, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_register_then_reserve_from_the_same_node_in_two_processes(
    daemon: HelperProcess, lu: str
) -> None:
    def node(name: str, *argv: str) -> tuple[int, str, str]:
        return qompr("persist", "--helper", daemon.path, "--initiator", name, *argv, lu)

    assert node("node1", "--out", "--register", "--param-sark=0xa") == (0, "", "")
    assert node("node1", "--out", "--reserve", "--param-rk=0xa", "--prout-type=5") == (0, "", "")
    assert node("node2", "--out", "--register", "--param-sark=0xb") == (0, "", "")
    # node2 is not node1: it cannot reserve, but it can preempt node1.
    code, _, err = node("node2", "--out", "--reserve", "--param-rk=0xb", "--prout-type=5")
    assert (code, err) == (
        24,
        "PR out (Reserve): Reservation conflict\nqompr persist failed: Reservation conflict\n",
    )
    preempt = ("--out", "--preempt", "--param-rk=0xb", "--param-sark=0xa", "--prout-type=5")
    assert node("node2", *preempt) == (0, "", "")
    # node1 was preempted: the unit attention is reported once, to node1 only.
    turs = ("turs", "--helper", daemon.path, "--initiator")
    assert qompr(*turs, "node2", lu) == (0, "", "")
    assert qompr(*turs, "node1", lu) == (
        6,
        "Unit attention\n",
        "test unit ready:\nFixed format, current; Sense key: Unit Attention\n"
        "Additional sense: Registrations preempted\n",
    )
    assert qompr(*turs, "node1", lu) == (0, "", "")
    code, out, _ = node("node1", "--in", "--read-reservation")
    assert code == 0 and "Key=0xb" in out


def test_turs_through_the_helper_without_a_name(daemon: HelperProcess, lu: str) -> None:
    assert qompr("turs", "--helper", daemon.path, lu) == (0, "", "")


def test_a_name_the_extension_cannot_carry_is_an_error(daemon: HelperProcess, lu: str) -> None:
    code, out, err = qompr("persist", "--helper", daemon.path, "--initiator", "bad name", "-k", lu)
    assert (code, out) == (1, "")
    assert (
        err == "qompr persist: initiator name 'bad name' must be printable ASCII without spaces\n"
    )
