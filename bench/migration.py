# SPDX-License-Identifier: MIT
"""Benchmark of the live-migration handover (issue 12): it runs while the guest is paused, so
it adds to the migration's downtime.

Run ``python bench/migration.py [--rounds N]``.  It prints the median and 99th percentile of:

* ``take_over`` in process on ``pr-manager-emulated`` (LIO mode, in memory), per case (a
  reservation the guest holds, an all-registrants one, nothing reserved), beside QEMU 11's own
  two commands (REGISTER + PREEMPT) on the same engine, the peer it replaces;
* through ``qompr-pr-helper --backend pr-manager-emulated`` (the commands cross a unix socket,
  as a VM manager's do): ``qompr.embed.take_over`` from this process, and QEMU 11's two
  commands sent as QEMU sends them with ``--migrate-pr=passthrough`` (the peer: what
  qemu-pr-helper does) and ``--migrate-pr=handover``;
* with root and Debian's ``qemu-pr-helper``: its round trip (a PR IN on a regular file,
  answered at once), times five, the floor of any five-command handover through a helper.

Figures only; nothing is asserted.  Each round sets the state up again (a source process
registers and reserves), outside the timed part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from qompr.embed import PRPath
from qompr.embed import close_path
from qompr.embed import helper_path
from qompr.embed import take_over
from qompr.managers.emulated import PRManagerEmulated
from qompr.plugins import new_tree
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import request
from qompr.testing import wait_for_socket

KEY, OTHER = 0x716D6967, 0x5A5A
CASES = (("reserved WE_RO", 5), ("reserved WE_AR", 7), ("not reserved", 0))

# The source QEMU: one helper connection, commands from stdin (JSON lines), answers on stdout.
SOURCE = r"""
import json, os, socket, struct, sys
sock = socket.socket(socket.AF_UNIX); sock.connect(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDWR)
def exact(n):
    b = b""
    while len(b) < n: b += sock.recv(n - len(b))
    return b
exact(4); sock.sendall(bytes(4)); print("ready", flush=True)
for line in sys.stdin:
    cdb, data = (bytes.fromhex(x) for x in json.loads(line))
    socket.send_fds(sock, [cdb.ljust(16, b"\0") + data], [fd])
    status, size = struct.unpack(">ii", exact(8)); exact(96 + size)
    print(status, flush=True)
"""


def pr_out(
    action: PrOutAction, rk: int = 0, sark: int = 0, pr_type: int = 0
) -> tuple[bytes, bytes]:
    data = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
    return PrOutCdb(action, 0, pr_type, len(data)).to_bytes(), data


def figures(name: str, samples: list[float], peer: list[float] | None = None) -> None:
    ordered = sorted(samples)
    median = statistics.median(ordered) * 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6
    line = f"  {name:<52} median {median:8.1f} us   p99 {p99:8.1f} us"
    if peer:
        line += f"   x{median / (statistics.median(peer) * 1e6):.2f} of the peer"
    print(line)


def _discard(_value: object) -> None:
    return None


def timed(rounds: int, setup: Callable[[], None], step: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(rounds):
        setup()
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def in_process(rounds: int) -> None:
    print("In process, pr-manager-emulated (mode=lio, in memory):")
    emu = new_tree(load_entrypoints=False).object_add(
        "pr-manager-emulated", "emu0", lu_name="lu0", mode="lio"
    )
    assert isinstance(emu, PRManagerEmulated)
    src, dst, node = Nexus("src"), Nexus("dst"), Nexus("node")
    assert emu.execute(-1, *pr_out(PrOutAction.REGISTER, sark=OTHER), nexus=node).ok

    def run(nexus: Nexus, command: tuple[bytes, bytes]) -> None:
        emu.execute(-1, *command, nexus=nexus)

    def setup(pr_type: int) -> Callable[[], None]:
        def again() -> None:
            for who in (src, dst):  # unregister whoever holds the key
                run(who, pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=0))
            run(src, pr_out(PrOutAction.REGISTER, sark=KEY))
            if pr_type:
                run(src, pr_out(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type))
            emu.unit_attentions(-1, src)

        return again

    def qemu11_sequence() -> None:
        run(dst, pr_out(PrOutAction.REGISTER, sark=KEY))
        run(dst, pr_out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=5))

    qemu11 = timed(rounds, setup(5), qemu11_sequence)
    figures("QEMU 11's REGISTER + PREEMPT (reserved WE_RO): the peer", qemu11)
    path = PRPath(emu, -1, dst)
    for name, pr_type in CASES:

        def step(t: int = pr_type) -> None:
            take_over(path, KEY, t)

        samples = timed(rounds, setup(pr_type), step)
        figures(f"take_over, {name}", samples, qemu11)


class _Source:
    """The source QEMU: a child process with its own helper connection (its own nexus)."""

    def __init__(self, socket_path: str, image: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SOURCE, socket_path, image],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        assert self.stdout.readline().strip() == "ready"

    def send(self, command: tuple[bytes, bytes]) -> None:
        for _ in range(4):  # a unit attention (the last round's preemption) first
            self.stdin.write(json.dumps([command[0].hex(), command[1].hex()]) + "\n")
            self.stdin.flush()
            if int(self.stdout.readline()) != 2:
                return

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=30)


def _one_helper(mode: str, rounds: int, workdir: str, image: str) -> dict[str, list[float]]:
    backend = "--backend=pr-manager-emulated,id=emu0,lu-name=lu0,mode=lio"
    keep = [] if os.geteuid() == 0 else ["--keep-privileges"]
    sub = os.path.join(workdir, mode)
    os.mkdir(sub)
    out: dict[str, list[float]] = {}
    with HelperProcess.qompr(*keep, backend, f"--migrate-pr={mode}", workdir=sub) as helper:
        wait_for_socket(helper.path)
        source = _Source(helper.path, image)
        fd = os.open(image, os.O_RDWR)
        try:
            with connected(helper.path) as sock:

                def by_me(command: tuple[bytes, bytes]) -> None:
                    request(sock, command[0].ljust(16, b"\0"), fd, command[1])

                def setup() -> None:
                    by_me(pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=0))
                    source.send(pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=KEY))
                    source.send(pr_out(PrOutAction.RESERVE, rk=KEY, pr_type=5))

                def qemu11() -> None:
                    by_me(pr_out(PrOutAction.REGISTER, sark=KEY))
                    by_me(pr_out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=5))

                out[mode] = timed(rounds, setup, qemu11)
                if mode == "passthrough":
                    path = helper_path(helper.path, fd)
                    try:
                        out["embed"] = timed(
                            rounds, setup, lambda: _discard(take_over(path, KEY, 5))
                        )
                    finally:
                        close_path(path)
        finally:
            os.close(fd)
            source.close()
    return out


def through_helper(rounds: int, workdir: str) -> None:
    image = os.path.join(workdir, "disk.img")
    with open(image, "wb") as f:
        f.write(bytes(4096))
    results: dict[str, list[float]] = {}
    for mode in ("passthrough", "handover"):
        results.update(_one_helper(mode, rounds, workdir, image))
    print("Through qompr-pr-helper --backend pr-manager-emulated (mode=lio), reserved WE_RO:")
    peer = results["passthrough"]
    figures("QEMU 11's two commands, --migrate-pr=passthrough: peer", peer)
    figures("QEMU 11's two commands, --migrate-pr=handover", results["handover"], peer)
    figures("qompr.embed take_over over the socket", results["embed"], peer)


def real_helper_floor(rounds: int, workdir: str) -> None:
    program = shutil.which("qemu-pr-helper")
    if program is None or os.geteuid() != 0:
        print("qemu-pr-helper round trip: skipped (needs root and Debian's qemu-pr-helper)")
        return
    sub = os.path.join(workdir, "real")
    os.mkdir(sub)
    path = os.path.join(sub, "disk.img")
    with open(path, "wb") as f:
        f.write(bytes(512))
    fd = os.open(path, os.O_RDWR)
    cdb = PrInCdb(PrInAction.READ_KEYS, 8192).to_bytes().ljust(16, b"\0")
    with HelperProcess([program], workdir=sub) as helper, connected(helper.path) as sock:
        samples = timed(
            rounds, lambda: None, lambda: _discard([request(sock, cdb, fd) for _ in range(5)])
        )
    os.close(fd)
    print("Floor:")
    figures("qemu-pr-helper, five round trips (answered at once)", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} rounds")
    in_process(args.rounds)
    with tempfile.TemporaryDirectory(prefix="qompr-bench-migration-") as workdir:
        through_helper(args.rounds, workdir)
        real_helper_floor(args.rounds, workdir)


if __name__ == "__main__":
    main()
