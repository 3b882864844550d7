# SPDX-License-Identifier: MIT
"""PR tracking and QEMU 11's destination sequence through a real ``qompr-pr-helper`` with the
emulated backend answering as LIO: two client processes stand in for the source and the
destination QEMU on one host (connected at once), replaying QEMU 11's exact CDBs; the
tracking read on the control socket; and the ``qompr.embed`` handover through the helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.embed import ControlError
from qompr.embed import Migration
from qompr.embed import close_path
from qompr.embed import helper_path
from qompr.embed import query_tracking
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.testing import HelperProcess
from qompr.testing import wait_for_socket

KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
KEY = 0x0123_4567_89AB_CDEF
OTHER = 0x5A5A
GOOD, CHECK_CONDITION, CONFLICT = 0, 2, 0x18

# A stand-in for one QEMU: one helper connection for its whole life, the disk's fd sent with
# every command, one JSON request a line on stdin, one answer a line on stdout.  Standard
# library only, so it starts fast; its own argv may carry QEMU's "-name guest=NAME".
CLIENT = r"""
import json, os, socket, struct, sys
path, image = sys.argv[1], sys.argv[2]
fd = os.open(image, os.O_RDWR)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(30)
sock.connect(path)
def exact(n):
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise SystemExit("helper closed")
        buf += part
    return buf
exact(4)
sock.sendall(bytes(4))
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    cdb = bytes.fromhex(req["cdb"]).ljust(16, b"\0")
    socket.send_fds(sock, [cdb + bytes.fromhex(req["data"])], [fd])
    status, size = struct.unpack(">ii", exact(8))
    sense = exact(96)
    data = exact(size) if size else b""
    print(json.dumps({"status": status, "sense": sense.hex(), "data": data.hex()}), flush=True)
"""


class Qemu:
    """A client process standing in for one QEMU."""

    def __init__(self, socket_path: str, image: str, name: str | None = None) -> None:
        argv = [sys.executable, "-c", CLIENT, socket_path, image]
        if name is not None:
            argv += ["-name", f"guest={name},debug-threads=on"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        assert self._out.readline().strip() == "ready"
        self.pid = self.proc.pid

    def send(self, cdb: bytes, data: bytes = b"") -> tuple[int, bytes]:
        self._in.write(json.dumps({"cdb": cdb.hex(), "data": data.hex()}) + "\n")
        self._in.flush()
        answer = json.loads(self._out.readline())
        return int(answer["status"]), bytes.fromhex(answer["data"])

    def out(self, action: PrOutAction, *, rk: int = 0, sark: int = 0, pr_type: int = 0) -> int:
        data = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
        return self.send(PrOutCdb(action, 0, pr_type, len(data)).to_bytes(), data)[0]

    def read(self, action: PrInAction) -> bytes:
        status, data = self.send(PrInCdb(action, 8192).to_bytes())
        assert status == GOOD
        return data

    def close(self) -> None:
        self._in.close()
        self.proc.wait(timeout=30)
        self._out.close()


class Bed:
    """A helper with the emulated backend (LIO mode) and a control socket."""

    def __init__(self, tmp: Path, rule: str, mode: str) -> None:
        self.control = str(tmp / "control.sock")
        self.image = str(tmp / "disk.img")
        Path(self.image).write_bytes(bytes(4096))
        backend = f"pr-manager-emulated,id=emu0,lu-name=lu0,mode=lio,initiator-rule={rule}"
        self.helper = HelperProcess.qompr(
            *KEEP,
            f"--backend={backend}",
            f"--control={self.control}",
            f"--migrate-pr={mode}",
            workdir=str(tmp),
        )
        self.clients: list[Qemu] = []

    def qemu(self, name: str | None = None) -> Qemu:
        client = Qemu(self.helper.path, self.image, name)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.helper.stop()


@pytest.fixture
def bed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bed]:
    rule, _, mode = getattr(request, "param", "pid").partition(":")
    the_bed = Bed(tmp_path, rule, mode or "handover")
    the_bed.helper.start()
    wait_for_socket(the_bed.control)
    try:
        yield the_bed
    finally:
        the_bed.close()


def full_status(client: Qemu) -> dict[str, tuple[int, bool, int]]:
    """Initiator TransportID identifier -> (key, holder, type)."""
    data = ReadFullStatusData.from_bytes(client.read(PrInAction.READ_FULL_STATUS))
    return {
        d.transport_id.identifier: (d.reservation_key, d.r_holder, int(d.type))
        for d in data.descriptors
    }


def tid(initiator: str) -> str:
    return Nexus(initiator).transport_id.identifier


@pytest.mark.parametrize("pr_type", [0, 1, 3, 5, 6, 7, 8])
def test_qemu11_destination_sequence_with_pid_initiators(bed: Bed, pr_type: int) -> None:
    source, node = bed.qemu("vm1"), bed.qemu("node2")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert node.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    if pr_type:
        assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type) == GOOD
    destination = bed.qemu("vm1")  # the incoming QEMU, connected while the source still is
    # QEMU 11's post_load, byte for byte.
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == GOOD
    assert destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type) == GOOD
    status = full_status(node)
    assert set(status) == {tid(f"pid:{destination.pid}"), tid(f"pid:{node.pid}")}
    key, holder, held = status[tid(f"pid:{destination.pid}")]
    assert key == KEY
    if pr_type:
        assert (holder, held) == (True, pr_type)
        res = ReadReservationData.from_bytes(destination.read(PrInAction.READ_RESERVATION))
        assert res.type == pr_type
    else:
        assert not any(h for _, h, _ in status.values())
    assert ReadKeysData.from_bytes(destination.read(PrInAction.READ_KEYS)).keys.count(KEY) == 1
    # The source's registration is gone: its key no longer opens anything.
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=1) in (CONFLICT, CHECK_CONDITION)
    entries = {e.pid: e for e in query_tracking(bed.control, vm="vm1")}
    assert set(entries) == {source.pid, destination.pid}
    dst = entries[destination.pid]
    assert (dst.key, dst.type, dst.connected, dst.lu) == (KEY, pr_type, True, "lu0")
    assert dst.initiator == f"pid:{destination.pid}"
    # The source's view is QEMU's: what its guest did (it is stale now, as in QEMU).
    assert (entries[source.pid].key, entries[source.pid].type) == (KEY, pr_type)


@pytest.mark.parametrize("bed", ["pid:passthrough"], indirect=True)
def test_qemu11_passthrough_is_qemu_pr_helpers(bed: Bed) -> None:
    # The default: QEMU's PREEMPT reaches the target as sent.  LIO refuses TYPE 0, and the
    # source's registration stays (what the real qemu-pr-helper gives too).
    source = bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    destination = bed.qemu("vm1")
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == GOOD
    assert destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=0) == CHECK_CONDITION
    status = full_status(destination)
    assert status == {
        tid(f"pid:{source.pid}"): (KEY, False, 0),
        tid(f"pid:{destination.pid}"): (KEY, False, 0),
    }
    # Tracked all the same.
    assert {e.pid for e in query_tracking(bed.control)} == {source.pid, destination.pid}


@pytest.mark.parametrize("bed", ["vm-name"], indirect=True)
@pytest.mark.parametrize("pr_type", [0, 5])
def test_qemu11_destination_sequence_with_one_nexus(bed: Bed, pr_type: int) -> None:
    # initiator-rule=vm-name: both QEMUs of one host are "vm:vm1", one I_T nexus, as both
    # are one host initiator on a real LU.
    source = bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    if pr_type:
        assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type) == GOOD
    destination = bed.qemu("vm1")
    before = full_status(destination)
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == CONFLICT
    answer = destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type)
    # PREEMPT of itself keeps the reservation; TYPE 0 is refused as LIO refuses it.
    assert answer == (GOOD if pr_type else CHECK_CONDITION)
    assert full_status(destination) == before == {tid("vm:vm1"): (KEY, bool(pr_type), pr_type)}
    source.close()
    bed.clients.remove(source)
    # The nexus outlives the source QEMU: the destination's guest still holds it all.
    assert full_status(destination) == before


def test_control_query_errors(bed: Bed) -> None:
    with pytest.raises(ControlError, match="Parameter 'disk' is unexpected"):
        from qompr.embed._migration import _control_exchange

        _control_exchange(
            bed.control, {"execute": "query-pr-tracking", "arguments": {"disk": 1}}, 5
        )
    with pytest.raises(ControlError, match="Invalid parameter type for 'pid'"):
        from qompr.embed._migration import _control_exchange

        _control_exchange(
            bed.control, {"execute": "query-pr-tracking", "arguments": {"pid": "1"}}, 5
        )
    assert query_tracking(bed.control) == []
    with pytest.raises(ControlError, match="Failed to connect"):
        query_tracking(bed.control + ".nope")


def test_embed_handover_through_the_helper(bed: Bed) -> None:
    # This test process is the destination: with pid initiators its connection is its own
    # nexus (with a real device it would be the destination host's initiator).
    source, node = bed.qemu("vm1"), bed.qemu("node2")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.WE_RO)) == GOOD
    assert node.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    fd = os.open(bed.image, os.O_RDWR)
    dst = helper_path(bed.helper.path, fd)
    try:
        migration = Migration(dst)
        tracked = migration.prepare(bed.control, vm="vm1")
        assert tracked.pid == source.pid
        assert (migration.key, migration.reservation_type) == (KEY, int(PrType.WE_RO))
        result = migration.switch_over()
        assert (result.key, result.type, result.method) == (KEY, 5, "reservation")
    finally:
        close_path(dst)
        os.close(fd)
    status = full_status(node)
    me = tid(f"pid:{os.getpid()}")
    assert set(status) == {me, tid(f"pid:{node.pid}")}
    assert status[me] == (KEY, True, 5)
    # The source's entry is the source QEMU's view; the handover was not a guest's command.
    entries: list[Any] = query_tracking(bed.control, pid=source.pid)
    assert [(e.key, e.type) for e in entries] == [(KEY, 5)]


def test_migrate_pr_mode_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from qompr.daemon.main import main

    assert main(["qompr-pr-helper", "--migrate-pr=always"]) == 1
    assert capsys.readouterr().err == (
        "qompr-pr-helper: invalid --migrate-pr mode 'always' (passthrough or handover)\n"
    )
