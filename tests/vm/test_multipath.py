# SPDX-License-Identifier: MIT
"""``pr-manager-multipath`` on a real dm-multipath device: LIO behind three tcm_loop paths.

One boot serves every test (``paths=3``, ``reservation_key 0x123abc`` in multipath.conf).  In
the guest, :func:`guest_main` (this file, imported as ``vm.test_multipath``) drives
/dev/mapper/mpatha through ``pr-manager-multipath`` and the real libmpathpersist, and records
beside each answer what the paths themselves say: raw PR IN data through SG_IO on a path
(tests/vm/guest_tools.py, independent of qompr), ``sg_persist`` on every path and
``mpathpersist`` on the map.  The host-side tests assert on that record.

Sequence (K = the configured key, F = a foreign key set through one path with sg_persist):
doctor; READ KEYS and REPORT CAPABILITIES on an empty device; REGISTER with a key other than
the configured one (libmpathpersist refuses: SYNTAX_ERROR); REGISTER K on all paths; RESERVE;
RESERVE of another type (RESERVATION CONFLICT); RELEASE; PREEMPT of F's reservation; CLEAR;
REGISTER AND IGNORE EXISTING KEY; unregister; SPEC_I_PT with a SAS TransportID; malformed and
33 TransportIDs (answered without the library); READ FULL STATUS (refused, as qemu-pr-helper
refuses it); NOT READY from LIO (the TEST UNIT READY reconstruction); a path added after
REGISTER (multipathd registers K on it); the same without ``reservation_key`` (it does not);
multipathd stopped (doctor and object creation say so).  After the daemon section, a
reservation migrating between the map and path 3 taken out of it (QEMU 11's destination
sequence both ways, qompr.embed's handover both ways: tests/vm/mpath_migration.py).

PREEMPT AND ABORT is not run here: on Debian 12's kernel (6.1) LIO with tcm_loop hangs the LU
on PREEMPT AND ABORT even from plain ``sg_persist`` on one path (observed while writing this
test), so only the unit tests cover its translation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qompr.scsi import ReadFullStatusData
from qompr.scsi import SenseCode

from .guest_program import boot
from .guest_program import load_record
from .guest_tools import sg_io
from .mpath_migration import migration_section
from .vmbed import REPO
from .vmbed import VMResult

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

KEY = 0x123ABC
FOREIGN = 0xBBB
WRONG = 0xDEAD
MPATH_KEY = f"{KEY:#x}"
RESULT = "multipath.json"
#: How the bed boots for this module (bench/vmbed.py boots it the same way).
BED: dict[str, Any] = {"paths": 3, "mpath_key": MPATH_KEY, "cwd": REPO, "timeout": 400}
#: SAS address of the tcm_loop initiator of path N (tests/vm/guest-init.sh names them).
INITIATOR = 0x5001_4050_0000_B000
RESERVATION_CONFLICT = 0x18
CHECK_CONDITION = 0x02

GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.test_multipath as t; t.guest_main()'
"""


# ------------------------------------------------------------------------------------ guest side


def _sh(command: str) -> dict[str, Any]:
    proc = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False, timeout=120
    )
    return {"command": command, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def _slaves(mpath: str) -> list[str]:
    dm = os.path.basename(os.path.realpath(mpath))
    return sorted(os.listdir(f"/sys/block/{dm}/slaves"))


def _add_path(n: int) -> None:
    """Export the LUN through one more tcm_loop target (a new I_T nexus, a new sdX)."""
    target = f"/sys/kernel/config/target/loopback/naa.500140500000a{n:03x}/tpgt_1"
    os.makedirs(target)
    with open(f"{target}/nexus", "w") as nexus:
        nexus.write(f"naa.500140500000b{n:03x}")
    os.makedirs(f"{target}/lun/lun_0")
    os.symlink(os.environ["VMBED_LIO_DEV"], f"{target}/lun/lun_0/vmbed_port")


def _wait(what: Callable[[], bool], timeout: float) -> float:
    """Poll *what* until true; the seconds it took, or -1 on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if what():
            return round(time.monotonic() - start, 2)
        time.sleep(0.2)
    return -1.0


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Drive /dev/mapper/mpatha through pr-manager-multipath; record everything as JSON."""
    import qompr
    from qompr.errors import ConnectError
    from qompr.managers.multipath import PRManagerMultipath
    from qompr.managers.multipath import doctor_checks
    from qompr.managers.multipath import is_multipath
    from qompr.scsi import PrInCdb
    from qompr.scsi import PrOutCdb
    from qompr.scsi import PrOutParameters
    from qompr.scsi import ReadFullStatusData
    from qompr.scsi import TransportID

    env = os.environ
    mpath = env["VMBED_MPATH"]
    devs = env["VMBED_DEVS"].split()
    record: dict[str, Any] = {"devs": devs}

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    def note(name: str, value: Any) -> None:
        record[name] = value
        print(name, json.dumps(value)[:300], flush=True)
        save()

    tree = qompr.new_tree(load_entrypoints=False)
    start = time.monotonic()
    manager = tree.object_add("pr-manager-multipath", "mp0")
    assert isinstance(manager, PRManagerMultipath)
    note("create_seconds", round(time.monotonic() - start, 2))
    fd = os.open(mpath, os.O_RDWR)

    def answer(result: Any) -> dict[str, Any]:
        return {
            "status": int(result.status),
            "sense": result.sense.hex(),
            "data": result.data.hex(),
        }

    def pr_in(action: int, alloc: int = 8192) -> dict[str, Any]:
        return answer(manager.run(fd, PrInCdb(action, alloc).to_bytes()))

    def pr_out(action: int, data: bytes, pr_type: int = 0) -> dict[str, Any]:
        return answer(manager.run(fd, PrOutCdb(action, 0, pr_type, len(data)).to_bytes(), data))

    def params(rk: int = 0, sark: int = 0, tids: tuple[TransportID, ...] = ()) -> bytes:
        return PrOutParameters(
            reservation_key=rk, sa_key=sark, spec_i_pt=bool(tids), transport_ids=tids
        ).to_bytes()

    def path_in(dev: str, action: int, alloc: int = 8192) -> dict[str, Any]:
        """PR IN through SG_IO on one path (guest_tools, not qompr)."""
        got = sg_io(dev, PrInCdb(action, alloc).to_bytes(), data_in_len=alloc)
        return {"status": got.status, "data": got.data.hex()}

    def state(tag: str) -> None:
        """Keys and reservation as the manager, a path, sg_persist and mpathpersist see them."""
        note(
            tag,
            {
                "keys": pr_in(0),
                "resv": pr_in(1),
                "path_keys": path_in(devs[0], 0),
                "path_resv": path_in(devs[1], 1),
                "sg_keys": [_sh(f"sg_persist -n -i -k {dev}")["out"] for dev in devs],
                "sg_resv": _sh(f"sg_persist -n -i -r {devs[2]}")["out"],
                "mp_keys": _sh(f"mpathpersist -i -k {mpath}")["out"],
                "mp_resv": _sh(f"mpathpersist -i -r {mpath}")["out"],
            },
        )

    def full_status(dev: str) -> list[list[Any]]:
        got = sg_io(dev, PrInCdb(3, 8192).to_bytes(), data_in_len=8192)
        data = ReadFullStatusData.from_bytes(got.data)
        return [[d.reservation_key, d.transport_id.address] for d in data.descriptors]

    note("doctor", [[c.name, c.ok, c.detail] for c in doctor_checks(mpath)])
    note("doctor_cli", _sh(f"{sys.executable} -m qompr doctor --device {mpath}"))
    note("is_multipath", [is_multipath(fd)] + [is_multipath(os.open(d, os.O_RDONLY)) for d in devs])
    state("empty")
    note("rcap", {"manager": pr_in(2, 8), "path": path_in(devs[1], 2, 8)})
    note("register_wrong_key", pr_out(0, params(0, WRONG)))
    note("register", pr_out(0, params(0, KEY)))
    state("registered")
    note("reserve", pr_out(1, params(KEY), pr_type=1))
    state("reserved")
    note("reserve_other_type", pr_out(1, params(KEY), pr_type=3))
    note("release", pr_out(2, params(KEY), pr_type=1))
    state("released")
    # a foreign registrant through path 3 holds the reservation; the map preempts it
    note(
        "foreign",
        [
            _sh(f"sg_persist -n -o -I -S {FOREIGN:#x} {devs[2]}"),
            _sh(f"sg_persist -n -o -R -K {FOREIGN:#x} -T 1 {devs[2]}"),
        ],
    )
    state("foreign_holds")
    note("preempt", pr_out(4, params(KEY, FOREIGN), pr_type=3))
    state("preempted")
    note("clear", pr_out(3, params(KEY)))
    state("cleared")
    note("register_and_ignore", pr_out(6, params(0, KEY)))
    state("registered_again")
    note("unregister", pr_out(0, params(KEY, 0)))
    state("unregistered")
    sas2 = TransportID.sas(INITIATOR + 2)
    note("spec_i_pt", pr_out(0, params(0, KEY, (sas2,))))
    state("spec_i_pt_state")
    note("clear_again", pr_out(3, params(KEY)))
    bad = bytearray(params(0, KEY, (sas2,)))
    bad[28] = 0x01  # protocol 1 is not one qemu-pr-helper accepts
    note("malformed_tid", pr_out(0, bytes(bad)))
    many = tuple(TransportID.sas(INITIATOR + 0x100 + n) for n in range(33))
    note("tids_33", pr_out(0, params(0, KEY, many)))
    note("full_status", {"manager": pr_in(3), "path": path_in(devs[0], 3)})
    state("after_refusals")
    _daemon_section(note, fd, devs, mpath)
    try:
        migration_section(note, devs, mpath)
    except Exception:  # recorded: the host-side tests fail on it, the rest still runs
        note("mpmig_error", traceback.format_exc())

    # LIO answers NOT READY to PR OUT when it cannot write its APTPL directory
    os.rename("/var/target/pr", "/var/target/pr.off")
    note("not_ready", pr_out(0, params(0, KEY)))
    os.rename("/var/target/pr.off", "/var/target/pr")
    note("recover", [pr_out(6, params(0, KEY)), pr_out(3, params(KEY))])

    # multipathd registers K on a path that appears after the REGISTER
    note("register_before_new_path", pr_out(0, params(0, KEY)))
    before = _slaves(mpath)
    _add_path(4)
    note("path4_in_map", _wait(lambda: len(_slaves(mpath)) == len(before) + 1, 60))
    note(
        "path4_registered",
        _wait(lambda: pr_in(0)["data"][8:16] == f"{4 * 8:08x}", 30),
    )
    new = sorted(set(_slaves(mpath)) - set(before))
    note("path4_dev", new)
    note("path4_full_status", full_status(f"/dev/{new[0]}") if new else [])
    state("after_path4")

    # without reservation_key multipathd does not register a new path
    note(
        "drop_key",
        _sh("sed -i '/reservation_key/d' /etc/multipath.conf && multipathd reconfigure"),
    )
    _wait(lambda: _sh("multipathd getprkey map mpatha")["out"].strip() == "none", 30)
    note("doctor_without_key", [[c.name, c.ok, c.detail] for c in doctor_checks(mpath)])
    before = _slaves(mpath)
    _add_path(5)
    note("path5_in_map", _wait(lambda: len(_slaves(mpath)) == len(before) + 1, 60))
    time.sleep(5)  # multipathd's PR registration of a new path runs right after the add
    new = sorted(set(_slaves(mpath)) - set(before))
    note("path5_full_status", full_status(f"/dev/{new[0]}") if new else [])
    state("after_path5")

    # multipathd stopped
    note("stop_multipathd", _sh("pkill -x multipathd; sleep 1"))
    _wait(lambda: _sh("multipathd show daemon")["rc"] != 0, 20)
    note("doctor_down", [[c.name, c.ok, c.detail] for c in doctor_checks(mpath)])
    note("doctor_cli_down", _sh(f"{sys.executable} -m qompr doctor --device {mpath}"))
    note("connected_down", manager.is_connected())
    try:
        tree.object_add("pr-manager-multipath", "mp1")
        note("create_down", None)
    except ConnectError as exc:
        note("create_down", exc.render())
    note("keys_down", pr_in(0))
    record["done"] = True
    save()


def _daemon_section(note: Callable[[str, Any], None], fd: int, devs: list[str], mpath: str) -> None:
    """qompr-pr-helper with its default backend, driven by pr-manager-helper: the map's fd
    goes to libmpathpersist (every path registered), a path's fd to SG_IO."""
    import qompr
    from qompr.managers import PRManager
    from qompr.scsi import PrInCdb
    from qompr.scsi import PrOutCdb
    from qompr.scsi import PrOutParameters
    from qompr.testing import wait_for_socket

    sock = "/run/qompr-pr-helper.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "qompr.daemon.main", "-k", sock, "-v"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_socket(sock, 30, daemon)
        tree = qompr.new_tree(load_entrypoints=False)
        client = tree.object_add("pr-manager-helper", "helper0", path=sock)
        assert isinstance(client, PRManager)
        status = Path(f"/proc/{daemon.pid}/status").read_text()
        note("daemon_caps", re.findall(r"^(Cap(?:Eff|Prm)|Uid):\s*(.*)$", status, re.M))
        path_fd = os.open(devs[0], os.O_RDWR)

        def run(on: int, cdb: bytes, data: bytes = b"") -> dict[str, Any]:
            result = client.run(on, cdb, data)
            return {
                "status": int(result.status),
                "sense": result.sense.hex(),
                "data": result.data.hex(),
            }

        def register(rk: int, sark: int) -> bytes:
            return PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()

        note("daemon_prstatus_before", _sh("multipathd getprstatus map mpatha")["out"])
        note("daemon_register", run(fd, PrOutCdb(0, 0, 0, 24).to_bytes(), register(0, KEY)))
        note(
            "daemon_registered",
            {
                "sg_keys": [_sh(f"sg_persist -n -i -k {dev}")["out"] for dev in devs],
                "prstatus": _sh("multipathd getprstatus map mpatha")["out"],
                "map_keys": run(fd, PrInCdb(0, 64).to_bytes()),
                "path_keys": run(path_fd, PrInCdb(0, 64).to_bytes()),
                "path_sgio": sg_io(devs[0], PrInCdb(0, 64).to_bytes(), data_in_len=64).data.hex(),
                # READ FULL STATUS: the multipath path refuses it, SG_IO on a path answers it
                "map_full": run(fd, PrInCdb(3, 512).to_bytes()),
                "path_full": run(path_fd, PrInCdb(3, 512).to_bytes()),
            },
        )
        note("daemon_unregister", run(fd, PrOutCdb(0, 0, 0, 24).to_bytes(), register(KEY, 0)))
        note(
            "daemon_unregistered",
            {
                "sg_keys": [_sh(f"sg_persist -n -i -k {dev}")["out"] for dev in devs],
                "prstatus": _sh("multipathd getprstatus map mpatha")["out"],
            },
        )
        os.close(path_fd)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
        note("daemon_exit", [daemon.returncode, err[-2000:]])


# ------------------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def bed() -> VMResult:
    return boot(GUEST_SCRIPT, RESULT, **BED)


@pytest.fixture(scope="module")
def seen(bed: VMResult) -> dict[str, Any]:
    return load_record(bed, RESULT)


def keys_of(data_hex: str) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) of READ KEYS data."""
    data = bytes.fromhex(data_hex)
    length = int.from_bytes(data[4:8], "big")
    return int.from_bytes(data[0:4], "big"), [
        int.from_bytes(data[i : i + 8], "big") for i in range(8, 8 + length, 8)
    ]


def sg_keys(text: str) -> list[int]:
    """The keys sg_persist / mpathpersist print for READ KEYS."""
    return [int(k, 16) for k in re.findall(r"^\s+0x([0-9a-f]+)\s*$", text, re.M)]


def same_prefix(manager_hex: str, path_hex: str) -> bool:
    """The manager's zero-padded answer starts with the path's data, then zeros only."""
    manager, path = bytes.fromhex(manager_hex), bytes.fromhex(path_hex)
    return manager[: len(path)] == path and not any(manager[len(path) :])


def test_doctor_sees_library_multipathd_and_the_key(seen: dict[str, Any]) -> None:
    assert [name for name, _, _ in seen["doctor"]] == [
        "libmpathpersist",
        "multipathd",
        "reservation_key",
    ]
    assert all(ok for _, ok, _ in seen["doctor"]), seen["doctor"]
    assert "mpatha" in seen["doctor"][2][2] and MPATH_KEY in seen["doctor"][2][2]


def test_doctor_command_reports_each_check_and_fails_without_multipathd(
    seen: dict[str, Any],
) -> None:
    good, down = seen["doctor_cli"], seen["doctor_cli_down"]
    assert good["rc"] == 0, good
    lines = good["out"].splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[ok] libmpathpersist",
        "[ok] multipathd",
        "[ok] reservation_key",
    ]
    assert down["rc"] == 1, down
    assert "[FAIL] multipathd:" in down["out"] and "hint:" in down["out"]
    # the key check also fails by then: reservation_key was removed before multipathd stopped
    assert "[FAIL] reservation_key:" in down["out"]


def test_is_multipath_tells_the_map_from_its_paths(seen: dict[str, Any]) -> None:
    assert seen["is_multipath"] == [True, False, False, False]


def test_empty_device_answers_like_the_paths(seen: dict[str, Any]) -> None:
    empty = seen["empty"]
    assert empty["keys"]["status"] == 0 and len(bytes.fromhex(empty["keys"]["data"])) == 8192
    assert keys_of(empty["keys"]["data"])[1] == []
    assert same_prefix(empty["keys"]["data"], empty["path_keys"]["data"])
    assert same_prefix(empty["resv"]["data"], empty["path_resv"]["data"])


def test_report_capabilities_is_the_devices_with_byte_order_kept(seen: dict[str, Any]) -> None:
    manager, path = seen["rcap"]["manager"], seen["rcap"]["path"]
    assert manager["status"] == 0 and path["status"] == 0
    # qemu-pr-helper writes 6 bytes; the device's bytes 6-7 are reserved (zero)
    assert manager["data"] == path["data"][:12] + "0000"
    assert path["data"][8:12].lower() == "ea01"  # LIO's type mask: byte order survived


def test_register_with_another_key_than_the_configured_one_is_refused(
    seen: dict[str, Any],
) -> None:
    # libmpathpersist: "configured reservation key doesn't match" -> SYNTAX_ERROR
    refused = seen["register_wrong_key"]
    assert refused["status"] == CHECK_CONDITION
    assert refused["sense"] == SenseCode.LUN_COMM_FAILURE.to_bytes().hex()


def test_register_reaches_every_path(seen: dict[str, Any]) -> None:
    assert seen["register"]["status"] == 0
    state = seen["registered"]
    _, keys = keys_of(state["keys"]["data"])
    assert keys == [KEY] * 3
    assert same_prefix(state["keys"]["data"], state["path_keys"]["data"])
    assert [sg_keys(text) for text in state["sg_keys"]] == [[KEY] * 3] * 3
    assert sg_keys(state["mp_keys"]) == [KEY] * 3


def test_reserve_conflict_and_release(seen: dict[str, Any]) -> None:
    assert seen["reserve"]["status"] == 0
    held = seen["reserved"]
    data = bytes.fromhex(held["resv"]["data"])
    assert int.from_bytes(data[4:8], "big") == 16
    assert int.from_bytes(data[8:16], "big") == KEY and data[21] == 0x01
    assert same_prefix(held["resv"]["data"], held["path_resv"]["data"])
    assert f"Key={KEY:#x}" in held["sg_resv"] and "Write Exclusive" in held["sg_resv"]
    assert re.search(rf"Key\s*=\s*{KEY:#x}\b", held["mp_resv"])  # mpathpersist spaces it
    # another type while holding: RESERVATION CONFLICT, no sense
    assert seen["reserve_other_type"] == {"status": RESERVATION_CONFLICT, "sense": "", "data": ""}
    assert seen["release"]["status"] == 0
    released = bytes.fromhex(seen["released"]["resv"]["data"])
    assert int.from_bytes(released[4:8], "big") == 0
    assert "NO reservation" in seen["released"]["sg_resv"]


def test_preempt_takes_a_foreign_reservation(seen: dict[str, Any]) -> None:
    assert [step["rc"] for step in seen["foreign"]] == [0, 0]
    before = seen["foreign_holds"]
    assert sorted(keys_of(before["keys"]["data"])[1]) == sorted([KEY, KEY, FOREIGN])
    assert f"Key={FOREIGN:#x}" in before["sg_resv"]
    assert seen["preempt"]["status"] == 0
    after = seen["preempted"]
    assert keys_of(after["keys"]["data"])[1] == [KEY, KEY]
    data = bytes.fromhex(after["resv"]["data"])
    assert int.from_bytes(data[8:16], "big") == KEY and data[21] == 0x03
    assert "Exclusive Access" in after["sg_resv"]


def test_clear_register_and_ignore_and_unregister(seen: dict[str, Any]) -> None:
    assert seen["clear"]["status"] == 0
    assert keys_of(seen["cleared"]["keys"]["data"])[1] == []
    assert "NO reservation" in seen["cleared"]["sg_resv"]
    assert seen["register_and_ignore"]["status"] == 0
    assert keys_of(seen["registered_again"]["keys"]["data"])[1] == [KEY] * 3
    assert sg_keys(seen["registered_again"]["mp_keys"]) == [KEY] * 3
    assert seen["unregister"]["status"] == 0
    assert keys_of(seen["unregistered"]["keys"]["data"])[1] == []
    assert [sg_keys(text) for text in seen["unregistered"]["sg_keys"]] == [[]] * 3
    # the generation moves with each registration and CLEAR; LIO does not count unregistering
    registered, cleared, again, unregistered = (
        keys_of(seen[tag]["keys"]["data"])[0]
        for tag in ("registered", "cleared", "registered_again", "unregistered")
    )
    assert registered < cleared < again == unregistered


def test_spec_i_pt_transport_ids_reach_the_device(seen: dict[str, Any]) -> None:
    assert seen["spec_i_pt"]["status"] == 0
    assert keys_of(seen["spec_i_pt_state"]["keys"]["data"])[1] == [KEY] * 3
    assert seen["clear_again"]["status"] == 0


def test_refusals_never_reach_the_device(seen: dict[str, Any]) -> None:
    invalid_param = SenseCode.INVALID_PARAM.to_bytes().hex()
    assert seen["malformed_tid"] == {"status": CHECK_CONDITION, "sense": invalid_param, "data": ""}
    # qemu-pr-helper aborts on the 33rd TransportID; qompr answers and goes on
    assert seen["tids_33"] == {"status": CHECK_CONDITION, "sense": invalid_param, "data": ""}
    # READ FULL STATUS is refused as qemu-pr-helper refuses it, though LIO implements it
    invalid_field = SenseCode.INVALID_FIELD.to_bytes().hex()
    assert seen["full_status"]["manager"] == {
        "status": CHECK_CONDITION,
        "sense": invalid_field,
        "data": "",
    }
    assert seen["full_status"]["path"]["status"] == 0
    assert keys_of(seen["after_refusals"]["keys"]["data"])[1] == []


def test_daemon_default_backend_sends_the_map_to_libmpathpersist(seen: dict[str, Any]) -> None:
    # CAP_SYS_ADMIN (bit 21) is kept beside CAP_SYS_RAWIO (bit 17) while multipath is on
    caps = dict(seen["daemon_caps"])
    assert int(caps["CapEff"], 16) == int(caps["CapPrm"], 16) == (1 << 17) | (1 << 21)
    assert seen["daemon_register"] == {"status": 0, "sense": "", "data": ""}
    after = seen["daemon_registered"]
    # one REGISTER on the map's fd registered every path: libmpathpersist did it, not SG_IO
    assert [sg_keys(text) for text in after["sg_keys"]] == [[KEY] * 3] * 3
    # ... and told multipathd (prflag; 0.9.4 prints it as a number, newer ones as a word)
    assert after["prstatus"] != seen["daemon_prstatus_before"]
    assert after["prstatus"].strip() in ("1", "set")
    assert keys_of(after["map_keys"]["data"])[1] == [KEY] * 3
    # a path's fd through the same daemon gets SG_IO: the path's own bytes
    assert after["path_keys"]["data"] == after["path_sgio"]
    invalid_field = SenseCode.INVALID_FIELD.to_bytes().hex()
    assert after["map_full"] == {"status": CHECK_CONDITION, "sense": invalid_field, "data": ""}
    assert after["path_full"]["status"] == 0
    full = ReadFullStatusData.from_bytes(bytes.fromhex(after["path_full"]["data"]))
    assert [d.reservation_key for d in full.descriptors] == [KEY] * 3
    assert seen["daemon_unregister"]["status"] == 0
    gone = seen["daemon_unregistered"]
    assert [sg_keys(text) for text in gone["sg_keys"]] == [[]] * 3
    assert gone["prstatus"] == seen["daemon_prstatus_before"]
    assert seen["daemon_exit"][0] == 0, seen["daemon_exit"]


def test_not_ready_is_reconstructed_with_test_unit_ready(seen: dict[str, Any]) -> None:
    # libmpathpersist returns SENSE_NOT_READY; TEST UNIT READY on the map is GOOD, so the
    # answer is qemu-pr-helper's generic NOT READY, CAUSE NOT REPORTABLE (02/04/00)
    assert seen["not_ready"]["status"] == CHECK_CONDITION
    assert seen["not_ready"]["sense"] == SenseCode.NOT_READY.to_bytes().hex()
    assert [step["status"] for step in seen["recover"]] == [0, 0]


def test_multipathd_registers_a_path_added_after_register(seen: dict[str, Any]) -> None:
    assert seen["register_before_new_path"]["status"] == 0
    assert seen["path4_in_map"] >= 0, "path 4 never joined mpatha"
    assert seen["path4_registered"] >= 0, "multipathd did not register path 4"
    assert keys_of(seen["after_path4"]["keys"]["data"])[1] == [KEY] * 4
    assert [KEY, INITIATOR + 4] in seen["path4_full_status"]


def test_without_reservation_key_a_new_path_stays_unregistered(seen: dict[str, Any]) -> None:
    assert seen["drop_key"]["rc"] == 0
    key_check = seen["doctor_without_key"][2]
    assert key_check[0] == "reservation_key" and key_check[1] is False
    assert seen["path5_in_map"] >= 0, "path 5 never joined mpatha"
    registrants = [address for _, address in seen["path5_full_status"]]
    assert INITIATOR + 4 in registrants and INITIATOR + 5 not in registrants
    assert keys_of(seen["after_path5"]["keys"]["data"])[1] == [KEY] * 4


def test_without_multipathd_creation_fails_and_doctor_says_why(seen: dict[str, Any]) -> None:
    daemon = seen["doctor_down"][1]
    assert daemon[0] == "multipathd" and daemon[1] is False
    assert "/org/kernel/linux/storage/multipathd" in daemon[2]
    assert seen["connected_down"] is False
    assert seen["create_down"] is not None and "multipathd is not reachable" in seen["create_down"]
    # the library itself still reads keys on the map
    assert seen["keys_down"]["status"] == 0
    assert keys_of(seen["keys_down"]["data"])[1] == [KEY] * 4


def test_run_finishes(bed: VMResult, seen: dict[str, Any]) -> None:
    print(
        f"\nmultipath VM run: wall {bed.wall_time:.1f}s, guest {bed.timings}, "
        f"object creation {seen['create_seconds']}s, path 4 registered after "
        f"{seen['path4_registered']}s",
        file=sys.stderr,
    )
    # Finishing is the behaviour; how long it takes is bench/vmbed.py's to measure, beside an
    # empty boot of the same bed in the same run (a wall budget here failed under load).
    assert bed.exit_status == 0 and seen["done"] is True


# ------------------------------------------- migration between the map and a path outside it

WE_RO = 5
GOOD_STEP = {"status": 0, "sense": []}
#: ILLEGAL REQUEST, INVALID FIELD IN CDB: LIO's answer to PREEMPT with TYPE 0
INVALID_FIELD_IN_CDB = [0x05, 0x24, 0x00]
#: bed paths of host A (the map, path 3 taken out) and host B (path 3)
MAP_PATHS, PATH_B = (1, 2), 3


def _mpmig(seen: dict[str, Any], name: str) -> Any:
    assert "mpmig_error" not in seen, seen["mpmig_error"]
    return seen[name]


def _registrant(path: int) -> dict[str, Any]:
    return {"path": path, "key": KEY, "holder": False}


def test_migration_set_up_takes_path_3_out_and_puts_it_back(seen: dict[str, Any]) -> None:
    assert _mpmig(seen, "mpmig_map_paths")[0] is True
    assert len(seen["mpmig_map_paths"][1]) == 2
    # helper A's libmpathpersist logged the handover's refused temporary keys
    (a_status, a_err), (b_status, b_err), (h_status, _) = seen["mpmig_daemon_exits"]
    assert a_status == b_status == h_status == 0 and b_err == ""
    assert f"configured reservation key doesn't match: {MPATH_KEY}" in a_err
    assert seen["mpmig_restored"][0] is True and len(seen["mpmig_restored"][1]) == 3
    assert seen["mpmig_after"] == {"keys": [], "reservation": None, "registrants": []}


def test_qemu11_sequence_map_to_path_moves_a_we_ro_reservation(seen: dict[str, Any]) -> None:
    case = _mpmig(seen, "mpmig_replay")["a_to_b"]["we_ro"]
    assert list(case["steps"].values()) == [GOOD_STEP] * 4, case
    # the map registered both its paths; the PREEMPT through B removed both and moved
    # the reservation to B with the guest's key
    assert case["state"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": WE_RO},
        "registrants": [{"path": PATH_B, "key": KEY, "holder": True}],
    }


@pytest.mark.parametrize(
    ("direction", "refusal"),
    [
        # map to path: LIO refuses TYPE 0 (ILLEGAL REQUEST, INVALID FIELD IN CDB)
        ("a_to_b", INVALID_FIELD_IN_CDB),
        # path to map: libmpathpersist refuses it (its illegal-request status, answered as
        # qemu-pr-helper answers it: INVALID FIELD IN PARAMETER LIST)
        ("b_to_a", [0x05, 0x26, 0x00]),
    ],
)
def test_qemu11_sequence_not_reserved(
    seen: dict[str, Any], direction: str, refusal: list[int]
) -> None:
    replayed = _mpmig(seen, "mpmig_replay")[direction]
    none = replayed["none"]
    # TYPE 0 refused: both map paths stay registered beside B (stale source registrations)
    assert none["steps"]["register"] == GOOD_STEP
    assert none["steps"]["preempt"] == {"status": CHECK_CONDITION, "sense": refusal}
    assert none["state"] == {
        "keys": [KEY] * 3,
        "reservation": None,
        "registrants": [_registrant(1), _registrant(2), _registrant(PATH_B)],
    }
    # with a valid TYPE, LIO removes every registration with the key, the sender's too
    valid = replayed["none_we_ro"]
    assert valid["steps"]["preempt"] == GOOD_STEP
    assert valid["state"] == {"keys": [], "reservation": None, "registrants": []}


def test_qemu11_sequence_path_to_map_leaves_one_map_path_registered(
    seen: dict[str, Any],
) -> None:
    case = _mpmig(seen, "mpmig_replay")["b_to_a"]["we_ro"]
    assert list(case["steps"].values()) == [GOOD_STEP] * 4, case
    # libmpathpersist sends the PREEMPT through one path of the map: it removes B's
    # registration and the map's OTHER path's (same key, another nexus) too
    state = case["state"]
    assert state["keys"] == [KEY] and state["reservation"] == {"key": KEY, "type": WE_RO}
    (holder,) = state["registrants"]
    assert holder["path"] in MAP_PATHS and holder["key"] == KEY and holder["holder"] is True


@pytest.mark.parametrize("case", ["we_ro", "none", "none_we_ro"])
def test_qemu11_sequence_path_to_map_with_migrate_pr_handover(
    seen: dict[str, Any], case: str
) -> None:
    # Helper H serves the map with --migrate-pr=handover: it answers QEMU 11's PREEMPT with
    # the handover (the guest's key only, libmpathpersist refusing the temporary one), so
    # both map paths end registered, the reservation (if any) with the map, B's registration
    # gone -- where passthrough left one map path unregistered or B registered.
    replayed = _mpmig(seen, "mpmig_replay")["b_to_h"][case]
    assert list(replayed["steps"].values()) == [GOOD_STEP] * len(replayed["steps"]), replayed
    _holds(replayed["state"], MAP_PATHS, WE_RO if case == "we_ro" else 0)


#: The handover onto the map: its temporary key refused by libmpathpersist (ABORTED
#: COMMAND, LOGICAL UNIT COMMUNICATION FAILURE) and nothing changed, so the guest's key only:
#: REGISTER AND IGNORE on every map path, QEMU 11's PREEMPT (RK = SARK = the key) through one
#: path, REGISTER AND IGNORE again for the map path that PREEMPT removed with the source.
ONTO_THE_MAP = [
    "READ_KEYS=GOOD",
    "READ_RESERVATION=GOOD",
    "REGISTER=CHECK_CONDITION",
    "READ_KEYS=GOOD",
    "REGISTER_AND_IGNORE=GOOD",
    "PREEMPT=GOOD",
    "REGISTER_AND_IGNORE=GOOD",
]


def _onto_the_map(pr_type: int) -> list[str]:
    """:data:`ONTO_THE_MAP`, and the check whether an all-registrants reservation is left."""
    return ONTO_THE_MAP + (["READ_RESERVATION=GOOD"] if pr_type == EA_AR else [])


#: The handover onto path 3 (B): a temporary key, PREEMPT, the guest's key.
ONTO_B = ["READ_KEYS=GOOD", "READ_RESERVATION=GOOD", "REGISTER=GOOD", "PREEMPT=GOOD"]
ONTO_B += ["REGISTER=GOOD"]
HANDOVER_CASES = {"we_ro": WE_RO, "we": 1, "ea_ar": 8, "none": 0}
EA_AR = 8


def _holds(state: dict[str, Any], where: tuple[int, ...], pr_type: int) -> None:
    """*state* is: the guest's key registered through the bed paths *where* and nowhere
    else, and the reservation the guest held (*pr_type*, 0 none) with them."""
    assert state["keys"] == [KEY] * len(where), state
    assert [(r["path"], r["key"]) for r in state["registrants"]] == [(p, KEY) for p in where]
    holders = [r["path"] for r in state["registrants"] if r["holder"]]
    if not pr_type:
        assert state["reservation"] is None and holders == [], state
    elif pr_type == EA_AR:
        # an all-registrants reservation: READ RESERVATION shows key 0, every registrant holds
        assert state["reservation"] == {"key": 0, "type": pr_type}, state
        assert holders == list(where), state
    else:
        assert state["reservation"] == {"key": KEY, "type": pr_type}, state
        assert len(holders) == 1 and holders[0] in where, state  # the path it went down


def _handover(seen: dict[str, Any], direction: str, case: str) -> dict[str, Any]:
    run: dict[str, Any] = _mpmig(seen, "mpmig_handover")[direction][case]
    assert run["source"] == [GOOD_STEP] * (2 if HANDOVER_CASES[case] else 1)
    # the source's helper tracked the guest's key and type from its PR OUT
    assert run["tracked"] == {"key": KEY, "type": HANDOVER_CASES[case]}
    return run


@pytest.mark.parametrize("case", HANDOVER_CASES)
def test_embed_handover_onto_the_map_with_the_guests_key_and_back(
    seen: dict[str, Any], case: str
) -> None:
    pr_type = HANDOVER_CASES[case]
    run = _handover(seen, "b_to_map", case)
    _holds(run["before"], (PATH_B,), pr_type)
    done = run["switch_over"]
    assert "error" not in done, done
    assert done["key"] == MPATH_KEY and done["type"] == pr_type
    assert done["method"] == ("reservation" if pr_type else "registration")
    assert done["steps"] == _onto_the_map(pr_type)
    # both map paths registered, B's registration gone, the reservation with the map
    _holds(run["after_switch_over"], MAP_PATHS, pr_type)
    back = run["roll_back"]
    assert "error" not in back, back
    assert back["steps"] == ONTO_B
    _holds(run["after_roll_back"], (PATH_B,), pr_type)
    # the handover's time beside what one PR OUT through the map costs (in the first test
    # of the pair below: the map is the source there)
    print(
        f"\nmultipath handover path -> map ({case}): {done['seconds']:.3f} s in "
        f"{len(done['steps'])} commands",
        file=sys.stderr,
    )


@pytest.mark.parametrize("case", HANDOVER_CASES)
def test_embed_handover_from_the_map_and_back_onto_it(seen: dict[str, Any], case: str) -> None:
    pr_type = HANDOVER_CASES[case]
    run = _handover(seen, "map_to_b", case)
    _holds(run["before"], MAP_PATHS, pr_type)
    done = run["switch_over"]
    assert "error" not in done, done
    assert done["key"] == MPATH_KEY and done["type"] == pr_type
    # one PREEMPT removed both map paths' registrations
    assert done["steps"] == ONTO_B
    _holds(run["after_switch_over"], (PATH_B,), pr_type)
    back = run["roll_back"]
    assert "error" not in back, back
    assert back["steps"] == _onto_the_map(pr_type)
    _holds(run["after_roll_back"], MAP_PATHS, pr_type)
    per_command = ", ".join(f"{t:.3f}" for t in run["source_seconds"])
    print(
        f"\nmultipath handover map -> path ({case}): {done['seconds']:.3f} s in "
        f"{len(done['steps'])} commands; a PR OUT through the map: {per_command} s",
        file=sys.stderr,
    )
