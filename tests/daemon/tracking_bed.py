# SPDX-License-Identifier: MIT
"""A bed for live-migration tests: ``qompr-pr-helper`` with the emulated backend answering
as LIO and a control socket, and client processes standing in for QEMUs (one connection
each for their whole life, as QEMU keeps its), so that each is its own initiator."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ReadFullStatusData
from qompr.testing import HelperProcess
from qompr.testing import wait_for_socket

__all__ = [
    "CHECK_CONDITION",
    "CONFLICT",
    "GOOD",
    "KEY",
    "OTHER",
    "Bed",
    "Qemu",
    "full_status",
    "running_bed",
    "tid",
]

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
            f"--allow-naming-uid={os.getuid()}",
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


@contextlib.contextmanager
def running_bed(tmp_path: Path, param: str = "pid") -> Iterator[Bed]:
    """A started :class:`Bed`; *param* is ``RULE[:MODE]`` (``pid``, ``vm-name:passthrough``;
    the mode defaults to ``handover``)."""
    rule, _, mode = param.partition(":")
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
