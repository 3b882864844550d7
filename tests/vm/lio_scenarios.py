# SPDX-License-Identifier: MIT
"""The emulated engine's conformance scenarios replayed on real LIO: guest runner, host checks.

``tests/vm/test_lio_scenarios.py`` boots the VM test bed once; in the guest
:func:`guest_main` runs every scenario of ``qompr/testing/scenarios`` (its ``lio`` steps)
against the LIO LUN and records each step's raw answer (status, sense bytes, data-in) in
``lio_scenarios.json``.  On the host, :func:`compare_with_engine` replays the same steps on
``pr-manager-emulated`` (mode ``lio``) and :func:`check_expectations` holds LIO's answers to
the TOML expectations.

Topology.  Initiators A, B, C are the bed's tcm_loop initiators
``naa.500140500000b001..b003`` (tcm_loop speaks SAS for ``naa.`` WWNs: TransportIDs are SAS,
protocol 6, with the WWN as SAS ADDRESS), each through its own tcm_loop target, which is its
own LIO target port ("port 1").  For the two-port scenarios the guest adds three tcm_loop
targets whose nexus is the same initiator WWN again ("port 2").  Every path gets an explicit
node ACL with a mapped LUN, as targetcli sets up by default: LIO's ALL_TG_PT registers an
initiator only through target ports where it has an explicit LUN ACL (a demo-mode ACL is
skipped; on Linux 6.1 ALL_TG_PT through demo-mode ACLs made one registration, not two).

Between scenarios the LU is reset through the protocol, which is fast and leaves nothing
behind: RELEASE(6) from every path (drops an SPC-2 reservation), unit attentions drained
with TEST UNIT READY, then REGISTER AND IGNORE EXISTING KEY and CLEAR from A (CLEAR removes
every registration and the reservation and turns APTPL off on LIO), unit attentions drained
again, and the result verified (no keys, no reservation, PTPL_A=0, every path TEST UNIT READY
GOOD and REQUEST SENSE NO SENSE).  PRgeneration is compared relative to each scenario's start,
so it need not reset.

PREEMPT AND ABORT.  On Linux 6.1 every PREEMPT AND ABORT that succeeds deadlocks the LU
through tcm_loop: LIO runs the command on its submission workqueue, and the LUN reset it
starts (``core_tmr_lun_reset`` -> ``core_tmr_drain_state_list``) flushes that same work
item, so it waits for itself; every later command to the LU waits too.  One that fails
(RESERVATION CONFLICT, CHECK CONDITION) is answered.  So every scenario with a PREEMPT AND
ABORT step runs last, in a child process watched with a timeout: once one hangs, the guest
records where and what the kernel threads wait on, and the rest are recorded as not run.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import platform
import time
import traceback
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import qompr
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.testing.scenario import Scenario
from qompr.testing.scenario import ScenarioStepError
from qompr.testing.scenario import Step
from qompr.testing.scenario import build
from qompr.testing.scenario import check
from qompr.testing.scenario import load_all
from tests.managers.emulated.harness import EmulatedTarget
from tests.managers.emulated.harness import new_manager

from .guest_tools import SgResult
from .guest_tools import sg_io

__all__ = [
    "HANG_TIMEOUT",
    "INITIATORS",
    "RESULT",
    "LioRecord",
    "LioTarget",
    "RecordedLio",
    "check_expectations",
    "compare_step",
    "compare_with_engine",
    "expects_preempt_and_abort_to_succeed",
    "guest_main",
    "initiator_by_tid",
    "initiator_wwn",
    "lio_result",
    "normalize_pr_in",
    "preempt_and_abort_steps",
    "reset_lu",
    "run_scenario",
    "transport_id",
]

RESULT = "lio_scenarios.json"
#: Initiator name -> index of the bed's tcm_loop initiator WWN (tests/vm/guest-init.sh).
INITIATORS: dict[str, int] = {"A": 1, "B": 2, "C": 3}
#: Seconds a deferred (PREEMPT AND ABORT) scenario may go without an answer before the guest
#: calls it hung; a command normally takes about a millisecond here, so this leaves room for
#: a very busy host.
HANG_TIMEOUT = 8.0
#: The key the reset registers to CLEAR with (no scenario uses it).
RESET_KEY = 0x5E5E_0000_0000_005E
_CONFIG = "/sys/kernel/config/target"
_GENERATION_MASK = 0xFFFF_FFFF
_BLOCK = 512
#: SG_IO's driver_status DRIVER_SENSE: sense data came with the status (not an error).
_DRIVER_SENSE = 0x08


def initiator_wwn(name: str) -> str:
    """The tcm_loop initiator WWN of initiator *name* (the bed's path-N initiator)."""
    return f"naa.500140500000b{INITIATORS[name]:03x}"


def transport_id(name: str) -> TransportID:
    """The SAS TransportID LIO reports for initiator *name* through tcm_loop."""
    return TransportID.sas(int(initiator_wwn(name).removeprefix("naa."), 16))


def preempt_and_abort_steps(scenario: Scenario) -> list[Step]:
    """The scenario's PREEMPT AND ABORT steps (mode ``lio``)."""
    return [s for s in scenario.steps("lio") if s.do == "preempt_and_abort"]


def expects_preempt_and_abort_to_succeed(scenario: Scenario) -> bool:
    """Whether a PREEMPT AND ABORT step of the scenario expects GOOD (LIO deadlocks there)."""
    return any(
        s.expect.get("status", "CHECK_CONDITION" if "sense" in s.expect else "GOOD") == "GOOD"
        for s in preempt_and_abort_steps(scenario)
    )


# ------------------------------------------------------------------------------------ guest side


def _transfer(cdb: bytes, data: bytes) -> tuple[bytes, int]:
    """The data-out buffer and data-in length SG_IO needs for one of the scenario commands.

    The scenarios give only CDBs (and PR OUT parameter lists); a real device needs the
    buffers the CDB announces, so WRITE(10) and VERIFY(10) with BYTCHK get zeroed blocks.
    """
    op = cdb[0]
    if op == Opcode.PERSISTENT_RESERVE_IN:
        return b"", int.from_bytes(cdb[7:9], "big")
    if op in (Opcode.INQUIRY, Opcode.REQUEST_SENSE, Opcode.MODE_SENSE_6):
        return b"", cdb[4]
    if op == Opcode.REPORT_LUNS:
        return b"", int.from_bytes(cdb[6:10], "big")
    if op == Opcode.READ_CAPACITY_10:
        return b"", 8
    if op == Opcode.SERVICE_ACTION_IN_16:
        return b"", int.from_bytes(cdb[10:14], "big")
    blocks = int.from_bytes(cdb[7:9], "big") if len(cdb) == 10 else 0
    if op == Opcode.READ_10:
        return b"", blocks * _BLOCK
    if op == Opcode.WRITE_10 or (op == Opcode.VERIFY_10 and cdb[1] & 0x06):
        return data or bytes(blocks * _BLOCK), 0
    return data, 0


def _record(cdb: bytes, data: bytes, result: SgResult, started: float) -> dict[str, Any]:
    return {
        "cdb": cdb.hex(),
        "out": data.hex(),
        "status": result.status,
        "sense": result.sense.hex(),
        "data": result.data.hex(),
        "host": result.host_status,
        "driver": result.driver_status,
        "ms": round((time.monotonic() - started) * 1000, 2),
    }


@dataclass(frozen=True)
class GuestPath:
    """One I_T nexus of the guest: a tcm_loop target with one initiator."""

    initiator: str
    port: int
    target_wwn: str
    sg: str
    rtpi: int


def _wait_sg(hctl: str) -> str:
    for _ in range(500):
        found = glob.glob(f"/sys/bus/scsi/devices/{hctl}/scsi_generic/*")
        if found and os.path.exists(f"/dev/{os.path.basename(found[0])}"):
            return f"/dev/{os.path.basename(found[0])}"
        time.sleep(0.01)
    raise RuntimeError(f"no /dev/sg for {hctl}")


def _explicit_acl(target_wwn: str, initiator: str) -> None:
    """Turn the demo-mode ACL of *initiator* into an explicit one with LUN 0 mapped (LIO
    converts it in place, keeping the session)."""
    tpg = f"{_CONFIG}/loopback/{target_wwn}/tpgt_1"
    acl = f"{tpg}/acls/{initiator_wwn(initiator)}"
    os.makedirs(f"{acl}/lun_0", exist_ok=True)
    if not os.path.lexists(f"{acl}/lun_0/lun"):
        os.symlink(f"{tpg}/lun/lun_0", f"{acl}/lun_0/lun")


def _add_target(target_wwn: str, initiator: str) -> str:
    """A new tcm_loop target for *initiator* with the bed's LUN; returns its /dev/sgN."""
    tpg = f"{_CONFIG}/loopback/{target_wwn}/tpgt_1"
    os.makedirs(tpg)
    # The I_T nexus must exist before the LUN is linked (see guest-init.sh).
    with open(f"{tpg}/nexus", "w") as nexus:
        nexus.write(initiator_wwn(initiator))
    os.makedirs(f"{tpg}/lun/lun_0")
    os.symlink(os.environ["VMBED_LIO_DEV"], f"{tpg}/lun/lun_0/vmbed_port")
    with open(f"{tpg}/address") as address:
        return _wait_sg(address.read().strip() + ":0")


def _rtpi(fd: int) -> int:
    """The RELATIVE TARGET PORT IDENTIFIER from INQUIRY VPD page 83h (designator type 4)."""
    page = sg_io(fd, bytes((Opcode.INQUIRY, 1, 0x83, 0, 255, 0)), data_in_len=255).data
    at = 4
    while at + 4 <= len(page):
        length = page[at + 3]
        if page[at + 1] & 0x0F == 4:
            return int.from_bytes(page[at + 6 : at + 8], "big")
        at += 4 + length
    raise RuntimeError("no relative target port designator in VPD page 83h")


class _TcmLoopInitiators:
    """The initiator names of the bed: tcm_loop initiator WWNs, SAS TransportIDs."""

    def transport_id(self, initiator: str) -> TransportID:
        return transport_id(initiator)

    def initiator_of(self, tid: TransportID) -> str | None:
        return next((n for n in INITIATORS if transport_id(n) == tid), None)


class LioTarget(_TcmLoopInitiators):
    """A scenario :class:`~qompr.testing.scenario.Target` on the guest's LIO LUN, through
    SG_IO on /dev/sgN.

    Initiators are the tcm_loop initiator WWNs (SAS TransportIDs); port index *n* of an
    initiator is its *n*-th tcm_loop target.
    """

    def __init__(self) -> None:
        self.paths: dict[tuple[str, int], GuestPath] = {}
        self._fds: dict[tuple[str, int], int] = {}

    def add(self, initiator: str, port: int, target_wwn: str, sg: str) -> None:
        fd = os.open(sg, os.O_RDWR | os.O_NONBLOCK)
        self._fds[(initiator, port)] = fd
        self.paths[(initiator, port)] = GuestPath(initiator, port, target_wwn, sg, _rtpi(fd))

    def raw(self, initiator: str, port: int, cdb: bytes, data: bytes) -> SgResult:
        out, din = _transfer(cdb, data)
        # A long SG_IO timeout: a hang is detected by the parent (HANG_TIMEOUT), and an
        # expiring command would only add the SCSI error handler's aborts to the hang.
        return sg_io(
            self._fds[(initiator, port)], cdb, data_out=out, data_in_len=din, timeout_ms=600_000
        )

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        r = self.raw(initiator, port, cdb, data)
        return ScsiResult(ScsiStatus(r.status), r.sense, r.data)

    def rtpi(self, port: int, initiator: str) -> int:
        return self.paths[(initiator, port)].rtpi


_RELEASE6 = bytes((Opcode.RELEASE_6, 0, 0, 0, 0, 0))
_TUR = bytes(6)
_REQUEST_SENSE = bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0))


def _pr_out(
    action: PrOutAction, rk: int, sark: int, all_tg_pt: bool = False
) -> tuple[bytes, bytes]:
    data = PrOutParameters(reservation_key=rk, sa_key=sark, all_tg_pt=all_tg_pt).to_bytes()
    return PrOutCdb(action, 0, 0, len(data)).to_bytes(), data


def _drain(target: LioTarget, nexus: tuple[str, int], log: list[str]) -> bool:
    """TEST UNIT READY until GOOD (each unit attention is reported once); True when GOOD."""
    for _ in range(16):
        r = target.raw(*nexus, _TUR, b"")
        if r.status == ScsiStatus.GOOD:
            return True
        log.append(f"{nexus[0]}/{nexus[1]} TUR: status {r.status:#x} sense {r.sense[:14].hex()}")
    return False


def reset_lu(target: LioTarget, nexuses: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Bring the LU back to no registrations, no reservation, no unit attentions, APTPL off.

    :returns: ``{"ok": bool, "log": [...]}``; the log lists what had to be drained.
    """
    log: list[str] = []
    for nexus in nexuses:
        target.raw(*nexus, _RELEASE6, b"")
    for nexus in nexuses:
        _drain(target, nexus, log)
    # REGISTER AND IGNORE EXISTING KEY, then CLEAR, from the first nexus where that works:
    # LIO refuses to re-register an ALL_TG_PT registration without ALL_TG_PT (24h/00h).
    cleared = False
    for nexus, all_tg_pt in ((n, a) for n in nexuses for a in (False, True)):
        r = target.raw(
            *nexus, *_pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, 0, RESET_KEY, all_tg_pt)
        )
        if r.status == ScsiStatus.GOOD:
            r = target.raw(*nexus, *_pr_out(PrOutAction.CLEAR, RESET_KEY, 0))
            if r.status == ScsiStatus.GOOD:
                cleared = True
                break
        log.append(
            f"reset from {nexus[0]}/{nexus[1]}: status {r.status:#x} sense {r.sense[:14].hex()}"
        )
    ok = all([_drain(target, nexus, log) for nexus in nexuses]) and cleared
    first = nexuses[0]
    keys = target.raw(*first, PrInCdb(PrInAction.READ_KEYS, 64).to_bytes(), b"")
    held = target.raw(*first, PrInCdb(PrInAction.READ_RESERVATION, 64).to_bytes(), b"")
    caps = target.raw(*first, PrInCdb(PrInAction.REPORT_CAPABILITIES, 8).to_bytes(), b"")
    clean = (
        keys.data[4:8] == bytes(4)
        and held.data[4:8] == bytes(4)
        and len(caps.data) == 8
        and not caps.data[3] & 0x01  # PTPL_A
    )
    if not clean:
        log.append(f"not clean: keys {keys.data.hex()} rr {held.data.hex()} caps {caps.data.hex()}")
    for nexus in nexuses:
        sense = target.raw(*nexus, _REQUEST_SENSE, b"").data
        if len(sense) < 14 or sense[2] & 0x0F or sense[12:14] != bytes(2):
            log.append(f"{nexus[0]}/{nexus[1]} REQUEST SENSE {sense.hex()}")
            clean = False
    return {"ok": ok and clean, "log": log}


Emit = Callable[[str, Any], None]


def run_scenario(scenario: Scenario, target: LioTarget, emit: Emit) -> None:
    """Reset the LU, read the PRgeneration base, run every ``lio`` step; report each through
    *emit* (``reset``, ``probe``, ``start`` before a command, ``step`` after it)."""
    # Every path, also those of ports the scenario does not use: nothing may leak.
    emit("reset", reset_lu(target, sorted(target.paths, key=lambda n: (n[1], n[0]))))
    cdb = PrInCdb(PrInAction.READ_KEYS, 8).to_bytes()
    started = time.monotonic()
    emit("probe", _record(cdb, b"", target.raw(scenario.initiators[0], 1, cdb, b""), started))
    for step in scenario.steps("lio"):
        cdb, data = build(scenario, step, target)
        emit("start", {"index": step.index, "cdb": cdb.hex()})
        started = time.monotonic()
        result = target.raw(step.initiator, step.port, cdb, data)
        emit("step", {"index": step.index, **_record(cdb, data, result, started)})


def _collect(scenario: Scenario, target: LioTarget) -> dict[str, Any]:
    record: dict[str, Any] = {"steps": []}

    def emit(kind: str, payload: Any) -> None:
        if kind == "step":
            record["steps"].append(payload)
        elif kind != "start":
            record[kind] = payload

    run_scenario(scenario, target, emit)
    return record


def _child(scenario: Scenario, target: LioTarget, conn: Connection) -> None:  # pragma: no cover
    def emit(kind: str, payload: Any) -> None:
        conn.send((kind, payload))

    run_scenario(scenario, target, emit)
    conn.send(("done", None))


def _kernel_waits() -> list[dict[str, str]]:
    """What the LIO and SCSI kernel threads and blocked processes wait on (the hang's
    evidence): comm, wchan and the kernel stack of each thread in state D."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        pid = stat.split("/")[2]
        try:
            with open(stat) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state != "D":
                continue
            info = {"pid": pid}
            for name in ("comm", "wchan", "stack"):
                with open(f"/proc/{pid}/{name}") as f:
                    info[name] = f.read().strip()
        except OSError:
            continue
        out.append(info)
    return out


def _run_watched(scenario: Scenario, target: LioTarget) -> dict[str, Any]:
    """Run *scenario* in a child process; a command unanswered for HANG_TIMEOUT is a hang."""
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(
        target=_child, args=(scenario, target, child), daemon=True
    )
    proc.start()
    record: dict[str, Any] = {"steps": []}
    started: dict[str, Any] | None = None
    last = time.monotonic()
    while True:
        if parent.poll(0.05):
            kind, payload = parent.recv()
            last = time.monotonic()
            if kind == "done":
                proc.join()
                return record
            if kind == "start":
                started = payload
            elif kind == "step":
                record["steps"].append(payload)
            else:
                record[kind] = payload
        elif not proc.is_alive():
            record["crashed"] = f"the child process exited with {proc.exitcode}"
            return record
        elif time.monotonic() - last > HANG_TIMEOUT:
            record["hung"] = {
                "step": started["index"] if started else None,
                "cdb": started["cdb"] if started else None,
                "after_s": HANG_TIMEOUT,
                "kernel_waits": _kernel_waits(),
            }
            # The child waits in the sg driver, which sleeps interruptibly: kill it.  The
            # command itself stays stuck in LIO, and so does the LU.
            proc.kill()
            proc.join(2.0)
            return record


def _ordered(scenarios: Sequence[Scenario]) -> Iterator[tuple[Scenario, bool]]:
    """(scenario, deferred): one-port scenarios, two-port ones, then those with PREEMPT AND
    ABORT (the ones expected to fail it first: a successful one wedges the LU)."""
    deferred = [s for s in scenarios if preempt_and_abort_steps(s)]
    normal = [s for s in scenarios if s not in deferred]
    for scenario in sorted(normal, key=lambda s: s.ports):
        yield scenario, False
    for scenario in sorted(deferred, key=expects_preempt_and_abort_to_succeed):
        yield scenario, True


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Replay every scenario on LIO; write :data:`RESULT` (JSON) to ``$VMBED_RESULT_DIR``."""
    begin = time.monotonic()
    env = os.environ
    scenarios = load_all()
    target = LioTarget()
    sgs = env["VMBED_SGS"].split()
    for name, index in INITIATORS.items():
        target_wwn = env[f"VMBED_TARGET{index}"]
        _explicit_acl(target_wwn, name)
        target.add(name, 1, target_wwn, sgs[index - 1])
    record: dict[str, Any] = {
        "kernel": platform.release(),
        "qompr": qompr.__version__,
        "scenarios": {},
    }
    wedged: str | None = None
    for scenario, deferred in _ordered(scenarios):
        if scenario.ports > 1 and ("A", 2) not in target.paths:
            for name, index in INITIATORS.items():
                target_wwn = f"naa.500140500000a{len(INITIATORS) + index:03x}"
                sg = _add_target(target_wwn, name)
                _explicit_acl(target_wwn, name)
                target.add(name, 2, target_wwn, sg)
        if wedged is not None:
            record["scenarios"][scenario.id] = {"not_run": wedged, "steps": []}
        elif deferred:
            result = _run_watched(scenario, target)
            record["scenarios"][scenario.id] = result
            if "hung" in result:
                wedged = f"the LU hung in {scenario.id} step {result['hung']['step']}"
        else:
            try:
                record["scenarios"][scenario.id] = _collect(scenario, target)
            except Exception:  # recorded, so that one broken scenario does not hide the rest
                record["scenarios"][scenario.id] = {"crashed": traceback.format_exc()}
    record["paths"] = [
        {
            "initiator": p.initiator,
            "port": p.port,
            "target": p.target_wwn,
            "sg": p.sg,
            "rtpi": p.rtpi,
        }
        for p in target.paths.values()
    ]
    acls = sorted(glob.glob(f"{_CONFIG}/loopback/*/tpgt_1/acls/*/lun_0/lun"))
    record["explicit_acls"] = [a.split("/")[6] + " " + a.split("/")[9] for a in acls]
    record["seconds"] = round(time.monotonic() - begin, 2)
    path = os.path.join(env["VMBED_RESULT_DIR"], RESULT)
    with open(path, "w") as out:
        json.dump(record, out, indent=0)


# ------------------------------------------------------------------------------------ host side


@dataclass(frozen=True)
class LioRecord:
    """What the guest recorded: the paths (initiator, port index, RTPI) and each scenario."""

    kernel: str
    paths: tuple[Mapping[str, Any], ...]
    scenarios: Mapping[str, Mapping[str, Any]]
    explicit_acls: tuple[str, ...]
    seconds: float

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LioRecord:
        return cls(
            kernel=doc["kernel"],
            paths=tuple(doc["paths"]),
            scenarios=doc["scenarios"],
            explicit_acls=tuple(doc["explicit_acls"]),
            seconds=float(doc["seconds"]),
        )

    def target(self) -> RecordedLio:
        return RecordedLio({(p["initiator"], p["port"]): p["rtpi"] for p in self.paths})


class RecordedLio(_TcmLoopInitiators):
    """The guest's :class:`LioTarget` as seen from the host: the name and port mappings
    (:func:`qompr.testing.scenario.check` needs them), no commands."""

    def __init__(self, rtpis: Mapping[tuple[str, int], int]) -> None:
        self.rtpis = dict(rtpis)
        self._owner = {rtpi: nexus for nexus, rtpi in self.rtpis.items()}

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        raise NotImplementedError("recorded answers only: the LU is in the guest")

    def rtpi(self, port: int, initiator: str) -> int:
        return self.rtpis[(initiator, port)]

    def port_label(self, rtpi: int, initiator: str) -> str:
        """``"A/2"`` for the RTPI of A's second path, if *initiator* is A (or unknown: "?").

        An RTPI of another initiator's path is shown as such: LIO would have registered the
        initiator through a target port it has no I_T nexus on.
        """
        owner = self._owner.get(rtpi)
        if owner is None:
            return f"{initiator}/rtpi {rtpi}?"
        if initiator not in ("?", owner[0]):
            return f"{initiator}/rtpi {rtpi} of {owner[0]}/{owner[1]}"
        return f"{initiator}/{owner[1]}"


def initiator_by_tid(tid: bytes) -> str:
    """The initiator whose TransportID *tid* is, or begins with (READ FULL STATUS may be cut
    inside a TransportID); ``"?"`` when that does not tell."""
    names = [n for n in INITIATORS if tid and transport_id(n).to_bytes().startswith(tid)]
    return names[0] if len(names) == 1 else "?"


def lio_result(step: Mapping[str, Any]) -> ScsiResult:
    """A recorded step as a :class:`ScsiResult`."""
    return ScsiResult(
        ScsiStatus(step["status"]), bytes.fromhex(step["sense"]), bytes.fromhex(step["data"])
    )


def _generation(data: bytes, base: int) -> int | None:
    if len(data) < 4:
        return None
    return (int.from_bytes(data[:4], "big") - base) & _GENERATION_MASK


def normalize_pr_in(
    action: int, data: bytes, base: int, port_label: Callable[[int, bytes], str]
) -> dict[str, Any]:
    """PR IN data made comparable between targets.

    PRgeneration becomes relative to *base*; in READ FULL STATUS each descriptor's RELATIVE
    TARGET PORT IDENTIFIER becomes ``port_label(rtpi, transport_id)`` (the initiator and
    port index it stands for) unless ALL_TG_PT is set.  Every other byte is kept, TransportIDs
    included (both sides use tcm_loop's SAS TransportIDs).
    """
    if action == PrInAction.REPORT_CAPABILITIES:
        return {"data": data.hex()}  # no PRgeneration in this one (SPC-4 §6.15.4)
    out: dict[str, Any] = {"generation": _generation(data, base)}
    if action != PrInAction.READ_FULL_STATUS:
        out["rest"] = data[4:].hex()
        return out
    out["additional_length"] = data[4:8].hex()
    descriptors = []
    at = 8
    while at + 24 <= len(data):
        head = data[at : at + 24]
        tid_len = int.from_bytes(head[20:24], "big")
        tid = data[at + 24 : at + 24 + tid_len]
        rtpi = int.from_bytes(head[18:20], "big")
        descriptors.append(
            {
                "key": head[0:8].hex(),
                "bytes_8_17": head[8:18].hex(),
                "port": rtpi if head[12] & 0x02 else port_label(rtpi, tid),
                "tid": tid.hex(),
            }
        )
        at += 24 + tid_len
    out["descriptors"] = descriptors
    out["tail"] = data[at:].hex()
    return out


def _sense_triple(sense: bytes) -> tuple[int, int, int] | str:
    if not any(sense):
        return "no sense"
    try:
        code = SenseData.from_bytes(sense).code
    except Exception as exc:  # a malformed buffer is a difference to show, not a crash
        return f"bad sense {sense.hex()}: {exc}"
    return (int(code.key), code.asc, code.ascq)


def _describe(result: ScsiResult) -> str:
    sense = f" sense {_sense_triple(result.sense)}" if result.sense else ""
    return f"{result.status.name}{sense}"


def compare_step(
    step: Step,
    cdb: bytes,
    lio: ScsiResult,
    engine: ScsiResult,
    *,
    lio_base: int,
    engine_base: int,
    lio_label: Callable[[int, bytes], str],
    engine_label: Callable[[int, bytes], str],
) -> list[str]:
    """The differences between LIO's and the engine's answer to one step (empty if none)."""
    where = f"step {step.index} ({step.initiator}/{step.port} {step.do})"
    if lio.status != engine.status:
        return [f"{where}: LIO {_describe(lio)}, engine {_describe(engine)}"]
    if lio.status == ScsiStatus.CHECK_CONDITION:
        got, want = _sense_triple(lio.sense), _sense_triple(engine.sense)
        return [] if got == want else [f"{where}: sense LIO {got}, engine {want}"]
    if lio.status != ScsiStatus.GOOD:
        return []
    if cdb[0] == Opcode.PERSISTENT_RESERVE_IN:
        action = cdb[1] & 0x1F
        got_pr = normalize_pr_in(action, lio.data, lio_base, lio_label)
        want_pr = normalize_pr_in(action, engine.data, engine_base, engine_label)
        if got_pr != want_pr:
            return [f"{where}: PR IN data\n  LIO    {got_pr}\n  engine {want_pr}"]
    if cdb[0] == Opcode.REQUEST_SENSE:
        got, want = _sense_triple(lio.data), _sense_triple(engine.data)
        if got != want:
            return [f"{where}: REQUEST SENSE data LIO {got}, engine {want}"]
    return []


def compare_with_engine(
    scenario: Scenario, recorded: Mapping[str, Any], lio: RecordedLio
) -> list[str]:
    """Replay the scenario's ``lio`` steps on ``pr-manager-emulated`` (mode ``lio``) and
    compare each answer with LIO's recorded one (as many steps as LIO answered)."""
    tree = qompr.new_tree(load_entrypoints=False)
    manager = new_manager(tree, mode="lio", target_ports=scenario.ports)
    engine = EmulatedTarget(
        manager,
        scenario.initiators,
        scenario.ports,
        transport_ids={name: transport_id(name) for name in scenario.initiators},
    )
    probe = PrInCdb(PrInAction.READ_KEYS, 8).to_bytes()
    engine_base = int.from_bytes(engine.command(scenario.initiators[0], 1, probe, b"").data[:4])
    lio_base = int.from_bytes(bytes.fromhex(recorded["probe"]["data"])[:4], "big")

    def engine_label(rtpi: int, tid: bytes) -> str:
        return f"{initiator_by_tid(tid)}/{rtpi}"  # the engine's RTPIs are the port indexes

    def lio_label(rtpi: int, tid: bytes) -> str:
        return lio.port_label(rtpi, initiator_by_tid(tid))

    diffs: list[str] = []
    for step, answer in zip(scenario.steps("lio"), recorded["steps"], strict=False):
        if step.index != answer["index"]:
            return [*diffs, f"step {step.index}: the record holds step {answer['index']}"]
        if answer["host"] or answer["driver"] & ~_DRIVER_SENSE:
            # SG_IO failed below SCSI: the status is not LIO's answer.
            diffs.append(
                f"step {step.index}: SG_IO host {answer['host']} driver {answer['driver']}"
            )
        cdb, data = build(scenario, step, engine)
        result = engine.command(step.initiator, step.port, cdb, data)
        diffs += compare_step(
            step,
            cdb,
            lio_result(answer),
            result,
            lio_base=lio_base,
            engine_base=engine_base,
            lio_label=lio_label,
            engine_label=engine_label,
        )
    return diffs


def check_expectations(
    scenario: Scenario, recorded: Mapping[str, Any], lio: RecordedLio
) -> list[str]:
    """LIO's recorded answers held to the scenario's own (``lio`` mode) expectations."""
    base = int.from_bytes(bytes.fromhex(recorded["probe"]["data"])[:4], "big")
    failures = []
    for step, answer in zip(scenario.steps("lio"), recorded["steps"], strict=False):
        try:
            check(scenario, step, lio_result(answer), lio, base)
        except ScenarioStepError as exc:
            failures.append(str(exc))
    return failures
