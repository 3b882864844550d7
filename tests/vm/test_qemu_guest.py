# SPDX-License-Identifier: MIT
"""A real QEMU guest's PERSISTENT RESERVE commands through qompr-pr-helper, end to end.

One boot of the bed (``paths=3``, the real ``qemu-pr-helper`` started) runs
:func:`guest_main` (this file, imported as ``vm.test_qemu_guest``): it starts
``qompr-pr-helper`` and boots a second-level guest (tests/vm/nested.py) with
``qemu-system-x86_64`` and two ``scsi-block`` disks, shaped by :mod:`qompr.embed` as libvirt
shapes them:

* SCSI id 0 = the bed's ``$VMBED_DEV1`` with ``pr-manager`` ``pr-helper0`` → qompr-pr-helper;
* SCSI id 1 = ``$VMBED_DEV2`` with ``pr-manager`` ``pr-helper-libvirt-2-storage`` → the real
  qemu-pr-helper.

Inside, ``sg_persist`` and ``sg_raw`` send PR IN / PR OUT and WRITE(10) to both disks: QEMU's
scsi-block hands PR commands to its pr-manager objects, which pass them with the fd to the
helpers, which run them on LIO.  Both disks are one LUN seen through two I_T nexuses, so the
two helpers must show the same state: every PR IN is sent through both and the outputs must be
identical; REGISTER, RESERVE, PREEMPT and CLEAR go through one helper and are checked through
the other; a WRITE through the non-holder is RESERVATION CONFLICT.

The second-level guest runs under TCG inside TCG and takes about a minute to boot; everything
is done in that one boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import pytest

from .guest_program import boot
from .guest_program import load_record
from .nested import Step
from .nested import build_initramfs
from .nested import parse_console
from .vmbed import REPO
from .vmbed import VMResult
from .vmbed import ensure_vmlinux
from .vmbed import host_kernel

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

RESULT = "qemu_guest.json"
KEY_OURS = 0xA1
KEY_REAL = 0xB2
WRITE10 = "2a 00 00 00 00 00 00 00 01 00"
#: sg3_utils' exit status for RESERVATION CONFLICT (SG_LIB_CAT_RES_CONFLICT).
SG_RES_CONFLICT = 24

PERSIST = "sg_persist -n"
#: (name, command) run in the second-level guest; $D0 = ours, $D1 = the real helper's.
STEPS: list[tuple[str, str]] = [
    ("keys_empty_0", f"{PERSIST} -k $D0"),
    ("keys_empty_1", f"{PERSIST} -k $D1"),
    ("caps_0", f"{PERSIST} -c $D0"),
    ("caps_1", f"{PERSIST} -c $D1"),
    ("register_0", f"{PERSIST} --out --register --param-sark={KEY_OURS:#x} $D0"),
    ("register_1", f"{PERSIST} --out --register --param-sark={KEY_REAL:#x} $D1"),
    ("keys_0", f"{PERSIST} -k $D0"),
    ("keys_1", f"{PERSIST} -k $D1"),
    ("reserve_0", f"{PERSIST} --out --reserve --param-rk={KEY_OURS:#x} --prout-type=1 $D0"),
    ("resv_0", f"{PERSIST} -r $D0"),
    ("resv_1", f"{PERSIST} -r $D1"),
    ("status_0", f"{PERSIST} -s $D0"),
    ("status_1", f"{PERSIST} -s $D1"),
    ("zero", "dd if=/dev/zero of=/tmp/zero bs=512 count=1"),
    ("write_1", f"sg_raw -s 512 -i /tmp/zero $D1 {WRITE10}"),
    ("write_0", f"sg_raw -s 512 -i /tmp/zero $D0 {WRITE10}"),
    (
        "preempt_1",
        f"{PERSIST} --out --preempt --param-rk={KEY_REAL:#x} --param-sark={KEY_OURS:#x} "
        "--prout-type=3 $D1",
    ),
    # the PREEMPT left REGISTRATIONS PREEMPTED for disk 0's nexus: the first command gets it
    ("unit_attention_0", f"{PERSIST} -k $D0"),
    ("keys_after_0", f"{PERSIST} -k $D0"),
    ("keys_after_1", f"{PERSIST} -k $D1"),
    ("resv_after_0", f"{PERSIST} -r $D0"),
    ("resv_after_1", f"{PERSIST} -r $D1"),
    ("write_after_0", f"sg_raw -s 512 -i /tmp/zero $D0 {WRITE10}"),
    ("reregister_0", f"{PERSIST} --out --register --param-sark={KEY_OURS:#x} $D0"),
    ("clear_0", f"{PERSIST} --out --clear --param-rk={KEY_OURS:#x} $D0"),
    ("unit_attention_1", f"{PERSIST} -k $D1"),
    ("keys_end_0", f"{PERSIST} -k $D0"),
    ("keys_end_1", f"{PERSIST} -k $D1"),
    ("resv_end_0", f"{PERSIST} -r $D0"),
    ("resv_end_1", f"{PERSIST} -r $D1"),
]

GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.test_qemu_guest as t; t.guest_main()'
"""


# ------------------------------------------------------------------------------------ guest side


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Start qompr-pr-helper, boot the second-level guest on two scsi-block disks, record."""
    from qompr.embed import managed_alias
    from qompr.embed import pr_helper_object
    from qompr.embed import scsi_block_disk
    from qompr.embed import unmanaged_alias
    from qompr.testing import wait_for_socket

    env = os.environ
    record: dict[str, Any] = {}

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    sock = "/run/qompr-pr-helper.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "qompr.daemon.main", "-k", sock],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_socket(sock, 60, daemon)
        ours, real = managed_alias(), unmanaged_alias("libvirt-2-storage")
        disks = [
            scsi_block_disk(env["VMBED_DEV1"], ours, index=1, scsi_id=0),
            scsi_block_disk(env["VMBED_DEV2"], real, index=2, scsi_id=1),
        ]
        console = os.path.join(env["VMBED_RESULT_DIR"], "nested-console.log")
        argv = [
            "qemu-system-x86_64",
            *("-accel", "tcg", "-cpu", "qemu64", "-m", "256", "-smp", "1"),
            *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
            *("-serial", f"file:{console}"),
            *("-kernel", env["NESTED_KERNEL"], "-initrd", env["NESTED_INITRD"]),
            "-append",
            "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off acpi=off",
            *("-object", json.dumps(pr_helper_object(ours, sock))),
            *("-object", json.dumps(pr_helper_object(real, env["VMBED_PRH_SOCK"]))),
            *("-device", "virtio-scsi-pci,id=scsi0"),
        ]
        for disk in disks:
            argv += disk.argv()
        record["argv"] = argv
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=400, check=False)
        record["nested_seconds"] = round(time.monotonic() - start, 1)
        record["qemu"] = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
        with open(console, errors="replace") as text:
            record["console"] = text.read()
        record["done"] = True
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
        record["daemon"] = {"rc": daemon.returncode, "stderr": err[-3000:]}
        save()


# ------------------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> VMResult:
    kver = host_kernel()
    kernel = ensure_vmlinux(kver)
    directory = tmp_path_factory.mktemp("nested")
    directory.chmod(0o755)
    initrd = build_initramfs(kver, STEPS, ["/usr/bin/sg_persist", "/usr/bin/sg_raw"],
                             directory / "initrd.cpio")  # fmt: skip
    return boot(
        GUEST_SCRIPT,
        RESULT,
        paths=3,
        pr_helper=True,
        env={
            "NESTED_KERNEL": str(kernel or f"/boot/vmlinuz-{kver}"),
            "NESTED_INITRD": str(initrd),
        },
        cwd=REPO,
        timeout=600,
    )


@pytest.fixture(scope="module")
def record(bed: VMResult) -> dict[str, Any]:
    return load_record(bed, RESULT)


@pytest.fixture(scope="module")
def steps(record: dict[str, Any]) -> Mapping[str, Step]:
    disks, steps, done = parse_console(record["console"])
    assert done, f"the second-level guest did not finish:\n{record['console'][-3000:]}"
    assert len(disks) == 2 and disks[0] != disks[1], disks
    return steps


def test_qemu_accepts_the_embed_arguments_and_exits_cleanly(record: dict[str, Any]) -> None:
    assert record["qemu"]["rc"] == 0, record["qemu"]
    assert record["qemu"]["stderr"] == ""
    assert any('"pr-manager":"pr-helper0"' in arg for arg in record["argv"])
    assert record["daemon"]["rc"] == 0, record["daemon"]


def test_every_step_ran(steps: Mapping[str, Step]) -> None:
    assert list(steps) == [name for name, _ in STEPS]


@pytest.mark.parametrize(
    "pair",
    [
        "keys_empty",
        "caps",
        "keys",
        "resv",
        "status",
        "keys_after",
        "resv_after",
        "keys_end",
        "resv_end",
    ],
)
def test_pr_in_through_both_helpers_is_identical(steps: Mapping[str, Step], pair: str) -> None:
    ours, real = steps[f"{pair}_0"], steps[f"{pair}_1"]
    assert ours.rc == 0, ours
    assert (ours.rc, ours.output) == (real.rc, real.output)


def test_registrations_through_either_helper_reach_the_lun(steps: Mapping[str, Step]) -> None:
    assert "NO registered reservation keys" in steps["keys_empty_0"].output
    assert steps["register_0"].rc == 0 and steps["register_1"].rc == 0
    text = steps["keys_0"].output
    assert "2 registered reservation keys follow" in text
    assert f"{KEY_OURS:#x}" in text and f"{KEY_REAL:#x}" in text


def test_the_reservation_blocks_the_other_nexus(steps: Mapping[str, Step]) -> None:
    assert steps["reserve_0"].rc == 0
    assert f"Key={KEY_OURS:#x}" in steps["resv_1"].output
    assert "Write Exclusive" in steps["resv_1"].output
    # the full status names the holder and both registrants' SAS addresses
    status = steps["status_1"].output
    assert status.count("Key=") == 2 and "reservation holder" in status
    assert steps["write_1"].rc == SG_RES_CONFLICT, steps["write_1"]
    assert steps["write_0"].rc == 0, steps["write_0"]


def test_preempt_through_the_real_helper_is_seen_through_ours(steps: Mapping[str, Step]) -> None:
    assert steps["preempt_1"].rc == 0
    # REGISTRATIONS PREEMPTED reaches the guest through QEMU and qompr-pr-helper
    assert steps["unit_attention_0"].rc == 6, steps["unit_attention_0"]
    after = steps["keys_after_0"].output
    assert "1 registered reservation key follows" in after and f"{KEY_REAL:#x}" in after
    assert f"Key={KEY_REAL:#x}" in steps["resv_after_0"].output
    assert "Exclusive Access" in steps["resv_after_0"].output
    # disk 0's nexus lost its registration: its WRITE conflicts now
    assert steps["write_after_0"].rc == SG_RES_CONFLICT


def test_clear_through_ours_empties_the_lun(steps: Mapping[str, Step]) -> None:
    assert steps["reregister_0"].rc == 0 and steps["clear_0"].rc == 0
    assert steps["unit_attention_1"].rc == 6  # RESERVATIONS PREEMPTED for the other nexus
    assert "NO registered reservation keys" in steps["keys_end_0"].output
    assert "there is NO reservation held" in steps["resv_end_1"].output


def test_timing(bed: VMResult, record: dict[str, Any]) -> None:
    print(
        f"\nnested QEMU guest: {record['nested_seconds']}s; bed wall {bed.wall_time:.1f}s",
        file=sys.stderr,
    )
    assert record["nested_seconds"] < 400
