# SPDX-License-Identifier: MIT
"""``qompr migrate``: query, handover and rollback through a real ``qompr-pr-helper`` with
the emulated backend answering as LIO (each process its own initiator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.cli.main import main
from qompr.embed import close_path
from qompr.embed import helper_path
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters

from ..daemon.tracking_bed import GOOD
from ..daemon.tracking_bed import KEY
from ..daemon.tracking_bed import OTHER
from ..daemon.tracking_bed import Bed
from ..daemon.tracking_bed import full_status
from ..daemon.tracking_bed import running_bed
from ..daemon.tracking_bed import tid

WE_RO = 5


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    with running_bed(tmp_path) as the_bed:
        yield the_bed


def test_query_text_and_json(bed: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    source = bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=WE_RO) == GOOD
    assert main(["migrate", "query", bed.control, "--vm", "vm1"]) == 0
    assert capsys.readouterr().out == (
        f"pid={source.pid} vm=vm1 initiator=pid:{source.pid} lu=lu0 key=0x{KEY:x} type=5 "
        "(connected)\n"
    )
    assert main(["migrate", "query", bed.control, "--json", "--pid", str(source.pid)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["key"], entry["type"], entry["vm"]) == (f"0x{KEY:x}", 5, "vm1")
    assert main(["migrate", "query", bed.control, "--vm", "nobody", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_handover_then_rollback(bed: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    # This process is the source; a `qompr migrate handover` process is the destination.
    fd = os.open(bed.image, os.O_RDWR)
    path = helper_path(bed.helper.path, fd)
    try:
        for action, rk, sark, pr_type in (
            (PrOutAction.REGISTER, 0, KEY, 0),
            (PrOutAction.RESERVE, KEY, 0, WE_RO),
        ):
            data = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
            cdb = PrOutCdb(action, 0, pr_type, len(data)).to_bytes()
            assert path.manager.execute(fd, cdb, data).ok
    finally:
        close_path(path)
        os.close(fd)
    node = bed.qemu("node")
    assert node.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    done = subprocess.run(
        [sys.executable, "-m", "qompr", "migrate", "handover", "--helper", bed.helper.path,
         "--device", bed.image, "--from-control", bed.control, "--pid", str(os.getpid()),
         "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["key"], result["type"], result["method"]) == (f"0x{KEY:x}", 5, "reservation")
    assert result["seconds"] > 0
    # The handover process is gone; its nexus holds everything, this process's is gone.
    status = full_status(node)
    me = tid(f"pid:{os.getpid()}")
    assert me not in status
    (dest,) = set(status) - {tid(f"pid:{node.pid}")}
    assert status[dest] == (KEY, True, WE_RO)
    # The migration failed: this process (the source) takes it all back.
    args = ["migrate", "rollback", "--helper", bed.helper.path, "--device", bed.image]
    assert main([*args, "--key", f"{KEY:#x}", "--type", "we_ro"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"key 0x{KEY:x}: reservation, type 5, ")
    assert full_status(node) == {me: (KEY, True, WE_RO), tid(f"pid:{node.pid}"): (OTHER, False, 0)}


def test_errors(bed: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "query", bed.control + ".x"]) == 1
    assert "Failed to connect to" in capsys.readouterr().err
    args = ["migrate", "handover", "--helper", bed.helper.path, "--device", bed.image]
    assert main(args) == 1
    assert "--key or --from-control is needed" in capsys.readouterr().err
    assert main([*args, "--from-control", bed.control]) == 1
    assert "0 tracked registrations match" in capsys.readouterr().err
    assert main([*args, "--key", "0x99"]) == 1  # nobody holds it: nothing taken over
    assert "is not registered: the guest was preempted" in capsys.readouterr().err
    assert main(["migrate", "handover", "--helper", bed.helper.path, "--device",
                 "/nonexistent/disk", "--key", "1"]) == 1  # fmt: skip
    assert "Could not open '/nonexistent/disk'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--key", "1", "--type", "2"])
    assert "invalid reservation type '2'" in capsys.readouterr().err


def test_handover_as_the_destination_qemu(bed: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    source, destination = bed.qemu("vm1"), bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=WE_RO) == GOOD
    args = ["migrate", "handover", "--helper", bed.helper.path, "--device", bed.image]
    name = f"pid:{destination.pid}"
    assert main([*args, "--from-control", bed.control, "--pid", str(source.pid),
                 "--as-initiator", name]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"key 0x{KEY:x}: reservation, type 5,")
    assert full_status(destination) == {tid(name): (KEY, True, WE_RO)}
