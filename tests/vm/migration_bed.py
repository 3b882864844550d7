# SPDX-License-Identifier: MIT
"""The live-migration scenario of ``tests/vm/test_migration.py``, run in the bed's guest.

A second-level guest (:mod:`.nested`) runs in a QEMU on "host A" (bed path 1, helper A) and is
migrated with QMP to QEMUs started with ``-incoming defer -S`` on "host B" (bed path 2,
helper B), three times: cancelled at ``pre-switchover``, completed but the destination killed
before it runs (the handover rolled back, the source resumed), and completed for good.  The
handover at the switch-over is a :class:`Handover`; :func:`migrate_scenario` records the
LU's state after each phase (read through the unregistered path 3), the migrations' and the
handover's durations and both guests' consoles.

Every wait is bounded (:func:`.qmp.wait_until` with generous deadlines); QEMU's own state
(``query-migrate``, ``query-status``) and the guest's console are what is waited on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

from .qemu11_replay import lu_state
from .qemu11_replay import path_of_initiators
from .qemu11_replay import reset_lu
from .qmp import QMP
from .qmp import wait_until

__all__ = ["WRITE_LINE", "Handover", "NestedVM", "migrate_scenario", "parse_writes"]

#: Generous: the second-level guest runs under TCG inside TCG on a shared 2-core machine (at
#: load 9-10 its kernel took 320 s to find its disk).
BOOT_DEADLINE = 900.0
MIGRATE_DEADLINE = 300.0
WRITES_DEADLINE = 300.0
EXIT_DEADLINE = 300.0
#: One round of the guest's write loop: counter, dd's exit status for the WRITE and for the
#: READ, the guest's uptime.
WRITE_LINE = re.compile(r"^@@mig w (\d+) (\d+) (\d+) ([\d.]+)\r?$", re.M)
SECTOR = 512
#: Rounds of the guest's write loop to see after each phase: the first may have been issued
#: before the pause, the second was issued after the resumption.
ROUNDS = 2


def parse_writes(console: str) -> list[tuple[int, int, int, float]]:
    """The write loop's rounds in a console text: (counter, write rc, read rc, uptime)."""
    return [(int(i), int(w), int(r), float(up)) for i, w, r, up in WRITE_LINE.findall(console)]


class Handover(Protocol):
    """What a VM manager runs around one migration (the ``qompr.embed`` API, adapted)."""

    def prepare(self, source_pid: int) -> dict[str, Any]:
        """Learn the guest's key and type (before the migration starts)."""

    def switch_over(self) -> dict[str, Any]:
        """With source and destination paused: the destination takes over."""

    def roll_back(self) -> dict[str, Any] | None:
        """The migration failed: the source gets everything back (None: nothing to undo)."""

    def close(self) -> None:
        """Close the connections and fds it opened."""


class NestedVM:
    """One QEMU process of the second-level guest, with its QMP socket and console file."""

    def __init__(self, name: str, device: str, helper_sock: str, *, incoming: bool) -> None:

        from qompr.embed import managed_alias
        from qompr.embed import pr_helper_object
        from qompr.embed import scsi_block_disk

        env = os.environ
        self.name = name
        self.console_path = f"/run/nested-{name}.console"
        self.qmp_path = f"/run/nested-{name}.qmp"
        alias = managed_alias()
        argv = [
            "qemu-system-x86_64",
            *("-name", name, "-accel", "tcg", "-cpu", "qemu64", "-m", "128", "-smp", "1"),
            *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
            *("-serial", f"file:{self.console_path}"),
            *("-qmp", f"unix:{self.qmp_path},server=on,wait=off"),
            *("-kernel", env["NESTED_KERNEL"], "-initrd", env["NESTED_INITRD"]),
            "-append",
            "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off acpi=off",
            *("-object", json.dumps(pr_helper_object(alias, helper_sock))),
            *("-device", "virtio-scsi-pci,id=scsi0"),
            *scsi_block_disk(device, alias, index=1, scsi_id=0).argv(),
        ]
        if incoming:
            argv += ["-incoming", "defer", "-S"]
        self.argv = argv
        self.log_path = f"/run/nested-{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_until(
            f"{name}'s QMP socket",
            lambda: self.alive() and (True if os.path.exists(self.qmp_path) else None),
            EXIT_DEADLINE,
        )
        self.qmp = QMP(self.qmp_path, timeout=EXIT_DEADLINE)

    def alive(self) -> bool:
        """True while the process runs; a QEMU that exited raises (with its output)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"QEMU {self.name} exited {self.proc.returncode}: {self.log()}")
        return True

    def log(self) -> str:
        with open(self.log_path, errors="replace") as text:
            return text.read()[-3000:]

    def console(self) -> str:
        try:
            with open(self.console_path, errors="replace") as text:
                return text.read()
        except FileNotFoundError:
            return ""

    def writes(self) -> int:
        """How many write-loop lines the guest printed on this QEMU's console."""
        return len(WRITE_LINE.findall(self.console()))

    def wait_writes(self, count: int, deadline: float) -> int:
        return wait_until(
            f"{count} write lines on {self.name}'s console",
            lambda: n if self.alive() and (n := self.writes()) >= count else None,
            deadline,
            pause=0.5,
        )

    def migration(self) -> dict[str, Any]:
        info: dict[str, Any] = self.qmp.execute("query-migrate")
        return info

    def wait_migration(self, states: tuple[str, ...], deadline: float) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            info = self.migration()
            if info.get("status") in ("failed",) and "failed" not in states:
                raise RuntimeError(f"migration from {self.name} failed: {info}")
            return info if info.get("status") in states else None

        return wait_until(f"migration status {states} on {self.name}", probe, deadline)

    def wait_status(self, status: str, deadline: float) -> None:
        wait_until(
            f"{self.name} in run state {status}",
            lambda: True if self.qmp.execute("query-status")["status"] == status else None,
            deadline,
        )

    def finish(self, deadline: float, *, kill: bool = False) -> int:
        """Wait for the process to exit (SIGKILL first with *kill*, and at the deadline)."""
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        try:
            rc = self.proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.qmp.close()
        return rc


def _start_migration(source: NestedVM, destination: NestedVM, uri: str) -> None:
    """``migrate`` *source* to *destination*, stopping at ``pre-switchover``."""
    destination.qmp.execute("migrate-incoming", uri=uri)
    source.qmp.execute(
        "migrate-set-capabilities",
        capabilities=[{"capability": "pause-before-switchover", "state": True}],
    )
    source.qmp.execute("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    source.qmp.execute("migrate", uri=uri)


def _set_stop_flag(lio_file: str, lba: int) -> None:
    """What ends the guest's write loop: "QOMPR-STOP" in block *lba* of the LU (written
    into LIO's backing file; LIO's fileio reads go through the same page cache)."""
    fd = os.open(lio_file, os.O_RDWR)
    try:
        os.pwrite(fd, b"QOMPR-STOP".ljust(SECTOR, b"\0"), lba * SECTOR)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_block(lio_file: str, lba: int) -> str:
    fd = os.open(lio_file, os.O_RDONLY)
    try:
        return os.pread(fd, SECTOR, lba * SECTOR).decode(errors="replace")
    finally:
        os.close(fd)


def migrate_scenario(
    env: Mapping[str, str],
    handover_for: Callable[[str], Handover],
    *,
    data_lba: int,
    flag_lba: int,
    helper_a: str,
    helper_b: str,
    save_progress: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The three migrations of the module docstring; returns what to assert on.

    :param handover_for: the :class:`Handover` for a phase (``cancel``, ``rollback``,
        ``switch``).
    """
    devs = [env["VMBED_DEV1"], env["VMBED_DEV2"], env["VMBED_DEV3"]]
    paths = path_of_initiators(dict(env))
    out: dict[str, Any] = {"state": {}, "timings": {}, "consoles": {}}
    state = out["state"]
    timings = out["timings"]

    def observe(name: str) -> None:
        state[name] = lu_state(devs[2], paths)
        save_progress(out)

    reset_lu(devs)
    start = time.monotonic()
    source = NestedVM("source", devs[0], helper_a, incoming=False)
    destinations: list[NestedVM] = []
    handovers: list[Handover] = []
    try:
        wait_until(
            "the second-level guest's disk",
            lambda: (
                True if source.alive() and "@@qompr-nested@@ disks" in source.console() else None
            ),
            BOOT_DEADLINE,
            pause=0.5,
        )
        timings["nested_kernel"] = round(time.monotonic() - start, 1)
        source.wait_writes(ROUNDS, BOOT_DEADLINE)
        timings["nested_boot"] = round(time.monotonic() - start, 1)
        observe("start")

        # 1. cancelled at pre-switchover: nothing was handed over, nothing moves
        handover = handover_for("cancel")
        handovers.append(handover)
        out["tracked"] = handover.prepare(source.proc.pid)
        dest = NestedVM("dest1", devs[1], helper_b, incoming=True)
        destinations.append(dest)
        start = time.monotonic()
        _start_migration(source, dest, "unix:/run/migrate-1.sock")
        source.wait_migration(("pre-switchover",), MIGRATE_DEADLINE)
        timings["migrate_cancel"] = round(time.monotonic() - start, 1)
        before = source.writes()
        source.qmp.execute("migrate_cancel")
        info = source.wait_migration(("cancelled",), MIGRATE_DEADLINE)
        out["cancel"] = {"status": info["status"], "roll_back": handover.roll_back()}
        out["cancel"]["destination_rc"] = dest.finish(EXIT_DEADLINE)
        observe("after_cancel")
        out["cancel"]["writes_after"] = (
            source.wait_writes(before + ROUNDS, WRITES_DEADLINE) - before
        )

        # 2. completed and handed over, then the destination dies before it runs: roll back
        handover = handover_for("rollback")
        handovers.append(handover)
        handover.prepare(source.proc.pid)
        dest = NestedVM("dest2", devs[1], helper_b, incoming=True)
        destinations.append(dest)
        start = time.monotonic()
        _start_migration(source, dest, "unix:/run/migrate-2.sock")
        source.wait_migration(("pre-switchover",), MIGRATE_DEADLINE)
        source.qmp.execute("migrate-continue", state="pre-switchover")
        info = source.wait_migration(("completed",), MIGRATE_DEADLINE)
        timings["migrate_rollback"] = round(time.monotonic() - start, 1)
        out["rollback"] = {"status": info["status"], "handover": handover.switch_over()}
        observe("handed_over_then_failed")
        out["rollback"]["destination_rc"] = dest.finish(EXIT_DEADLINE, kill=True)
        before = source.writes()
        start = time.monotonic()
        out["rollback"]["roll_back"] = handover.roll_back()
        timings["rollback"] = round(time.monotonic() - start, 3)
        source.qmp.execute("cont")
        observe("after_rollback")
        out["rollback"]["writes_after"] = (
            source.wait_writes(before + ROUNDS, WRITES_DEADLINE) - before
        )

        # 3. completed, handed over, the destination runs
        handover = handover_for("switch")
        handovers.append(handover)
        handover.prepare(source.proc.pid)
        dest = NestedVM("dest3", devs[1], helper_b, incoming=True)
        destinations.append(dest)
        start = time.monotonic()
        _start_migration(source, dest, "unix:/run/migrate-3.sock")
        source.wait_migration(("pre-switchover",), MIGRATE_DEADLINE)
        stopped = time.monotonic()  # the source is stopped from here on
        source.qmp.execute("migrate-continue", state="pre-switchover")
        info = source.wait_migration(("completed",), MIGRATE_DEADLINE)
        dest.wait_status("paused", MIGRATE_DEADLINE)
        timings["migrate_switch"] = round(time.monotonic() - start, 1)
        handover_start = time.monotonic()
        result = handover.switch_over()
        timings["handover"] = round(time.monotonic() - handover_start, 3)
        dest.qmp.execute("cont")
        timings["switch_total"] = round(time.monotonic() - stopped, 3)
        out["switch"] = {
            "status": info["status"],
            "downtime_ms": info.get("downtime"),
            "handover": result,
        }
        observe("after_switch")
        out["switch"]["writes_after"] = dest.wait_writes(ROUNDS, WRITES_DEADLINE)
        source.qmp.execute("quit")
        out["source_rc"] = source.finish(EXIT_DEADLINE)
        _set_stop_flag(env["VMBED_LIO_FILE"], flag_lba)
        out["destination_rc"] = dest.finish(BOOT_DEADLINE)
        out["data_block"] = _read_block(env["VMBED_LIO_FILE"], data_lba).rstrip("\0")
    finally:
        for handover in handovers:
            handover.close()
        for vm in [source, *destinations]:
            if vm.proc.poll() is None:
                vm.proc.kill()
                vm.proc.wait()
            out["consoles"][vm.name] = vm.console()
        out["consoles"]["destination"] = destinations[-1].console() if destinations else ""
        save_progress(out)
    return out
