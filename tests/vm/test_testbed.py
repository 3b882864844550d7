# SPDX-License-Identifier: MIT
"""Smoke tests of the VM test bed: real LIO SCSI targets, sg3-utils, qemu-pr-helper, multipath.

Two boots serve every test (a boot costs ~5 s, ~8 s with multipath, under TCG): the module
fixtures run one guest script each, which records what every command did (``vmbed_run``)
and what the guest-side Python saw (JSON files); the tests assert on those records.

Each test checks real behaviour of the devices, not just that the bed came up:
(a) a key registered through one I_T nexus is read back through the two others (one LUN);
(b) Write Exclusive held by path 1: WRITE through path 2 is RESERVATION CONFLICT, READ is not;
(c) the real qemu-pr-helper in the guest executes PR OUT / PR IN on an fd it is passed;
(d) dm-multipath: mpathpersist registers the key on every path of /dev/mapper/mpatha;
(e) the project's own Python runs in the guest and imports qompr.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import qompr

from .vmbed import REPO
from .vmbed import VMBedError
from .vmbed import VMResult
from .vmbed import guest_python
from .vmbed import run_in_vm

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

KEY_A = 0x1111
KEY_C = 0xC0FFEE
MPATH_KEY = "0xabc"
RESERVATION_CONFLICT = 0x18
#: sg3_utils exit status for a RESERVATION CONFLICT (SG_LIB_CAT_RES_CONFLICT)
SG_EXIT_RES_CONFLICT = 24
#: the exit status the LIO script ends with, to check that the harness returns it
LIO_SCRIPT_EXIT = 3

PY_PREAMBLE = """\
import json, os, sys
sys.path.insert(0, os.environ["VMBED_VMDIR"])
from guest_tools import *
E = os.environ
"""

LIO_SCRIPT = rf"""
set -u
W10="2a 00 00 00 00 00 00 00 01 00"   # WRITE(10) LBA 0, 1 block
R10="28 00 00 00 00 00 00 00 01 00"   # READ(10) LBA 0, 1 block

# (a) one LUN behind three I_T nexuses
vmbed_run a_register sg_persist -n --out --register --param-sark={KEY_A:#x} "$VMBED_DEV1"
for i in 1 2 3; do
    dev=VMBED_DEV$i
    vmbed_run a_keys$i sg_persist -n -k "${{!dev}}"
done
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
sgs = [E[f"VMBED_SG{{i}}"] for i in (1, 2, 3)]
write_result("a_sgio.json", {{sg: read_keys(sg) for sg in sgs}})
PY

# (b) Write Exclusive held through path 1
vmbed_run b_reserve sg_persist -n --out --reserve --param-rk={KEY_A:#x} --prout-type=1 \
    "$VMBED_DEV1"
vmbed_run b_resv2 sg_persist -n -r "$VMBED_DEV2"
head -c 512 /dev/urandom >/tmp/block
vmbed_run b_write2 sg_raw -s 512 -i /tmp/block "$VMBED_DEV2" $W10
vmbed_run b_read2 sg_raw -r 512 -o /tmp/read2 "$VMBED_DEV2" $R10
vmbed_run b_dd2 sg_dd if=/tmp/block of="$VMBED_SG2" bs=512 count=1
vmbed_run b_write1 sg_raw -s 512 -i /tmp/block "$VMBED_DEV1" $W10
vmbed_run b_read3 sg_raw -r 512 -o /tmp/read3 "$VMBED_DEV3" $R10
vmbed_run b_same cmp /tmp/block /tmp/read3
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
block = bytes(512)
write10 = bytes.fromhex("2a00000000000000 0100")
read10 = bytes.fromhex("2800000000000000 0100")
w2 = sg_io(E["VMBED_DEV2"], write10, data_out=block)
r2 = sg_io(E["VMBED_DEV2"], read10, data_in_len=512)
write_result("b_sgio.json", {{"write2": w2.status, "read2": r2.status, "read2_len": len(r2.data)}})
PY
vmbed_run b_clear sg_persist -n --out --clear --param-rk={KEY_A:#x} "$VMBED_DEV1"
for dev in "$VMBED_DEV2" "$VMBED_DEV3"; do  # consume any UNIT ATTENTION the CLEAR left
    sg_persist -n -k "$dev" >/dev/null 2>&1
done

# (c) the real qemu-pr-helper
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
out = {{}}
helper = PRHelperClient(E["VMBED_PRH_SOCK"])
out["features"] = helper.features
fd1 = os.open(E["VMBED_DEV1"], os.O_RDWR)
fd3 = os.open(E["VMBED_DEV3"], os.O_RDWR)
r = helper.run(fd3, pr_out_cdb(0), pr_out_params(0, {KEY_C}))
out["register"] = r.result
r = helper.run(fd1, pr_in_cdb(0, 256))
out["read_keys"] = [r.result, *parse_read_keys(r.data)]
out["sgio_keys"] = read_keys(E["VMBED_DEV2"])
r = helper.run(fd3, pr_out_cdb(1, 1), pr_out_params({KEY_C}))
out["reserve"] = r.result
r = helper.run(fd1, pr_out_cdb(1, 1), pr_out_params({KEY_C}))
out["reserve_unregistered"] = [r.result, r.sense.hex()]
r = helper.run(fd1, pr_in_cdb(1, 256))
out["read_reservation"] = [r.result, r.data.hex()]
try:  # TEST UNIT READY is not a PR command: the helper hangs up
    helper.run(fd1, bytes(6))
    out["non_pr_cdb"] = "answered"
except (ConnectionError, OSError) as exc:
    out["non_pr_cdb"] = type(exc).__name__
write_result("c_prhelper.json", out)
PY
vmbed_run c_resv2 sg_persist -n -r "$VMBED_DEV2"
vmbed_run c_clear sg_persist -n --out --clear --param-rk={KEY_C:#x} "$VMBED_DEV3"

# (f) pr-manager-emulated with lu-id=wwn: the three /dev/sdX of the one LUN are one logical
# unit (its NAA designator, read with INQUIRY VPD 83h through SG_IO), as on hosts that see a
# shared LUN under different names; sg_vpd reads the designator independently of qompr
vmbed_run f_vpd sg_vpd -p di "$VMBED_DEV1"
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
import tempfile
from qompr.plugins import new_tree
from qompr.scsi import Nexus, PrInAction, PrInCdb, PrOutAction, ReadKeysData
from qompr.testing import pr_out_command
tree = new_tree(load_entrypoints=False)
state = os.path.join(tempfile.mkdtemp(), "state.db")
emu = tree.object_add("pr-manager-emulated", "w", state=state, lu_id="wwn")
fds = [os.open(E[f"VMBED_DEV{{i}}"], os.O_RDWR) for i in (1, 2, 3)]
out = {{"names": [emu.logical_unit(fd) for fd in fds]}}
cmd = pr_out_command(PrOutAction.REGISTER, sark=0x77)
out["register"] = int(emu.execute(fds[0], *cmd, nexus=Nexus("vm:a")).status)
keys = emu.execute(fds[2], PrInCdb(PrInAction.READ_KEYS, 255).to_bytes(), nexus=Nexus("vm:b"))
out["keys_through_dev3"] = list(ReadKeysData.from_bytes(keys.data).keys)
try:
    emu.logical_unit(os.open(state, os.O_RDONLY))
    out["regular_file"] = "named"
except OSError as exc:
    out["regular_file"] = str(exc)
write_result("f_wwn.json", out)
PY

# (e) the project's Python
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
import time
t0 = time.monotonic()
import qompr
fd = os.open(E["VMBED_DEV1"], os.O_RDWR)
os.close(fd)
info = {{
    "version": qompr.__version__,
    "file": qompr.__file__,
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "uid": os.getuid(),
    "import_seconds": time.monotonic() - t0,
}}
write_result("e_python.json", info)
with open(os.path.join(E["HOST_OUT"], "e_python.json"), "w") as out:  # a host rw dir
    json.dump(info, out)
PY

echo "stderr reaches the host" >&2
exit {LIO_SCRIPT_EXIT}
"""

MPATH_SCRIPT = rf"""
vmbed_run d_ll multipath -ll
vmbed_run d_wrong_key mpathpersist --out --register --param-sark=0xdead "$VMBED_MPATH"
vmbed_run d_register mpathpersist --out --register --param-sark={MPATH_KEY} "$VMBED_MPATH"
vmbed_run d_keys mpathpersist -i -k "$VMBED_MPATH"
vmbed_run d_status sg_persist -n -s "$VMBED_DEV2"
"$VMBED_PYTHON" - <<'PY'
{PY_PREAMBLE}
write_result("d_sgio.json", [read_keys(E["VMBED_DEV%d" % i]) for i in (1, 2, 3)])
PY
vmbed_run d_reserve mpathpersist --out --reserve --param-rk={MPATH_KEY} --prout-type=5 \
    "$VMBED_MPATH"
vmbed_run d_resv mpathpersist -i -r "$VMBED_MPATH"
vmbed_run d_write dd if=/dev/urandom of="$VMBED_MPATH" bs=4096 count=4 oflag=direct
exit 0
"""


@pytest.fixture(scope="module")
def host_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host directory the LIO boot mounts read-write (``rw_dirs``)."""
    return tmp_path_factory.mktemp("vm-rw")


@pytest.fixture(scope="module")
def lio_run(host_out: Path) -> VMResult:
    """One boot: 3 paths + qemu-pr-helper; checks (a), (b), (c), (e), (f)."""
    return run_in_vm(
        LIO_SCRIPT,
        paths=3,
        pr_helper=True,
        env={"HOST_OUT": str(host_out)},
        rw_dirs=[host_out],
        timeout=240,
    )


@pytest.fixture(scope="module")
def mpath_run() -> VMResult:
    """One boot: 3 paths under dm-multipath with a reservation_key; check (d)."""
    return run_in_vm(MPATH_SCRIPT, paths=3, mpath_key=MPATH_KEY, timeout=240)


def _ok(result: VMResult, name: str) -> str:
    cmd = result.command(name)
    assert cmd.exit_status == 0, f"{name}: exit {cmd.exit_status}\n{cmd.stdout}\n{cmd.stderr}"
    return cmd.stdout


def _keys(text: str) -> list[int]:
    return [int(k, 16) for k in re.findall(r"^\s+(0x[0-9a-f]+)\s*$", text, re.M)]


# ------------------------------------------------------------------------------ the harness


def test_harness_returns_status_output_env_and_timings(lio_run: VMResult, host_out: Path) -> None:
    assert lio_run.exit_status == LIO_SCRIPT_EXIT, lio_run.describe()
    assert "stderr reaches the host" in lio_run.stderr
    assert "--- a_register" in lio_run.stdout
    env = lio_run.env
    assert env["VMBED_PATHS"] == "3"
    devs = [env[f"VMBED_DEV{i}"] for i in (1, 2, 3)]
    sgs = [env[f"VMBED_SG{i}"] for i in (1, 2, 3)]
    assert env["VMBED_DEVS"].split() == devs and env["VMBED_SGS"].split() == sgs
    assert len(set(devs)) == 3 and all(re.fullmatch(r"/dev/sd[a-z]+", d) for d in devs)
    assert len(set(sgs)) == 3 and all(re.fullmatch(r"/dev/sg\d+", s) for s in sgs)
    initiators = {env[f"VMBED_INITIATOR{i}"] for i in (1, 2, 3)}
    assert len(initiators) == 3
    assert env["VMBED_PRH_SOCK"] == "/run/qemu-pr-helper.sock"
    assert env["VMBED_PYTHON"] == guest_python()
    assert env["VMBED_RW"] == os.path.realpath(host_out)
    assert "VMBED_MPATH" not in env
    for milestone in ("stage2", "lio", "pr_helper", "script_start", "script_end"):
        assert milestone in lio_run.timings
    assert "Linux version" not in lio_run.console_log  # booted quiet
    assert lio_run.run_dir is None  # removed


def test_harness_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="paths"):
        run_in_vm("true", paths=0)
    with pytest.raises(ValueError, match="mpath_key"):
        run_in_vm("true", mpath_key="abc")
    with pytest.raises(ValueError, match="directory"):
        run_in_vm("true", rw_dirs=[tmp_path / "missing"])


# ------------------------------------------------------------------------------ (a)


def test_a_key_registered_on_path_1_is_seen_on_paths_2_and_3(lio_run: VMResult) -> None:
    _ok(lio_run, "a_register")
    for i in (1, 2, 3):
        out = _ok(lio_run, f"a_keys{i}")
        assert "1 registered reservation key" in out, out
        assert _keys(out) == [KEY_A]
    # the same through SG_IO on the sg nodes, from the guest's Python
    seen: dict[str, Any] = lio_run.json("a_sgio.json")
    assert len(seen) == 3
    assert all(keys == [1, [KEY_A]] for keys in seen.values()), seen


# ------------------------------------------------------------------------------ (b)


def test_b_write_exclusive_conflicts_writes_not_reads_on_other_path(lio_run: VMResult) -> None:
    _ok(lio_run, "b_reserve")
    resv = _ok(lio_run, "b_resv2")
    assert f"Key={KEY_A:#x}" in resv and "Write Exclusive" in resv, resv
    write2 = lio_run.command("b_write2")
    assert write2.exit_status == SG_EXIT_RES_CONFLICT, write2
    assert "Reservation Conflict" in write2.stderr
    read2 = lio_run.command("b_read2")
    assert read2.exit_status == 0 and "Good" in read2.stderr, read2
    dd2 = lio_run.command("b_dd2")
    assert dd2.exit_status != 0 and "Reservation Conflict" in dd2.stderr, dd2
    # the holder writes; path 3 reads back what it wrote
    _ok(lio_run, "b_write1")
    _ok(lio_run, "b_read3")
    _ok(lio_run, "b_same")
    assert lio_run.json("b_sgio.json") == {"write2": 0x18, "read2": 0, "read2_len": 512}
    _ok(lio_run, "b_clear")


# ------------------------------------------------------------------------------ (c)


def test_c_real_qemu_pr_helper_answers(lio_run: VMResult) -> None:
    out = lio_run.json("c_prhelper.json")
    assert out["features"] == 0
    assert out["register"] == 0  # GOOD
    # READ KEYS through the helper on another path's fd, and directly: same generation, key
    status, generation, keys = out["read_keys"]
    assert status == 0 and keys == [KEY_C]
    assert out["sgio_keys"] == [generation, [KEY_C]]
    assert out["reserve"] == 0
    # path 1 is not registered: LIO answers RESERVATION CONFLICT, passed through
    assert out["reserve_unregistered"][0] == RESERVATION_CONFLICT
    status, data = out["read_reservation"]
    assert status == 0
    raw = bytes.fromhex(data)
    assert int.from_bytes(raw[4:8], "big") == 16  # one reservation descriptor
    assert int.from_bytes(raw[8:16], "big") == KEY_C and raw[21] & 0x0F == 1
    assert out["non_pr_cdb"] == "ConnectionError"
    resv = _ok(lio_run, "c_resv2")
    assert f"Key={KEY_C:#x}" in resv and "Write Exclusive" in resv
    _ok(lio_run, "c_clear")
    assert "closing socket" in lio_run.logs["qemu-pr-helper.log"]


# ------------------------------------------------------------------------------ (d)


def test_d_multipath_registers_every_path(mpath_run: VMResult) -> None:
    assert mpath_run.exit_status == 0, mpath_run.describe()
    assert mpath_run.env["VMBED_MPATH"] == "/dev/mapper/mpatha"
    assert mpath_run.env["VMBED_MPATH_KEY"] == MPATH_KEY
    topology = _ok(mpath_run, "d_ll")
    assert topology.startswith("mpatha ") and topology.count("active ready running") == 3
    # reservation_key in multipath.conf: mpathpersist refuses another key
    wrong = mpath_run.command("d_wrong_key")
    assert wrong.exit_status != 0
    assert "doesn't match" in mpath_run.logs["multipathd.log"] + wrong.stderr + wrong.stdout
    _ok(mpath_run, "d_register")
    assert _keys(_ok(mpath_run, "d_keys")) == [int(MPATH_KEY, 16)] * 3
    status = _ok(mpath_run, "d_status")
    for i in (1, 2, 3):  # one registration per I_T nexus
        initiator = mpath_run.env[f"VMBED_INITIATOR{i}"].removeprefix("naa.")
        assert f"SAS address: 0x{initiator}" in status, status
    assert mpath_run.json("d_sgio.json") == [[3, [int(MPATH_KEY, 16)] * 3]] * 3
    _ok(mpath_run, "d_reserve")
    assert "Write Exclusive, registrants only" in _ok(mpath_run, "d_resv")
    _ok(mpath_run, "d_write")  # every path is registered: I/O through the map still works


# ------------------------------------------------------------------------------ (e)


def test_e_project_python_imports_qompr_in_the_guest(lio_run: VMResult, host_out: Path) -> None:
    info = lio_run.json("e_python.json")
    # the same JSON, written straight into a host directory mounted read-write
    assert json.loads((host_out / "e_python.json").read_text()) == info
    assert info["version"] == qompr.__version__
    assert info["file"] == str(REPO / "src" / "qompr" / "__init__.py")
    assert info["executable"] == guest_python()
    # The virtualenv of these tests (scripts/run-tests makes its own), not the bare interpreter.
    assert info["prefix"] == str(Path(guest_python()).parent.parent)
    assert info["prefix"] != info["base_prefix"]
    assert info["uid"] == 0


def test_bed_failure_is_loud() -> None:
    """A bed that cannot boot raises (the suite fails), it never skips."""
    with pytest.raises(VMBedError, match="vmlinuz-0.0-missing"):
        run_in_vm("true", kver="0.0-missing")


# ------------------------------------------------------------------ (f) lu-id=wwn on a real LUN


def test_lu_id_wwn_names_one_lun_the_same_through_every_path(lio_run: VMResult) -> None:
    seen = lio_run.json("f_wwn.json")
    names = seen["names"]
    assert len(set(names)) == 1, names
    (name,) = set(names)
    assert re.fullmatch(r"wwn:naa\.[0-9a-f]{16,32}", name), name
    # the designator sg_vpd shows for the LUN (Device Identification, NAA, addressed LU)
    vpd = _ok(lio_run, "f_vpd")
    assert "0x" + name.removeprefix("wwn:naa.") in vpd, vpd
    # one state: registered through /dev/sdX of path 1, read through path 3's
    assert seen["register"] == 0 and seen["keys_through_dev3"] == [0x77]
    assert "lu-id=wwn needs a SCSI LUN" in seen["regular_file"]
