# SPDX-License-Identifier: MIT
"""``qompr validate`` on real LIO: every path a guest uses, two and three initiators.

One boot (three tcm_loop paths, dm-multipath with ``reservation_key``, the real
qemu-pr-helper).  :func:`guest_main` (this file, imported as ``tests.vm.test_validate``) runs
the suite through each path and records the reports; the host-side tests assert on them.

1. **Multipath** (path 3 taken out of the map, so that it can be another host's node):
   ``/dev/mapper/mpatha`` (libmpathpersist, key from multipath.conf) with ``/dev/sdc`` for
   ``wsfc`` and ``fence_scsi``; then without ``reservation_key`` (``qompr validate`` in a
   process of its own: libmpathpersist reads multipath.conf once, when initialised).
   multipathd's path checker would consume the unit attentions the suite looks for (it sends
   TEST UNIT READY on each path), so its polling interval is raised first.
2. multipathd stopped and the map flushed; **SG_IO** on the paths: ``wsfc`` with three
   nodes, ``fence_scsi`` with two.
3. **The real qemu-pr-helper**: three nodes on three paths (``wsfc``), two (``fence_scsi``);
   two nodes on one path: one I_T nexus, FAIL with the explanation.
4. **qompr-pr-helper** (default backend, SG_IO): ``wsfc`` and ``fence_scsi``.
5. Last, because it wedges the LU: ``fence_scsi`` with PREEMPT AND ABORT on ``/dev/sgN``.

PREEMPT AND ABORT hangs LIO through tcm_loop on this kernel (docs/vm-testbed.md), so the
``fence_scsi`` runs 1-4 skip it (``--skip preempt-abort``: reported SKIP, not PASS) and run 5
shows the check failing in bounded time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import pytest

from .guest_program import boot
from .guest_program import load_record
from .vmbed import VMResult

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

MPATH_KEY = 0xABC
RESULT = "validate.json"
WEDGE_TIMEOUT = 3.0
GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.test_validate as t; t.guest_main()'
"""
#: What a path that sends only PR commands cannot check, and a run with no multipath map.
NOT_ON_HELPERS = {"write-conflict", "multipath"}


# ------------------------------------------------------------------------------------ guest side


def _sh(command: str) -> dict[str, Any]:
    proc = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False, timeout=120
    )
    return {"command": command, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def _wait(what: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise TimeoutError("the guest's set-up did not settle")
        time.sleep(0.2)


def _map_paths(mpath: str) -> list[str]:
    dm = os.path.basename(os.path.realpath(mpath))
    try:
        return sorted(os.listdir(f"/sys/block/{dm}/slaves"))
    except OSError:
        return []


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Run the suite through every path; record each report as JSON."""
    import qompr
    from qompr.testing import wait_for_socket
    from qompr.validate import Node
    from qompr.validate import Validator
    from qompr.validate import device_node
    from qompr.validate import helper_nodes

    env = os.environ
    devs, sgs, mpath = env["VMBED_DEVS"].split(), env["VMBED_SGS"].split(), env["VMBED_MPATH"]
    record: dict[str, Any] = {"devs": devs, "sgs": sgs}
    seconds: dict[str, float] = {}
    record["seconds"] = seconds

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    def run(name: str, nodes: Sequence[Node], profile: str, **options: Any) -> None:
        start = time.monotonic()
        report = Validator(nodes, profile, **options).run()
        seconds[name] = round(time.monotonic() - start, 2)
        record[name] = report.to_json()
        print(report.render(), flush=True)
        save()

    def command(name: str, argv: list[str]) -> None:
        # A process of its own: libmpathpersist reads multipath.conf once, when initialised.
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "qompr", "validate", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        seconds[name] = round(time.monotonic() - start, 2)
        record[name] = {"status": proc.returncode, "report": json.loads(proc.stdout)}
        save()

    def close(nodes: Sequence[Node]) -> None:
        for node in nodes:
            node.close()

    tree = qompr.new_tree(load_entrypoints=False)
    dev3 = os.path.basename(devs[2])

    # 1. multipath: slow path checker, path 3 out of the map
    _sh(
        "sed -i 's/^defaults {/defaults {\\n    polling_interval 300\\n"
        "    max_polling_interval 300/' /etc/multipath.conf && multipathd reconfigure"
    )
    _wait(lambda: len(_map_paths(mpath)) == 3, 60)
    record["del_path"] = _sh(f"multipathd del path {dev3}")
    _wait(lambda: len(_map_paths(mpath)) == 2, 60)
    record["map_paths"] = _map_paths(mpath)
    nodes: list[Node] = [
        device_node(tree, "a", mpath, timeout=30),
        device_node(tree, "b", devs[2], timeout=30),
    ]
    run("multipath_wsfc", nodes, "wsfc")
    run("multipath_fence", nodes, "fence_scsi", skip=["preempt-abort"])
    close(nodes)
    _sh("sed -i '/reservation_key/d' /etc/multipath.conf && multipathd reconfigure")
    _wait(lambda: _sh("multipathd getprkey map mpatha")["out"].strip() == "none", 60)
    _wait(lambda: len(_map_paths(mpath)) == 3, 60)
    _sh(f"multipathd del path {dev3}")
    _wait(lambda: len(_map_paths(mpath)) == 2, 60)
    command("multipath_nokey", ["--json", "--device", mpath, "--device", devs[2]])

    # 2. SG_IO on the paths, multipathd out of the way
    record["flush"] = _sh("pkill -x multipathd; sleep 1; multipath -F")
    _wait(lambda: not os.path.exists(mpath), 60)
    nodes = [device_node(tree, name, sg, timeout=30) for name, sg in zip("abc", sgs, strict=True)]
    run("device_wsfc", nodes, "wsfc")
    run("device_fence", nodes[:2], "fence_scsi", skip=["preempt-abort"])
    close(nodes)

    # 3. the real qemu-pr-helper
    sock = env["VMBED_PRH_SOCK"]
    nodes = list[Node](
        helper_nodes([(n, sock, d) for n, d in zip("abc", devs, strict=True)], timeout=30)
    )
    run("qemu_helper_wsfc", nodes, "wsfc")
    run("qemu_helper_fence", nodes[:2], "fence_scsi", skip=["preempt-abort"])
    twin = helper_nodes([("a2", sock, devs[0])], timeout=30)[0]
    run("qemu_helper_one_path", [nodes[0], twin], "wsfc")
    close([*nodes, twin])

    # 4. qompr-pr-helper, default backend
    qsock = "/run/qompr-pr-helper.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "qompr.daemon.main", "-k", qsock])
    try:
        wait_for_socket(qsock, 60, daemon)
        nodes = list[Node](helper_nodes([("a", qsock, devs[0]), ("b", qsock, devs[1])], timeout=30))
        run("qompr_helper_wsfc", nodes, "wsfc")
        run("qompr_helper_fence", nodes, "fence_scsi", skip=["preempt-abort"])
        close(nodes)
    finally:
        daemon.terminate()
        daemon.wait(30)

    # 5. PREEMPT AND ABORT, which wedges the LU: last
    nodes = [
        device_node(tree, name, sg, timeout=WEDGE_TIMEOUT)
        for name, sg in zip("ab", sgs[:2], strict=True)
    ]
    record["done"] = True
    run("wedge", nodes, "fence_scsi", timeout=WEDGE_TIMEOUT)
    # The worker threads stay in the kernel: no close(), the process exit ends them.


# ------------------------------------------------------------------------------------ host side


@pytest.fixture(scope="module")
def bed() -> VMResult:
    return boot(
        GUEST_SCRIPT,
        RESULT,
        paths=3,
        mpath_key=f"{MPATH_KEY:#x}",
        pr_helper=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def seen(bed: VMResult) -> dict[str, Any]:
    record = load_record(bed, RESULT)
    assert "wedge" in record, f"the last run did not finish:\n{bed.describe()}"
    return record


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def _not_passed(report: dict[str, Any]) -> set[str]:
    return {k for k, v in _statuses(report).items() if v != "PASS"}


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == name)


@pytest.mark.parametrize("run", ["multipath_wsfc", "multipath_fence"])
def test_multipath_with_reservation_key_passes_every_check(seen: dict[str, Any], run: str) -> None:
    report = seen[run]
    assert seen["map_paths"] == ["sda", "sdb"]
    assert [n["path"] for n in report["nodes"]] == ["multipath", "device"]
    assert report["nodes"][0]["key"] == f"{MPATH_KEY:#x}"
    expected = {"preempt-abort"} if run == "multipath_fence" else set()
    assert _not_passed(report) == expected, json.dumps(report["checks"], indent=1)
    assert _check(report, "multipath")["reason"].startswith("node a: multipathd answers on")
    reason = _check(report, "multipath")["reason"]
    assert "mpatha uses reservation_key from defaults: 0xabc" in reason
    assert report["exit_status"] == 0


def test_multipath_without_reservation_key_fails_with_the_hint(seen: dict[str, Any]) -> None:
    run = seen["multipath_nokey"]
    report = run["report"]
    check = _check(report, "multipath")
    assert check["status"] == "FAIL"
    assert check["reason"] == (
        "node a (/dev/mapper/mpatha): reservation_key: no reservation_key applies to mpatha; "
        "multipathd: none"
    )
    assert check["hint"].startswith("Add 'reservation_key 0x<key>' (or 'reservation_key file')")
    # Without reservation_key libmpathpersist also refuses APTPL, though LIO could persist.
    assert _not_passed(report) == {"multipath", "aptpl"}, json.dumps(report["checks"], indent=1)
    aptpl = _check(report, "aptpl")
    assert aptpl["reason"] == (
        "REGISTER with APTPL answered CHECK CONDITION, ABORTED COMMAND, ASC/ASCQ 08h/00h "
        "(LOGICAL UNIT COMMUNICATION FAILURE) although PTPL_C=1"
    )
    assert aptpl["hint"].endswith(
        "refuses APTPL while multipath.conf sets no reservation_key "
        "(seen with multipath-tools 0.9.4)"
    )
    assert run["status"] == report["exit_status"] == 1


@pytest.mark.parametrize(
    ("run", "nodes"),
    [
        ("device_wsfc", 3),
        ("device_fence", 2),
    ],
)
def test_sg_io_passes_every_check(seen: dict[str, Any], run: str, nodes: int) -> None:
    report = seen[run]
    assert len(report["nodes"]) == nodes and {n["path"] for n in report["nodes"]} == {"device"}
    expected = {"multipath"} | ({"preempt-abort"} if run == "device_fence" else set())
    assert _not_passed(report) == expected, json.dumps(report["checks"], indent=1)
    # wsfc: b took the disk from a; fence_scsi: a fenced b.
    victim, holder = ("a", "b") if run == "device_wsfc" else ("b", "a")
    assert _check(report, "write-conflict")["reason"] == (
        f"{victim}'s WRITE: RESERVATION CONFLICT; {holder}'s: GOOD"
    )


@pytest.mark.parametrize(
    ("run", "nodes"),
    [
        ("qemu_helper_wsfc", 3),
        ("qemu_helper_fence", 2),
        ("qompr_helper_wsfc", 2),
        ("qompr_helper_fence", 2),
    ],
)
def test_helpers_pass_every_check_they_can(seen: dict[str, Any], run: str, nodes: int) -> None:
    report = seen[run]
    assert len(report["nodes"]) == nodes and {n["path"] for n in report["nodes"]} == {"helper"}
    expected = NOT_ON_HELPERS | ({"preempt-abort"} if run.endswith("fence") else set())
    assert _not_passed(report) == expected, json.dumps(report["checks"], indent=1)
    assert _check(report, "write-conflict")["status"] == "SKIP"
    assert "(helper): only PR commands go through it" in _check(report, "write-conflict")["reason"]
    assert _check(report, "unit-attention")["reason"].startswith("node ")
    assert "got REGISTRATIONS PREEMPTED once" in _check(report, "unit-attention")["reason"]


def test_two_nodes_on_one_path_behind_the_helper_are_one_nexus(seen: dict[str, Any]) -> None:
    report = seen["qemu_helper_one_path"]
    check = _check(report, "distinct-nexus")
    assert check["status"] == "FAIL"
    assert check["reason"] == (
        "nodes a and a2 are one I_T nexus: a2's registration replaced a's, so a reservation one "
        "takes is held by both and neither can fence the other"
    )
    assert check["hint"].startswith("Both reach the LU through the same device path")
    assert _check(report, "restored")["status"] == "PASS"
    assert report["exit_status"] == 1


def test_preempt_and_abort_that_wedges_the_lu_fails_in_bounded_time(seen: dict[str, Any]) -> None:
    report = seen["wedge"]
    check = _check(report, "preempt-abort")
    assert check["status"] == "FAIL"
    assert check["reason"].startswith("node a's PREEMPT AND ABORT got no answer (given up after ")
    assert check["reason"].endswith(" s); the LU stopped answering")
    assert "LIO through tcm_loop deadlocks on PREEMPT AND ABORT" in check["hint"]
    # Everything before it passed; after it the LU answers nothing, which the report says.
    assert _not_passed(report) == {"preempt-abort", "latency", "multipath", "restored"}
    latency = _check(report, "latency")
    assert latency["status"] == "FAIL"
    assert latency["reason"].startswith("PR OUT PREEMPT AND ABORT WE_RO RK=0x716f6d70")
    assert "from a: no answer (given up after " in latency["reason"]
    restored = _check(report, "restored")
    assert restored["status"] == "FAIL" and "sg_persist --out --register" in restored["hint"]
    assert report["exit_status"] == 1
    # It ended (no hang): the PREEMPT AND ABORT and one clean-up command per node are each
    # given up after the timeout and the managers' 2 s.  A generous guard, not a timing target.
    assert seen["seconds"]["wedge"] < 120


def test_the_runs_took(seen: dict[str, Any]) -> None:
    """Not a timing test: the durations go into the report of the suite (docs)."""
    print(json.dumps(seen["seconds"], indent=1))
    assert set(seen["seconds"]) >= {"device_wsfc", "qemu_helper_wsfc", "wedge"}
