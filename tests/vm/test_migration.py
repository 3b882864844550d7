# SPDX-License-Identifier: MIT
"""A reservation follows a live-migrating QEMU guest from host A to host B, on real LIO.

One boot of the bed (``paths=3``, the real ``qemu-pr-helper`` started) runs
:func:`guest_main` (this file, imported as ``vm.test_migration``).  The bed's LU is reached
through three I_T nexuses: path 1 is "host A", path 2 "host B", path 3 an observer that
never registers (it reads the LU's state with SG_IO).  Each host has its own
``qompr-pr-helper`` (helper A serves path 1's fds, helper B path 2's), and the real
``qemu-pr-helper`` runs twice beside them for comparison.

* **QEMU 11's destination sequence** (:mod:`.qemu11_replay`): for each of the six types, the
  not-reserved case (TYPE 0) and a PREEMPT that only removes registrations, the source
  registers (and reserves) through helper A and the destination sends REGISTER + PREEMPT
  through helper B, once through qompr-pr-helper and once through the real qemu-pr-helper;
  the answers and the LU's state afterwards must be the same, and what LIO does is pinned.
* **Live migration of a guest with a reservation** (a second-level guest on QEMU 7.2 whose
  ``scsi-block`` disk goes through helper A, migrated to a QEMU on host B with qompr's
  handover at the switch-over) comes with the handover API; the guest's steps are here.

Everything runs in the one boot; the second-level guest boots once (it is what costs: TCG
inside TCG).
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
from .nested import build_initramfs
from .qemu11_replay import CASES
from .vmbed import REPO
from .vmbed import VMResult
from .vmbed import ensure_vmlinux
from .vmbed import host_kernel

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

RESULT = "migration.json"
KEY = 0x716D6967  # "qmig"
WE_RO = 5
GOOD, CHECK_CONDITION = 0x00, 0x02
ILLEGAL_REQUEST = 0x05
#: the block the guest writes its counter to, and the block whose "QOMPR-STOP" ends its loop
DATA_LBA, FLAG_LBA = 16, 100
STOP = b"QOMPR-STOP"
WRITE_MARK = "@@mig w"

SOCK = {"A": "/run/qompr-a.sock", "B": "/run/qompr-b.sock"}
CONTROL = {"A": "/run/qompr-a.control", "B": "/run/qompr-b.control"}
REAL_B_SOCK = "/run/qemu-pr-helper-b.sock"

_LOOP = (
    "i=0; while [ $i -lt 1000000 ]; do "
    "printf '%-511s\\n' \"qompr-migration $i\" >/tmp/blk; "
    f"sg_raw -s 512 -i /tmp/blk $D0 2a 00 00 00 00 {DATA_LBA:02x} 00 00 01 00 >/dev/null 2>&1; "
    "w=$?; rm -f /tmp/flag; "
    f"sg_raw -r 512 -o /tmp/flag $D0 28 00 00 00 00 {FLAG_LBA:02x} 00 00 01 00 >/dev/null 2>&1; "
    f'r=$?; echo "{WRITE_MARK} $i $w $r" >/dev/console; '
    f"grep -q {STOP.decode()} /tmp/flag && break; i=$((i+1)); done"
)
PERSIST = "sg_persist -n"
#: (name, command) run in the second-level guest; $D0 is its one disk.
STEPS: list[tuple[str, str]] = [
    ("register", f"{PERSIST} --out --register --param-sark={KEY:#x} $D0"),
    ("reserve", f"{PERSIST} --out --reserve --param-rk={KEY:#x} --prout-type={WE_RO} $D0"),
    ("keys_before", f"{PERSIST} -k $D0"),
    ("write_loop", _LOOP),
    ("keys_after", f"{PERSIST} -k $D0"),
    ("resv_after", f"{PERSIST} -r $D0"),
]

GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.test_migration as t; t.guest_main()'
"""


# ------------------------------------------------------------------------------------ guest side


def _start_helpers(env: Mapping[str, str]) -> dict[str, subprocess.Popen[str]]:
    """qompr-pr-helper A and B (with control sockets) and a second real qemu-pr-helper."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for host in ("A", "B"):
        procs[host] = subprocess.Popen(
            [sys.executable, "-m", "qompr.daemon.main", "-k", SOCK[host],
             f"--control={CONTROL[host]}"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    procs["real_B"] = subprocess.Popen(
        ["qemu-pr-helper", "-k", REAL_B_SOCK], stderr=subprocess.PIPE, text=True
    )
    return procs


def _replays(env: Mapping[str, str]) -> dict[str, Any]:
    """Every case of :data:`CASES` through both kinds of helper (see the module docstring)."""
    from .guest_tools import PRHelperClient
    from .qemu11_replay import lu_state
    from .qemu11_replay import path_of_initiators
    from .qemu11_replay import replay
    from .qemu11_replay import reset_lu
    from .qemu11_replay import unit_attention

    devs = [env["VMBED_DEV1"], env["VMBED_DEV2"], env["VMBED_DEV3"]]
    paths = path_of_initiators(dict(env))
    sockets = {"qompr": (SOCK["A"], SOCK["B"]), "real": (env["VMBED_PRH_SOCK"], REAL_B_SOCK)}
    out: dict[str, Any] = {}
    for kind, (sock_a, sock_b) in sockets.items():
        out[kind] = {}
        for name, reserved, preempt_type in CASES:
            reset_lu(devs)
            fd_a = os.open(devs[0], os.O_RDWR)
            fd_b = os.open(devs[1], os.O_RDWR)
            src, dst = PRHelperClient(sock_a), PRHelperClient(sock_b)
            try:
                steps = replay((src, fd_a), (dst, fd_b), KEY, reserved, preempt_type)
            finally:
                src.close()
                dst.close()
                os.close(fd_a)
                os.close(fd_b)
            out[kind][name] = {
                "steps": steps,
                "state": lu_state(devs[2], paths),
                "source_ua": unit_attention(devs[0]),
                "destination_ua": unit_attention(devs[1]),
            }
    reset_lu(devs)
    return out


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Start the helpers, replay QEMU 11's sequence, migrate the nested guest; record."""
    from qompr.testing import wait_for_socket

    env = os.environ
    phases = env.get("MIGVM_PHASES", "replay").split(",")
    record: dict[str, Any] = {"phases": phases}

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    procs = _start_helpers(env)
    try:
        start = time.monotonic()
        for name, path in (("A", SOCK["A"]), ("B", SOCK["B"]), ("real_B", REAL_B_SOCK)):
            wait_for_socket(path, 120, procs[name])
        record["helpers_ready_seconds"] = round(time.monotonic() - start, 2)
        if "replay" in phases:
            start = time.monotonic()
            record["replay"] = _replays(env)
            record["replay_seconds"] = round(time.monotonic() - start, 2)
        record["done"] = True
    finally:
        for name, proc in procs.items():
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            record.setdefault("helpers", {})[name] = {"rc": proc.returncode, "stderr": err[-3000:]}
        save()


# ------------------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> VMResult:
    kver = host_kernel()
    kernel = ensure_vmlinux(kver)
    directory = tmp_path_factory.mktemp("migration")
    directory.chmod(0o755)
    initrd = build_initramfs(kver, STEPS, ["/usr/bin/sg_persist", "/usr/bin/sg_raw"],
                             directory / "initrd.cpio", disks=1)  # fmt: skip
    return boot(
        GUEST_SCRIPT,
        RESULT,
        paths=3,
        pr_helper=True,
        env={
            "NESTED_KERNEL": str(kernel or f"/boot/vmlinuz-{kver}"),
            "NESTED_INITRD": str(initrd),
            "MIGVM_PHASES": os.environ.get("MIGVM_PHASES", "replay"),
        },
        cwd=REPO,
        timeout=900,
    )


@pytest.fixture(scope="module")
def record(bed: VMResult) -> dict[str, Any]:
    return load_record(bed, RESULT)


def _phase(record: dict[str, Any], name: str) -> None:
    if name not in record["phases"]:
        pytest.fail(f"MIGVM_PHASES={','.join(record['phases'])} left out {name!r}")


# ---------------------------------------------------------------- QEMU 11's sequence, replayed

CASE_NAMES = [name for name, _, _ in CASES]


@pytest.fixture(scope="module")
def replays(record: dict[str, Any]) -> dict[str, Any]:
    _phase(record, "replay")
    result: dict[str, Any] = record["replay"]
    return result


def _registrant(path: int, holder: bool) -> dict[str, Any]:
    return {"path": path, "key": KEY, "holder": holder}


@pytest.mark.parametrize("case", CASE_NAMES)
def test_qemu11_sequence_same_outcome_through_both_helpers(
    replays: dict[str, Any], case: str
) -> None:
    assert replays["qompr"][case] == replays["real"][case]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_qemu11_source_setup_and_register_succeed(replays: dict[str, Any], case: str) -> None:
    for kind in ("qompr", "real"):
        steps = replays[kind][case]["steps"]
        assert steps["source_register"]["status"] == GOOD, (kind, steps)
        assert steps.get("source_reserve", {"status": GOOD})["status"] == GOOD, (kind, steps)
        assert steps["register"]["status"] == GOOD, (kind, steps)


@pytest.mark.parametrize("case", ["we", "ea", "we_ro", "ea_ro"])
def test_lio_preempt_moves_a_single_holder_reservation(replays: dict[str, Any], case: str) -> None:
    """SPC-4 §5.14.11.2.4: the holder's key preempted, its registrations removed except the
    sender's, the reservation the sender's with the new type: the source nexus is gone."""
    seen = replays["qompr"][case]
    pr_type = {"we": 1, "ea": 3, "we_ro": 5, "ea_ro": 6}[case]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": pr_type},
        "registrants": [_registrant(2, True)],
    }
    # REGISTRATIONS PREEMPTED (06/2A/05) for the source's nexus
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


@pytest.mark.parametrize("case", ["we_ar", "ea_ar"])
def test_lio_preempt_moves_an_all_registrants_reservation(
    replays: dict[str, Any], case: str
) -> None:
    """All-registrants with a non-zero SARK: LIO removes the source's registration and keeps
    the sender's, so the reservation (key 0: every registrant holds it) stays, B's alone."""
    seen = replays["qompr"][case]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {
        "keys": [KEY],
        "reservation": {"key": 0, "type": {"we_ar": 7, "ea_ar": 8}[case]},
        "registrants": [_registrant(2, True)],
    }
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


def test_lio_refuses_preempt_with_type_0(replays: dict[str, Any]) -> None:
    """QEMU 11's not-reserved case: LIO answers ILLEGAL REQUEST, INVALID FIELD IN CDB
    (05/24/00), so the source's registration stays beside the destination's."""
    seen = replays["qompr"]["none"]
    assert seen["steps"]["preempt"] == {"status": CHECK_CONDITION, "sense": [0x05, 0x24, 0x00]}
    assert seen["state"] == {
        "keys": [KEY, KEY],
        "reservation": None,
        "registrants": [_registrant(1, False), _registrant(2, False)],
    }
    assert seen["source_ua"] == [] and seen["destination_ua"] == []


def test_lio_preempt_that_only_removes_registrations_removes_the_senders_own(
    replays: dict[str, Any],
) -> None:
    """Nothing reserved and a valid TYPE: LIO removes every registration with the key, the
    sender's own too (SPC-4 §5.14.11.2.3 removes only the others'): no key is left."""
    seen = replays["qompr"]["none_we_ro"]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {"keys": [], "reservation": None, "registrants": []}
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


def test_replay_timing(record: dict[str, Any]) -> None:
    _phase(record, "replay")
    print(f"\nQEMU 11 replay, 2 x {len(CASES)} cases: {record['replay_seconds']}s",
          file=sys.stderr)  # fmt: skip
    assert record["helpers"]["A"]["rc"] == 0, record["helpers"]["A"]
    assert record["helpers"]["B"]["rc"] == 0, record["helpers"]["B"]
