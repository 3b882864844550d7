# SPDX-License-Identifier: MIT
"""``pr-manager-direct`` against LIO on every path: one LUN behind three tcm_loop I_T nexuses.

Two boots.  The first (3 paths and the real qemu-pr-helper) runs :func:`guest_main` (this
file, imported as ``vm.test_direct``): a ``pr-manager-direct`` made from an ``-object``
string, as users make it, drives the LU through fds of ``$VMBED_DEV1``, ``$VMBED_SG2`` and
``$VMBED_DEV3``, and beside each answer the guest records what the LU says through another
path with plain SG_IO (tests/vm/guest_tools.py, independent of qompr), ``sg_persist``, or the
real qemu-pr-helper given the same fd.  Path 1 registers K1, path 2 K2, path 3 stays
unregistered unless a step says otherwise.

Sequence: READ KEYS / READ RESERVATION / REPORT CAPABILITIES / READ FULL STATUS on the empty
LU (and the allocation length cut); REGISTER, REGISTER AND IGNORE EXISTING KEY, unregister;
for every type (WE, EA, WE_RO, EA_RO, WE_AR, EA_AR): RESERVE, the reservation as the other
paths see it, WRITE(10)/READ(10) through the holder, a registrant and a non-registrant (the
RESERVATION CONFLICTs of SPC-4 §5.12.1), RESERVE again / another type / from another path,
READ FULL STATUS, RELEASE from a non-holder, with the wrong type, and for real, with the
UNIT ATTENTIONs each path gets; PREEMPT for every type (of another path's reservation, of
all registrants with SARK 0, of one's own reservation to change its type, and the refused
shapes); CLEAR; RESERVE, RELEASE, CLEAR and PREEMPT from an unregistered path when no
reservation exists; the PREEMPT AND ABORT shapes LIO answers; PR OUT on an O_RDONLY fd (INVALID
OPCODE, the device untouched, as the real qemu-pr-helper answers); the ``timeout`` property;
READ FULL STATUS TransportIDs (SAS addresses of the naa initiator WWNs); pr-manager-direct
and qemu-pr-helper answering the same commands byte for byte.

PREEMPT AND ABORT that LIO executes deadlocks the LU on this kernel (Debian 12, Linux 6.1):
the command runs in LIO's submission work item and, through ``core_tmr_lun_reset``, flushes
that same work item (``flush_work`` in ``core_tmr_drain_state_list``, added by "target: flush
submission work during TMR processing", target-devel 2021); the SCSI error handler's abort
then waits for it too, and every later command on the LU from every path hangs.  Every shape
that reaches the abort hangs (own key, another nexus's, with or without a reservation, all
registrants with SARK 0); the shapes refused before it are answered (docs/vm-testbed.md).
So the second boot, :func:`guest_wedge`, placed last, wedges the LU on purpose and checks that
pr-manager-direct answers COMMAND TIMEOUT after its ``timeout`` (plus 2 s) instead of hanging
its caller, while qemu-pr-helper never answers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from qompr.managers._direct import GRACE_MS
from qompr.scsi import SenseCode

from .guest_program import boot
from .guest_program import load_record
from .guest_tools import PRHelperClient
from .guest_tools import parse_read_keys
from .guest_tools import sg_io
from .vmbed import REPO
from .vmbed import VMResult

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

RESULT = "direct.json"
WEDGE_RESULT = "wedge.json"
#: How the two beds boot (bench/vmbed.py boots them the same way).
BED: dict[str, Any] = {"paths": 3, "pr_helper": True, "cwd": REPO, "timeout": 400}
WEDGE_BED: dict[str, Any] = {"paths": 2, "pr_helper": True, "cwd": REPO, "timeout": 300}
K1, K2, K3 = 0xA1A1, 0xB2B2, 0xC3C3
TYPES = (1, 3, 5, 6, 7, 8)
ALL_REGISTRANTS = (7, 8)
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
#: SAS address of the tcm_loop initiator of path N (tests/vm/guest-init.sh names them).
INITIATOR = 0x5001_4050_0000_B000
#: pr-manager-direct's timeout in the wedge boot (ms).
WEDGE_TIMEOUT_MS = 1000
#: How long the wedge boot waits for qemu-pr-helper (its SG_IO timeout on /dev/sgN is 1 ms).
HELPER_WAIT_S = 4.0

WRITE10 = bytes.fromhex("2a000000006400000100")  # LBA 100, 1 block
READ10 = bytes.fromhex("28000000006400000100")
TUR = bytes(6)

GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
QOMPR_LOAD_PLUGINS= "$VMBED_PYTHON" -c 'import tests.vm.test_direct as t; t.guest_main()'
"""
# The wedge program leaves a thread blocked in the kernel for good (uninterruptibly on
# /dev/sdX), so the process never finishes exiting: the script waits for its record, not
# for the process.
WEDGE_SCRIPT = f"""
set -u
cd "$VMBED_REPO"
echo "launch $(</proc/uptime)"
QOMPR_LOAD_PLUGINS= "$VMBED_PYTHON" -c 'import tests.vm.test_direct as t; t.guest_wedge()' &
for ((i = 0; i < 600; i++)); do
    if grep -qs '"done": true' "$VMBED_RESULT_DIR/{WEDGE_RESULT}"; then
        echo "done $(</proc/uptime)"
        exit 0
    fi
    sleep 0.2
done
exit 1
"""

# ------------------------------------------------------------------------------------ guest side


def sense3(sense: bytes) -> list[int]:
    """[key, asc, ascq] of fixed or descriptor sense data; [] when there is none."""
    if len(sense) < 4 or not any(sense):
        return []
    if sense[0] & 0x7F in (0x72, 0x73):
        return [sense[1] & 0x0F, sense[2], sense[3]]
    return [sense[2] & 0x0F, sense[12], sense[13]] if len(sense) >= 14 else []


def _sh(command: str) -> dict[str, Any]:
    proc = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False, timeout=60
    )
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def _raw_in(dev: str, action: int, alloc: int = 8192) -> dict[str, Any]:
    """PR IN with plain SG_IO (guest_tools): the independent view of the LU."""
    got = sg_io(dev, bytes((0x5E, action, 0, 0, 0, 0, 0)) + alloc.to_bytes(2, "big") + b"\0",
                data_in_len=alloc)  # fmt: skip
    return {"status": got.status, "sense": sense3(got.sense), "data": got.data.hex()}


def _tur(dev: str) -> list[list[int]]:
    """TEST UNIT READY until GOOD: the UNIT ATTENTIONs it consumed, as [key, asc, ascq].
    A path that never answers GOOD stops the guest program (with what it answered)."""
    seen: list[list[int]] = []
    for _ in range(8):
        got = sg_io(dev, TUR)
        if got.status == GOOD:
            return seen
        seen.append(sense3(got.sense))
    raise RuntimeError(f"TEST UNIT READY on {dev} never GOOD: {seen}")


def _rw(dev: str) -> dict[str, int]:
    """WRITE(10) and READ(10) of one block through *dev*: the two SCSI statuses."""
    write = sg_io(dev, WRITE10, data_out=bytes(512))
    read = sg_io(dev, READ10, data_in_len=512)
    return {"write": write.status, "read": read.status}


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Drive the LU through pr-manager-direct on all three paths; record it all as JSON."""
    import qompr
    from qompr.managers import PRManager
    from qompr.options import process
    from qompr.scsi import PrInCdb
    from qompr.scsi import PrOutCdb
    from qompr.scsi import PrOutParameters

    env = os.environ
    devs = env["VMBED_DEVS"].split()
    sgs = env["VMBED_SGS"].split()
    record: dict[str, Any] = {"devs": devs, "sgs": sgs}
    started = time.monotonic()

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    def note(name: str, value: Any) -> Any:
        record[name] = value
        save()
        return value

    tree = qompr.new_tree(load_entrypoints=False)
    objects = process(tree, ["pr-manager-direct,id=direct0,timeout=20000"])
    assert isinstance(objects, list)
    manager = objects[0]
    assert isinstance(manager, PRManager)
    note("object", {"type": manager.typename, "timeout": tree.qom_get("/objects/direct0",
                                                                      "timeout")})  # fmt: skip
    # path 1 through /dev/sdX, path 2 through /dev/sgN, path 3 through /dev/sdX
    fds = [os.open(devs[0], os.O_RDWR), os.open(sgs[1], os.O_RDWR), os.open(devs[2], os.O_RDWR)]
    helper = PRHelperClient(env["VMBED_PRH_SOCK"])

    def answer(result: Any) -> dict[str, Any]:
        return {
            "status": int(result.status),
            "sense": sense3(result.sense),
            "sense_hex": result.sense.hex(),
            "data": result.data.hex(),
        }

    def m_in(path: int, action: int, alloc: int = 8192, fd: int | None = None) -> dict[str, Any]:
        cdb = PrInCdb(action, alloc).to_bytes()
        return answer(manager.execute(fds[path] if fd is None else fd, cdb))

    def params(rk: int = 0, sark: int = 0, aptpl: bool = False) -> bytes:
        return PrOutParameters(reservation_key=rk, sa_key=sark, aptpl=aptpl).to_bytes()

    def m_out(path: int, action: int, rk: int = 0, sark: int = 0, prtype: int = 0, *,
              fd: int | None = None) -> dict[str, Any]:  # fmt: skip
        data = params(rk, sark)
        cdb = PrOutCdb(action, 0, prtype, len(data)).to_bytes()
        return answer(manager.execute(fds[path] if fd is None else fd, cdb, data))

    def keys_resv() -> dict[str, Any]:
        """Keys and reservation through path 3's sg node (plain SG_IO)."""
        keys = _raw_in(sgs[2], 0)
        resv = _raw_in(sgs[2], 1)
        return {"keys": parse_read_keys(bytes.fromhex(keys["data"]))[1] if keys["status"] == 0
                else keys, "resv": resv["data"][16:] if resv["status"] == 0 else resv}  # fmt: skip

    def drain() -> list[list[list[int]]]:
        return [_tur(dev) for dev in devs]

    def clean() -> None:
        """No registration, no reservation, no pending UNIT ATTENTION; or stop, loudly (a
        comparison on a state nobody meant passes or fails by chance)."""
        drain()
        steps = {
            "register_ignore": m_out(0, 6, sark=K1),  # REGISTER AND IGNORE EXISTING KEY
            "clear": m_out(0, 3, rk=K1),
        }
        drain()
        left = {"keys": _raw_in(sgs[2], 0), "reservation": _raw_in(sgs[2], 1)}
        if any(step["status"] != GOOD for step in steps.values()) or any(
            got["status"] != GOOD or got["data"][8:16] != "00000000" for got in left.values()
        ):
            record["setup_failure"] = {"clean": steps, "left": left}
            save()
            raise RuntimeError(f"clean() did not empty the LU: {record['setup_failure']}")

    # -- the empty LU ---------------------------------------------------------------------------
    clean()
    note("empty", {
        "manager": [[m_in(p, a) for a in range(4)] for p in range(3)],
        "raw": [[_raw_in(sgs[(p + 1) % 3], a) for a in range(4)] for p in range(3)],
        "rcap8": m_in(1, 2, 8),
        "keys4": m_in(0, 0, 4),
        "raw_keys": _raw_in(sgs[2], 0, 4),
    })  # fmt: skip

    # -- registrations ----------------------------------------------------------------------
    note("register", [m_out(0, 0, sark=K1), m_out(1, 0, sark=K2)])
    note("registered", {"state": keys_resv(), "sg_keys": _sh(f"sg_persist -n -k {devs[2]}"),
                        "manager_keys": m_in(2, 0)})  # fmt: skip
    # the allocation length cut: LIO writes no partial key or descriptor (docs/reference/spc4-pr.md)
    note("cut", {
        "keys12": m_in(0, 0, 12),
        "keys12_raw": _raw_in(sgs[2], 0, 12),
        "keys16": m_in(1, 0, 16),
        "full60": m_in(2, 3, 60),
        "full60_raw": _raw_in(sgs[0], 3, 60),
    })  # fmt: skip
    note("register_again_wrong_rk", m_out(0, 0, rk=0, sark=0x5))
    note("register_ignore", m_out(2, 6, sark=K3))
    note("registered3", keys_resv())
    note("unregister", m_out(2, 0, rk=K3, sark=0))
    note("unregistered3", {"state": keys_resv(), "ua": drain()})

    # -- every type: reserve, access, release ----------------------------------------------
    for t in TYPES:
        step: dict[str, Any] = {"reserve": m_out(0, 1, rk=K1, prtype=t)}
        step["resv_manager_p2"] = m_in(1, 1)
        step["resv_raw_p3"] = _raw_in(sgs[2], 1)
        step["sg_resv"] = _sh(f"sg_persist -n -r {devs[1]}")["out"]
        step["io"] = {"holder": _rw(devs[0]), "registrant": _rw(devs[1]),
                      "other": _rw(devs[2])}  # fmt: skip
        step["reserve_again"] = m_out(0, 1, rk=K1, prtype=t)
        step["reserve_other_type"] = m_out(0, 1, rk=K1, prtype=3 if t == 1 else 1)
        step["reserve_from_p2"] = m_out(1, 1, rk=K2, prtype=t)
        step["reserve_unregistered"] = m_out(2, 1, rk=0, prtype=t)
        step["full_status"] = m_in(2, 3)
        step["full_status_raw"] = _raw_in(sgs[0], 3)
        step["release_wrong_type"] = m_out(0, 2, rk=K1, prtype=3 if t == 1 else 1)
        step["release_wrong_key"] = m_out(0, 2, rk=0x99, prtype=t)
        step["release_p2"] = m_out(1, 2, rk=K2, prtype=t)
        step["after_release_p2"] = keys_resv()
        step["release"] = m_out(0, 2, rk=K1, prtype=t)
        step["released"] = keys_resv()
        step["ua"] = drain()
        step["io_after"] = _rw(devs[2])
        note(f"type{t}", step)

    # -- PREEMPT, every type ------------------------------------------------------------------
    for t in TYPES:
        step = {"reserve": m_out(0, 1, rk=K1, prtype=t)}
        sark = 0 if t in ALL_REGISTRANTS else K1  # all registrants: SARK 0 preempts them all
        step["preempt"] = m_out(1, 4, rk=K2, sark=sark, prtype=t)
        step["state"] = keys_resv()
        step["ua"] = drain()
        step["io_p1"] = _rw(devs[0])
        step["reregister"] = m_out(0, 0, sark=K1)
        step["release"] = m_out(1, 2, rk=K2, prtype=t)
        step["ua_after_release"] = drain()
        note(f"preempt{t}", step)
    # the holder preempts itself to change the type; its registration stays
    note("self_preempt", {
        "reserve": m_out(0, 1, rk=K1, prtype=1),
        "preempt": m_out(0, 4, rk=K1, sark=K1, prtype=3),
        "state": keys_resv(),
        "ua": drain(),
    })  # fmt: skip
    note("preempt_unknown_sark", m_out(1, 4, rk=K2, sark=0x66, prtype=3))
    note("preempt_unregistered", m_out(2, 4, rk=0, sark=K1, prtype=3))
    note("preempt_zero_sark", m_out(1, 4, rk=K2, sark=0, prtype=3))
    note("preempt_refused_state", {"state": keys_resv(), "ua": drain()})

    # -- CLEAR ------------------------------------------------------------------------------
    note("clear_wrong_key", m_out(1, 3, rk=0x77))
    note("clear_unregistered", m_out(2, 3, rk=0))
    note("clear", m_out(1, 3, rk=K2))
    note("cleared", {"state": keys_resv(), "ua": drain()})

    # -- PREEMPT AND ABORT: the shapes LIO answers (those it executes wedge the LU) --------
    # [LIO≠SPC] an unregistered nexus with no reservation on the LU: NOT READY, LOGICAL UNIT
    # COMMUNICATION FAILURE for RESERVE, RELEASE and CLEAR (SPC-4: RESERVATION CONFLICT)
    note("unregistered_no_reservation", {
        "setup": m_out(0, 0, sark=K1),
        "reserve": m_out(2, 1, rk=K3, prtype=1),
        "release": m_out(2, 2, rk=K3, prtype=1),
        "clear": m_out(2, 3, rk=K3),
        "preempt": m_out(2, 4, rk=K3, sark=K1, prtype=1),
        "state": keys_resv(),
    })  # fmt: skip
    note("pa_setup", [m_out(0, 6, sark=K1), m_out(1, 0, sark=K2), m_out(0, 1, rk=K1, prtype=1)])
    note("preempt_abort", {
        "unregistered": m_out(2, 5, rk=0, sark=K1, prtype=1),
        "unknown_sark": m_out(1, 5, rk=K2, sark=0x66, prtype=1),
        "zero_sark": m_out(1, 5, rk=K2, sark=0, prtype=1),
        "bad_type": m_out(1, 5, rk=K2, sark=K1, prtype=2),
        "state": keys_resv(),
        "ua": drain(),
        "still_answers": m_in(2, 0),
    })  # fmt: skip

    # -- READ FULL STATUS TransportIDs ------------------------------------------------------
    note("full_status", {"manager": m_in(2, 3), "sg_persist": _sh(f"sg_persist -n -s {sgs[2]}")})

    # -- a read-only fd: PR OUT is refused before the device, as qemu-pr-helper does ---------
    ro = os.open(devs[2], os.O_RDONLY)
    data = params(0, K3)
    cdb = PrOutCdb(0, 0, 0, len(data)).to_bytes()
    real = helper.run(ro, cdb, data)
    qompr_helper = tree.object_add("pr-manager-helper", "helper0", path=env["VMBED_PRH_SOCK"])
    assert isinstance(qompr_helper, PRManager)
    note("read_only", {
        "manager": answer(manager.execute(ro, cdb, data)),
        "helper": {"status": real.result, "sense_hex": real.sense.hex()},
        "pr_manager_helper": answer(qompr_helper.execute(ro, cdb, data)),
        "state": keys_resv(),
        "pr_in": m_in(2, 0, fd=ro),
    })  # fmt: skip
    os.close(ro)

    # -- pr-manager-direct and qemu-pr-helper: the same answers on the same fds ------------
    same = []
    for path, cdb, data in (
        (0, PrInCdb(0, 8192).to_bytes(), b""),
        (2, PrInCdb(1, 8192).to_bytes(), b""),
        (1, PrInCdb(2, 8).to_bytes(), b""),
        (2, PrInCdb(3, 8192).to_bytes(), b""),
        (2, PrInCdb(0, 12).to_bytes(), b""),
        (2, PrOutCdb(1, 0, 1, 24).to_bytes(), params(0x5)),  # unregistered: CONFLICT
        (0, PrOutCdb(1, 0, 2, 24).to_bytes(), params(K1)),  # obsolete type: ILLEGAL REQUEST
        (1, PrOutCdb(9, 0, 0, 24).to_bytes(), params(K2)),  # reserved SA: ILLEGAL REQUEST
    ):
        ours = manager.execute(fds[path], cdb, data)
        theirs = helper.run(fds[path], cdb, data)
        via = qompr_helper.execute(fds[path], cdb, data)
        same.append({
            "cdb": cdb.hex(),
            "manager": [int(ours.status), ours.sense.hex(), ours.data.hex()],
            "pr_manager_helper": [int(via.status), via.sense.hex(), via.data.hex()],
            "helper": [theirs.result, theirs.sense.hex(), theirs.data.hex()],
        })  # fmt: skip
    note("same_as_helper", same)

    # -- the timeout property ----------------------------------------------------------------
    # 1 ms, as qemu-pr-helper passes: /dev/sdX raises it to the block layer's 7 s minimum
    fast = process(tree, ["pr-manager-direct,id=fast,timeout=1"])
    assert isinstance(fast, list) and isinstance(fast[0], PRManager)
    note("timeout_1ms", {
        "timeout": tree.qom_get("/objects/fast", "timeout"),
        "keys": answer(fast[0].execute(fds[0], PrInCdb(0, 8192).to_bytes())),
    })  # fmt: skip
    tree.qom_set("/objects/direct0", "timeout", 15000)
    note("timeout_set", tree.qom_get("/objects/direct0", "timeout"))

    clean()
    record["seconds"] = round(time.monotonic() - started, 1)
    record["done"] = True
    save()


def guest_wedge() -> None:  # pragma: no cover - runs in the VM
    """PREEMPT AND ABORT wedges the LU: pr-manager-direct times out, the caller goes on."""
    import qompr
    from qompr.managers import PRManager
    from qompr.options import process
    from qompr.scsi import PrInCdb
    from qompr.scsi import PrOutCdb
    from qompr.scsi import PrOutParameters

    env = os.environ
    devs = env["VMBED_DEVS"].split()
    sgs = env["VMBED_SGS"].split()
    started = time.monotonic()
    record: dict[str, Any] = {"clock": {}}

    def save() -> None:
        record["clock"][len(record["clock"])] = round(time.monotonic() - started, 2)
        with open(os.path.join(env["VMBED_RESULT_DIR"], WEDGE_RESULT), "w") as out:
            json.dump(record, out, indent=1)

    save()
    tree = qompr.new_tree(load_entrypoints=False)
    objects = process(tree, [f"pr-manager-direct,id=direct0,timeout={WEDGE_TIMEOUT_MS}"])
    assert isinstance(objects, list) and isinstance(objects[0], PRManager)
    manager = objects[0]
    sg1 = os.open(sgs[0], os.O_RDWR)
    sd2 = os.open(devs[1], os.O_RDWR)

    def out(fd: int, action: int, rk: int, sark: int, prtype: int = 0) -> dict[str, Any]:
        data = PrOutParameters(reservation_key=rk, sa_key=sark).to_bytes()
        start = time.monotonic()
        got = manager.execute(fd, PrOutCdb(action, 0, prtype, len(data)).to_bytes(), data)
        return {"status": int(got.status), "sense_hex": got.sense.hex(),
                "seconds": round(time.monotonic() - start, 2)}  # fmt: skip

    record["register"] = [out(sg1, 0, 0, K1), out(sd2, 0, 0, K2)]
    record["keys_before"] = parse_read_keys(bytes.fromhex(_raw_in(sgs[1], 0)["data"]))[1]
    save()
    # path 1 preempts path 2 and aborts its commands: LIO never answers
    record["preempt_abort"] = out(sg1, 5, K1, K2, prtype=1)
    save()
    # the LU is wedged for every path: path 2's READ KEYS through /dev/sdX times out too
    start = time.monotonic()
    got = manager.execute(sd2, PrInCdb(0, 8192).to_bytes())
    record["keys_after"] = {"status": int(got.status), "sense_hex": got.sense.hex(),
                            "seconds": round(time.monotonic() - start, 2)}  # fmt: skip
    # the workers left in the kernel: interruptible on /dev/sgN, not on /dev/sdX
    stuck = []
    for thread in threading.enumerate():
        if thread.name.startswith("direct0 ") and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                stuck.append(stat.read().rsplit(")", 1)[1].split()[0])
    record["worker_states"] = sorted(stuck)
    save()
    # the real qemu-pr-helper, given path 2's /dev/sgN (it passes a 1 ms timeout): no answer
    helper = PRHelperClient(env["VMBED_PRH_SOCK"], timeout=HELPER_WAIT_S)
    try:
        helper.run(os.open(sgs[1], os.O_RDWR), PrInCdb(0, 8192).to_bytes())
        record["helper"] = "answered"
    except TimeoutError:
        record["helper"] = "no answer"
    save()
    # where the kernel is stuck: the blocked tasks' stacks (SysRq w)
    with open("/proc/sysrq-trigger", "w") as sysrq:
        sysrq.write("w")
    save()
    time.sleep(0.5)
    record["dmesg"] = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    record["done"] = True
    save()
    sys.stdout.flush()
    os._exit(0)


# ------------------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def bed() -> VMResult:
    return boot(GUEST_SCRIPT, RESULT, **BED)


@pytest.fixture(scope="module")
def seen(bed: VMResult) -> dict[str, Any]:
    return load_record(bed, RESULT)


@pytest.fixture(scope="module")
def wedge() -> VMResult:
    """The boot that wedges the LU (placed last: the module's other tests use ``bed``)."""
    return boot(WEDGE_SCRIPT, WEDGE_RESULT, **WEDGE_BED)


@pytest.fixture(scope="module")
def wedged(wedge: VMResult) -> dict[str, Any]:
    return load_record(wedge, WEDGE_RESULT)


def status(answer: dict[str, Any]) -> tuple[int, list[int]]:
    """(SCSI status, [key, asc, ascq])."""
    return answer["status"], answer["sense"]


GOOD_: tuple[int, list[int]] = (GOOD, [])
CONFLICT: tuple[int, list[int]] = (RESERVATION_CONFLICT, [])
UA_RESERVATIONS_PREEMPTED = [6, 0x2A, 0x03]
UA_RESERVATIONS_RELEASED = [6, 0x2A, 0x04]
UA_REGISTRATIONS_PREEMPTED = [6, 0x2A, 0x05]


def keys_of(data_hex: str) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) of READ KEYS data (the keys the data holds in full)."""
    return parse_read_keys(bytes.fromhex(data_hex))


def reservation(data_hex: str) -> tuple[int, int] | None:
    """(key, type) of READ RESERVATION data, None without a reservation."""
    data = bytes.fromhex(data_hex)
    if int.from_bytes(data[4:8], "big") == 0:
        return None
    return int.from_bytes(data[8:16], "big"), data[21] & 0x0F


def full_status(data_hex: str) -> list[dict[str, Any]]:
    """READ FULL STATUS descriptors, decoded here (not with qompr's codec)."""
    data = bytes.fromhex(data_hex)
    end = 8 + int.from_bytes(data[4:8], "big")
    at, out = 8, []
    while at + 24 <= min(end, len(data)):
        length = int.from_bytes(data[at + 20 : at + 24], "big")
        out.append({
            "key": int.from_bytes(data[at : at + 8], "big"),
            "holder": bool(data[at + 12] & 0x01),
            "all_tg_pt": bool(data[at + 12] & 0x02),
            "type": data[at + 13] & 0x0F,
            "rtpi": int.from_bytes(data[at + 18 : at + 20], "big"),
            "tid": data[at + 24 : at + 24 + length].hex(),
        })  # fmt: skip
        at += 24 + length
    return out


def sas_tid(address: int) -> str:
    """A SAS TransportID (SPC-4 §7.6.4.7): protocol 6, format 0, the address at bytes 4-11."""
    return (bytes((0x06, 0, 0, 0)) + address.to_bytes(8, "big") + bytes(12)).hex()


def test_the_manager_is_made_from_an_object_string(seen: dict[str, Any]) -> None:
    assert seen["object"] == {"type": "pr-manager-direct", "timeout": 20000}


def test_empty_lu_answers_as_the_other_paths_see_it(seen: dict[str, Any]) -> None:
    empty = seen["empty"]
    for path in range(3):
        for action in range(4):
            ours, theirs = empty["manager"][path][action], empty["raw"][path][action]
            assert ours["status"] == GOOD and theirs["status"] == GOOD
            assert ours["data"] == theirs["data"], (path, action)
        assert keys_of(empty["manager"][path][0]["data"])[1] == []
        assert reservation(empty["manager"][path][1]["data"]) is None
        assert full_status(empty["manager"][path][3]["data"]) == []
    caps = bytes.fromhex(empty["rcap8"]["data"])
    assert caps[:2] == b"\x00\x08" and caps[4:6] == b"\xea\x01"  # LIO: all six types
    assert empty["rcap8"]["data"] == empty["raw"][1][2]["data"]


def test_allocation_lengths_as_lio_answers_them(seen: dict[str, Any]) -> None:
    # [LIO≠SPC] READ KEYS with an allocation length below 8: ILLEGAL REQUEST, INVALID FIELD
    # IN CDB, where SPC-4 truncates; the manager passes LIO's answer on.
    invalid_field = [5, 0x24, 0]
    assert status(seen["empty"]["keys4"]) == (CHECK_CONDITION, invalid_field)
    assert seen["empty"]["raw_keys"]["sense"] == invalid_field
    cut = seen["cut"]
    # 12 bytes: the header and, [LIO≠SPC], no half key; the manager cuts the 8192-byte answer
    keys12 = bytes.fromhex(cut["keys12"]["data"])
    assert len(keys12) == 12 and keys12[8:] == bytes(4)
    assert int.from_bytes(keys12[4:8], "big") == 16  # ADDITIONAL LENGTH stays the full one
    assert cut["keys12"]["data"] == cut["keys12_raw"]["data"]
    assert keys_of(cut["keys16"]["data"])[1] == [K1]
    # [LIO≠SPC] READ FULL STATUS with room for one and a half descriptors: LIO sends the
    # first one only (56 of 60 bytes) and an ADDITIONAL LENGTH that counts only that one
    full60 = bytes.fromhex(cut["full60"]["data"])
    assert len(full60) == 8 + 48 and int.from_bytes(full60[4:8], "big") == 48
    assert cut["full60"]["data"] == cut["full60_raw"]["data"]


def test_register_register_and_ignore_and_unregister(seen: dict[str, Any]) -> None:
    assert [status(a) for a in seen["register"]] == [GOOD_, GOOD_]
    registered = seen["registered"]
    assert registered["state"] == {"keys": [K1, K2], "resv": ""}
    assert registered["sg_keys"]["out"].endswith(f"    {K1:#x}\n    {K2:#x}\n")
    assert keys_of(registered["manager_keys"]["data"])[1] == [K1, K2]
    # a registered nexus whose RESERVATION KEY does not match: RESERVATION CONFLICT
    assert status(seen["register_again_wrong_rk"]) == CONFLICT
    assert status(seen["register_ignore"]) == GOOD_
    assert seen["registered3"]["keys"] == [K1, K2, K3]
    assert status(seen["unregister"]) == GOOD_
    assert seen["unregistered3"] == {"state": {"keys": [K1, K2], "resv": ""}, "ua": [[]] * 3}


@pytest.mark.parametrize("prtype", TYPES)
def test_reserve_each_type_as_every_path_sees_it(seen: dict[str, Any], prtype: int) -> None:
    step = seen[f"type{prtype}"]
    assert status(step["reserve"]) == GOOD_
    # SPC-4 §5.12.10: an all-registrants reservation has RESERVATION KEY 0
    key = 0 if prtype in ALL_REGISTRANTS else K1
    assert reservation(step["resv_manager_p2"]["data"]) == (key, prtype)
    assert step["resv_manager_p2"]["data"] == step["resv_raw_p3"]["data"]
    description = {1: "Write Exclusive\n", 3: "Exclusive Access\n"}.get(prtype, "")
    assert f"Key={key:#x}\n" in step["sg_resv"] and step["sg_resv"].endswith(description)


# SPC-4 §5.12.1 (allowed commands): WRITE(10) and READ(10) through (holder, registrant,
# non-registrant)
ACCESS = {
    1: ((GOOD, GOOD), (RESERVATION_CONFLICT, GOOD), (RESERVATION_CONFLICT, GOOD)),
    3: ((GOOD, GOOD), (RESERVATION_CONFLICT,) * 2, (RESERVATION_CONFLICT,) * 2),
    5: ((GOOD, GOOD), (GOOD, GOOD), (RESERVATION_CONFLICT, GOOD)),
    6: ((GOOD, GOOD), (GOOD, GOOD), (RESERVATION_CONFLICT,) * 2),
    7: ((GOOD, GOOD), (GOOD, GOOD), (RESERVATION_CONFLICT, GOOD)),
    8: ((GOOD, GOOD), (GOOD, GOOD), (RESERVATION_CONFLICT,) * 2),
}


@pytest.mark.parametrize("prtype", TYPES)
def test_reservation_conflict_on_write_through_a_non_holder_path(
    seen: dict[str, Any], prtype: int
) -> None:
    io = seen[f"type{prtype}"]["io"]
    got = tuple((io[who]["write"], io[who]["read"]) for who in ("holder", "registrant", "other"))
    assert got == ACCESS[prtype]
    assert seen[f"type{prtype}"]["io_after"] == {"write": GOOD, "read": GOOD}  # released


@pytest.mark.parametrize("prtype", TYPES)
def test_reserve_again_another_type_and_from_other_paths(seen: dict[str, Any], prtype: int) -> None:
    step = seen[f"type{prtype}"]
    assert status(step["reserve_again"]) == GOOD_  # the same type and scope from the holder
    assert status(step["reserve_other_type"]) == CONFLICT
    # every registrant holds an all-registrants reservation (SPC-4 §5.12.10)
    expected = GOOD_ if prtype in ALL_REGISTRANTS else CONFLICT
    assert status(step["reserve_from_p2"]) == expected
    assert status(step["reserve_unregistered"]) == CONFLICT


@pytest.mark.parametrize("prtype", TYPES)
def test_read_full_status_names_the_holders(seen: dict[str, Any], prtype: int) -> None:
    step = seen[f"type{prtype}"]
    assert step["full_status"]["data"] == step["full_status_raw"]["data"]
    first, second = full_status(step["full_status"]["data"])
    assert (first["key"], first["holder"], first["type"]) == (K1, True, prtype)
    both = prtype in ALL_REGISTRANTS
    assert (second["key"], second["holder"]) == (K2, both)
    assert second["type"] == (prtype if both else 0)


@pytest.mark.parametrize("prtype", TYPES)
def test_release(seen: dict[str, Any], prtype: int) -> None:
    step = seen[f"type{prtype}"]
    # [LIO≠SPC] the holder releasing another type: RESERVATION CONFLICT where SPC-4 wants
    # ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (26/04)
    assert status(step["release_wrong_type"]) == CONFLICT
    assert status(step["release_wrong_key"]) == CONFLICT
    assert status(step["release_p2"]) == GOOD_
    if prtype in ALL_REGISTRANTS:
        # path 2 holds it too: its RELEASE ends it, and path 1's next command (its own
        # RELEASE) gets the UNIT ATTENTION RESERVATIONS RELEASED instead of running
        assert step["after_release_p2"]["resv"] == ""
        assert status(step["release"]) == (CHECK_CONDITION, UA_RESERVATIONS_RELEASED)
        assert step["ua"] == [[], [], []]
    else:
        # a registrant that does not hold it: GOOD, nothing happens (SPC-4 §5.12.11.2.2)
        assert step["after_release_p2"]["resv"] != ""
        assert status(step["release"]) == GOOD_
        # registrants-only types tell the other registrants; WE and EA tell nobody
        ua = [UA_RESERVATIONS_RELEASED] if prtype in (5, 6) else []
        assert step["ua"] == [[], ua, []]
    assert step["released"] == {"keys": [K1, K2], "resv": ""}


@pytest.mark.parametrize("prtype", TYPES)
def test_preempt_each_type(seen: dict[str, Any], prtype: int) -> None:
    step = seen[f"preempt{prtype}"]
    assert status(step["reserve"]) == GOOD_ and status(step["preempt"]) == GOOD_
    key = 0 if prtype in ALL_REGISTRANTS else K2
    resv = bytes.fromhex(step["state"]["resv"])
    assert step["state"]["keys"] == [K2]
    assert (int.from_bytes(resv[:8], "big"), resv[13] & 0x0F) == (key, prtype)
    assert step["ua"] == [[UA_REGISTRATIONS_PREEMPTED], [], []]
    # path 1 lost its registration: it is a non-registrant now
    assert (step["io_p1"]["write"], step["io_p1"]["read"]) == ACCESS[prtype][2]
    assert status(step["reregister"]) == GOOD_ and status(step["release"]) == GOOD_
    ua = [UA_RESERVATIONS_RELEASED] if prtype in (5, 6, 7, 8) else []
    assert step["ua_after_release"] == [ua, [], []]


def test_preempting_ones_own_reservation_changes_its_type(seen: dict[str, Any]) -> None:
    step = seen["self_preempt"]
    assert status(step["reserve"]) == GOOD_ and status(step["preempt"]) == GOOD_
    assert sorted(step["state"]["keys"]) == [K1, K2]  # the preempting registration stays
    assert step["state"]["resv"] == f"{K1:016x}0000000000030000"
    assert step["ua"] == [[], [UA_RESERVATIONS_RELEASED], []]


def test_preempt_refusals_change_nothing(seen: dict[str, Any]) -> None:
    assert status(seen["preempt_unknown_sark"]) == CONFLICT
    assert status(seen["preempt_unregistered"]) == CONFLICT
    # SARK 0 against a reservation that is not all-registrants: INVALID FIELD IN PARAMETER LIST
    assert status(seen["preempt_zero_sark"]) == (CHECK_CONDITION, [5, 0x26, 0])
    state = seen["preempt_refused_state"]
    assert state["state"] == seen["self_preempt"]["state"] and state["ua"] == [[]] * 3


def test_clear(seen: dict[str, Any]) -> None:
    assert status(seen["clear_wrong_key"]) == CONFLICT
    assert status(seen["clear_unregistered"]) == CONFLICT
    assert status(seen["clear"]) == GOOD_
    assert seen["cleared"] == {
        "state": {"keys": [], "resv": ""},
        "ua": [[UA_RESERVATIONS_PREEMPTED], [], []],  # registrants but the sender are told
    }


def test_unregistered_nexus_without_a_reservation(seen: dict[str, Any]) -> None:
    step = seen["unregistered_no_reservation"]
    assert status(step["setup"]) == GOOD_
    lun_comm_failure = (CHECK_CONDITION, [2, 0x08, 0])  # [LIO≠SPC] SPC-4: CONFLICT
    assert [status(step[sa]) for sa in ("reserve", "release", "clear")] == [lun_comm_failure] * 3
    assert status(step["preempt"]) == CONFLICT
    assert step["state"] == {"keys": [K1], "resv": ""}


def test_preempt_and_abort_shapes_lio_answers(seen: dict[str, Any]) -> None:
    assert [status(a) for a in seen["pa_setup"]] == [GOOD_] * 3
    shapes = seen["preempt_abort"]
    assert status(shapes["unregistered"]) == CONFLICT
    assert status(shapes["unknown_sark"]) == CONFLICT
    assert status(shapes["zero_sark"]) == (CHECK_CONDITION, [5, 0x26, 0])
    assert status(shapes["bad_type"]) == (CHECK_CONDITION, [5, 0x24, 0])
    assert shapes["state"] == {"keys": [K1, K2], "resv": f"{K1:016x}0000000000010000"}
    assert shapes["ua"] == [[]] * 3
    assert status(shapes["still_answers"]) == GOOD_  # the LU was not wedged


def test_full_status_transport_ids_are_the_naa_initiators(
    seen: dict[str, Any], bed: VMResult
) -> None:
    descriptors = full_status(seen["full_status"]["manager"]["data"])
    initiators = [int(bed.env[f"VMBED_INITIATOR{i}"].removeprefix("naa."), 16) for i in (1, 2)]
    assert initiators == [INITIATOR + 1, INITIATOR + 2]
    assert [(d["key"], d["rtpi"], d["all_tg_pt"], d["tid"]) for d in descriptors] == [
        (K1, 1, False, sas_tid(initiators[0])),
        (K2, 2, False, sas_tid(initiators[1])),
    ]
    text = seen["full_status"]["sg_persist"]["out"]
    assert f"SAS address: 0x{initiators[0]:016x}" in text
    assert f"SAS address: 0x{initiators[1]:016x}" in text


def test_pr_out_on_a_read_only_fd_is_refused_as_qemu_pr_helper_refuses_it(
    seen: dict[str, Any],
) -> None:
    refused = seen["read_only"]
    assert status(refused["manager"]) == (CHECK_CONDITION, [5, 0x20, 0])
    # the real helper, given the same fd: the same status and sense (in its 96-byte buffer),
    # and qompr's pr-manager-helper client of it the same ScsiResult
    sense = bytes.fromhex(refused["manager"]["sense_hex"])
    assert sense == SenseCode.INVALID_OPCODE.to_bytes()
    assert refused["helper"] == {"status": CHECK_CONDITION,
                                 "sense_hex": sense.ljust(96, b"\0").hex()}  # fmt: skip
    assert refused["pr_manager_helper"] == refused["manager"]
    assert refused["state"]["keys"] == [K1, K2]  # nothing reached the device
    assert status(refused["pr_in"]) == GOOD_  # PR IN is fine on a read-only fd


def test_same_answers_as_the_real_qemu_pr_helper(seen: dict[str, Any]) -> None:
    same = seen["same_as_helper"]
    for entry in same:
        # through qompr's pr-manager-helper: the very same ScsiResult
        assert entry["manager"] == entry["pr_manager_helper"], entry["cdb"]
        # on the wire: the same status and data, the sense in a zero-padded 96-byte buffer
        status_, sense, data = entry["manager"]
        assert entry["helper"] == [status_, sense.ljust(192, "0"), data], entry["cdb"]
    statuses = {entry["manager"][0] for entry in same}
    assert statuses == {GOOD, CHECK_CONDITION, RESERVATION_CONFLICT}


def test_timeout_property(seen: dict[str, Any]) -> None:
    # 1 ms, as qemu-pr-helper passes, works on /dev/sdX (the block layer raises it to 7 s)
    assert seen["timeout_1ms"]["timeout"] == 1
    assert status(seen["timeout_1ms"]["keys"]) == GOOD_
    assert seen["timeout_set"] == 15000


def test_direct_run_finishes(bed: VMResult, seen: dict[str, Any]) -> None:
    print(
        f"\ndirect VM run: wall {bed.wall_time:.1f}s, guest {bed.timings}, "
        f"guest program {seen['seconds']}s",
        file=sys.stderr,
    )
    # Finishing is the behaviour; how long it takes is bench/vmbed.py's to measure, beside an
    # empty boot of the same bed in the same run (a wall budget here failed under load).
    assert bed.exit_status == 0 and seen["done"] is True and "setup_failure" not in seen


# ------------------------------------------------------------------- the wedged LU (last boot)


def test_preempt_and_abort_wedges_lio_and_the_manager_times_out(wedged: dict[str, Any]) -> None:
    assert [a["status"] for a in wedged["register"]] == [GOOD, GOOD]
    assert wedged["keys_before"] == [K1, K2]
    answer = wedged["preempt_abort"]
    timeout = SenseCode.COMMAND_TIMEOUT.to_bytes()  # host status DID_TIME_OUT, as QEMU maps it
    assert answer["status"] == CHECK_CONDITION
    assert bytes.fromhex(answer["sense_hex"]) == timeout
    limit = (WEDGE_TIMEOUT_MS + GRACE_MS) / 1000
    assert limit - 0.1 < answer["seconds"] < limit + 2


def test_the_wedged_lu_times_out_on_every_path(wedged: dict[str, Any]) -> None:
    answer = wedged["keys_after"]
    assert answer["status"] == CHECK_CONDITION
    assert answer["sense_hex"] == wedged["preempt_abort"]["sense_hex"]
    assert answer["seconds"] < (WEDGE_TIMEOUT_MS + GRACE_MS) / 1000 + 2
    # the two ioctls stay in the kernel: /dev/sdX uninterruptibly (D), /dev/sgN not (S)
    assert wedged["worker_states"] == ["D", "S"]


def test_qemu_pr_helper_never_answers_on_the_wedged_lu(wedged: dict[str, Any]) -> None:
    assert wedged["helper"] == "no answer"


def test_the_kernel_waits_for_its_own_work_item(wedged: dict[str, Any]) -> None:
    # SysRq w: LIO's submission worker runs the PREEMPT AND ABORT and, in the LUN reset it
    # does for the abort, flushes the submission work it is running in
    tasks = re.split(r"\btask:", wedged["dmesg"])
    preempt = [t for t in tasks if "core_scsi3_pro_preempt" in t]
    assert len(preempt) == 1, wedged["dmesg"][-3000:]
    stack = preempt[0]
    assert "target_queued_submit_work" in stack and "core_tmr_lun_reset" in stack
    assert "flush_work" in stack
    # and the SCSI error handler's abort is stuck behind it
    assert any("tcm_loop_abort_task" in t for t in tasks)


def test_wedge_run_finishes(wedge: VMResult, wedged: dict[str, Any]) -> None:
    print(f"\nwedge VM run: wall {wedge.wall_time:.1f}s, guest {wedge.timings}", file=sys.stderr)
    # Finishing is the behaviour; how long it takes is bench/vmbed.py's to measure, beside an
    # empty boot of the same bed in the same run (a wall budget here failed under load).
    assert wedge.exit_status == 0 and wedged["done"] is True
