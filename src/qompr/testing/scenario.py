# SPDX-License-Identifier: MIT
"""Multi-initiator PR scenarios: the file format, the command builders and the checker.

The conformance scenarios (:data:`SCENARIO_DIR`, installed with qompr) hold a logical unit's
answers to what Linux LIO answers, in mode ``lio`` (and to the letter of SPC-4 in mode
``spc4``, where the two differ).  One scenario file drives any target: ``pr-manager-emulated``
in qompr's tests, any pr-manager through :class:`qompr.testing.ManagerTarget` (the pytest
plugin :mod:`qompr.testing.conformance` does that), and real LIO in qompr's VM test bed.
Everything target-specific is behind :class:`Target`:

* initiators are named abstractly (``"A"``, ``"B"``, ``"C"``); the target maps each to an
  I_T nexus (an iSCSI port with IQN and ISID in the engine's tests, a tcm_loop path with its
  own SAS WWN on LIO) and to its TransportID;
* target ports are abstract indexes 1..N; the target maps each, per initiator, to the
  RELATIVE TARGET PORT IDENTIFIER of that initiator's I_T nexus through it (one RTPI per port
  index in the engine; on LIO with tcm_loop every I_T nexus is its own target port);
* PRgeneration is checked relative to its value at the start of the scenario;
* TransportIDs in READ FULL STATUS are compared by mapping them back to initiator names.

File format (TOML, ``qompr/testing/scenarios/*.toml``)::

    [[scenario]]
    id = "register-new"                 # unique
    title = "..."
    ref = "docs/reference/spc4-pr.md §7 #2"            # where the expectation comes from
    initiators = ["A", "B", "C"]        # optional, this default
    ports = 1                           # optional: number of target ports
    modes = ["lio", "spc4"]             # optional: the modes the scenario applies to
    keys = { K_Z = 0x77 }               # optional: more symbolic keys

    [[scenario.step]]
    as = "A"                            # initiator (a list repeats the step for each)
    port = 1                            # optional target port index
    do = "register"                     # see PR_OUT_COMMANDS, PR_IN_COMMANDS, SCSI_COMMANDS
    sark = "K_A"                        # parameters, see PARAMETERS
    status = "GOOD"                     # expectations, see EXPECTATIONS
    spc4 = { status = "RESERVATION_CONFLICT" }   # per-mode overrides of expectations

Keys are ints or the names ``K_A`` … (see :data:`DEFAULT_KEYS`); in a step repeated over
several initiators, ``{as}`` in a string is replaced by the initiator name (``"K_{as}"``).
"""

from __future__ import annotations

import struct
import tomllib
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Protocol

import attrs

from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.testing._errors import TestingError

__all__ = [
    "DEFAULT_KEYS",
    "EXPECTATIONS",
    "MODES",
    "PARAMETERS",
    "PR_IN_COMMANDS",
    "PR_OUT_COMMANDS",
    "SCENARIO_DIR",
    "SCSI_COMMANDS",
    "Scenario",
    "ScenarioFormatError",
    "ScenarioStepError",
    "Step",
    "Target",
    "build",
    "check",
    "load_all",
    "load_file",
    "run",
]

#: The conformance scenarios' directory (package data of :mod:`qompr.testing`).
SCENARIO_DIR = Path(__file__).parent / "scenarios"
#: ``lio``: answer as Linux LIO does; ``spc4``: as the letter of SPC-4 says.
MODES = ("lio", "spc4")

#: The symbolic reservation keys every scenario knows (K_H has bit 63 set on purpose).
DEFAULT_KEYS: dict[str, int] = {
    "K_A": 0xA1A1_0000_0000_00A1,
    "K_B": 0xB2B2_0000_0000_00B2,
    "K_C": 0xC3C3_0000_0000_00C3,
    "K_D": 0xD4D4_0000_0000_00D4,
    "K_X": 0x5858_0000_0000_0058,
    "K_H": 0xF000_0000_0000_0001,
}

PR_OUT_COMMANDS: dict[str, PrOutAction] = {
    "register": PrOutAction.REGISTER,
    "reserve": PrOutAction.RESERVE,
    "release": PrOutAction.RELEASE,
    "clear": PrOutAction.CLEAR,
    "preempt": PrOutAction.PREEMPT,
    "preempt_and_abort": PrOutAction.PREEMPT_AND_ABORT,
    "register_and_ignore": PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
    "register_and_move": PrOutAction.REGISTER_AND_MOVE,
    "replace_lost_reservation": PrOutAction.REPLACE_LOST_RESERVATION,
}
PR_IN_COMMANDS: dict[str, PrInAction] = {
    "read_keys": PrInAction.READ_KEYS,
    "read_reservation": PrInAction.READ_RESERVATION,
    "report_capabilities": PrInAction.REPORT_CAPABILITIES,
    "read_full_status": PrInAction.READ_FULL_STATUS,
}
#: Other commands, as fixed CDBs (LBA 1, one block where there is a transfer).
SCSI_COMMANDS: dict[str, bytes] = {
    "tur": bytes(6),
    "inquiry": bytes((Opcode.INQUIRY, 0, 0, 0, 96, 0)),
    "report_luns": bytes((Opcode.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0)),
    "request_sense": bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0)),
    "read10": bytes((Opcode.READ_10, 0, 0, 0, 0, 1, 0, 0, 1, 0)),
    "write10": bytes((Opcode.WRITE_10, 0, 0, 0, 0, 1, 0, 0, 1, 0)),
    "read_capacity10": bytes((Opcode.READ_CAPACITY_10, *bytes(9))),
    "read_capacity16": bytes((Opcode.SERVICE_ACTION_IN_16, 0x10, *bytes(11), 32, 0, 0)),
    "mode_sense6": bytes((Opcode.MODE_SENSE_6, 0, 0x3F, 0, 192, 0)),
    "sync_cache10": bytes((Opcode.SYNCHRONIZE_CACHE_10, *bytes(9))),
    "verify10": bytes((Opcode.VERIFY_10, 0, 0, 0, 0, 1, 0, 0, 1, 0)),
    "verify10_bytchk": bytes((Opcode.VERIFY_10, 0x02, 0, 0, 0, 1, 0, 0, 1, 0)),
    # IMMED=1: LIO executes START STOP UNIT only with IMMED=1 and START=1 (else 24h/00h).
    "start_unit": bytes((Opcode.START_STOP_UNIT, 0x01, 0, 0, 0x01, 0)),
    "stop_unit": bytes((Opcode.START_STOP_UNIT, 0x01, 0, 0, 0x00, 0)),
    "reserve6": bytes((Opcode.RESERVE_6, *bytes(5))),
    "release6": bytes((Opcode.RELEASE_6, *bytes(5))),
}
#: What a step may say about the command to send.
PARAMETERS = frozenset(
    {
        "rk",  # RESERVATION KEY
        "sark",  # SERVICE ACTION RESERVATION KEY
        "type",  # PR type name (WE, EA, WE_RO, EA_RO, WE_AR, EA_AR) or int
        "scope",  # SCOPE nibble (int)
        "aptpl",
        "all_tg_pt",
        "spec_i_pt",
        "tids",  # SPEC_I_PT: list of initiator names
        "unreg",  # REGISTER AND MOVE
        "dest",  # REGISTER AND MOVE destination initiator
        "dest_port",  # ... its target port index (default: the sender's)
        "dest_rtpi",  # ... or a literal RELATIVE TARGET PORT IDENTIFIER
        "tid_length_delta",  # add to the TRANSPORTID PARAMETER DATA LENGTH field
        "param_length",  # PARAMETER LIST LENGTH in the CDB (default: the list's)
        "param_hex",  # the parameter list as hex (overrides everything above)
        "action",  # raw service action for pr_out / pr_in
        "alloc",  # PR IN ALLOCATION LENGTH (default 8192)
    }
)
#: What a step may expect.
EXPECTATIONS = frozenset(
    {
        "status",  # GOOD, RESERVATION_CONFLICT, CHECK_CONDITION (default GOOD)
        "sense",  # a SenseCode name; implies CHECK_CONDITION
        "generation",  # PRgeneration relative to the scenario start
        "keys",  # READ KEYS list
        "additional_length",  # bytes 4-7 of READ KEYS / READ RESERVATION / READ FULL STATUS
        "length",  # length of the data-in
        "reservation",  # "none" or { type = "WE", key = "K_A" } (READ RESERVATION)
        "full_status",  # list of { as, key, holder, type, all_tg_pt, port } (READ FULL STATUS)
        "data_hex",  # the exact data-in
        "data_tail_hex",  # the data-in after PRGENERATION (bytes 4-)
        "sense_data",  # REQUEST SENSE: the SenseCode name its data must hold
    }
)
_STEP_KEYS = PARAMETERS | EXPECTATIONS | {"as", "port", "do", "note", *MODES}
_SCENARIO_KEYS = {"id", "title", "ref", "initiators", "ports", "modes", "keys", "step"}
_DEFAULT_ALLOC = 8192


class Target(Protocol):
    """What a scenario needs from a logical unit under test."""

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        """Send one command from *initiator* through target port index *port*."""
        ...

    def transport_id(self, initiator: str) -> TransportID:
        """The TransportID of *initiator*'s port (as READ FULL STATUS would report it)."""
        ...

    def rtpi(self, port: int, initiator: str) -> int:
        """The RELATIVE TARGET PORT IDENTIFIER through which *initiator* reaches target port
        index *port* (REGISTER AND MOVE destinations, READ FULL STATUS descriptors)."""
        ...

    def initiator_of(self, tid: TransportID) -> str | None:
        """The initiator name whose port *tid* is, or ``None``."""
        ...


@attrs.frozen
class Step:
    """One step: who sends what, and what must come back (already mode-resolved)."""

    index: int
    initiator: str
    port: int
    do: str
    params: Mapping[str, Any]
    expect: Mapping[str, Any]


@attrs.frozen
class Scenario:
    """One scenario of a file."""

    id: str
    title: str
    ref: str
    file: str
    initiators: tuple[str, ...]
    ports: int
    modes: tuple[str, ...]
    keys: Mapping[str, int]
    raw_steps: tuple[Mapping[str, Any], ...]

    def steps(self, mode: str) -> Iterator[Step]:
        """The steps for *mode*, with repeated steps expanded and overrides applied."""
        index = 0
        for raw in self.raw_steps:
            who = raw["as"]
            for initiator in [who] if isinstance(who, str) else who:
                index += 1
                fields = {k: _expand(v, initiator) for k, v in raw.items() if k not in MODES}
                fields.update({k: _expand(v, initiator) for k, v in raw.get(mode, {}).items()})
                yield Step(
                    index=index,
                    initiator=initiator,
                    port=int(fields.get("port", 1)),
                    do=fields["do"],
                    params={k: v for k, v in fields.items() if k in PARAMETERS},
                    expect={k: v for k, v in fields.items() if k in EXPECTATIONS},
                )

    def opcodes(self, mode: str) -> frozenset[int]:
        """The operation codes the scenario sends in *mode*."""
        return frozenset(_opcode(step.do) for step in self.steps(mode))

    def key(self, value: int | str) -> int:
        """A key from an int or a symbolic name."""
        if isinstance(value, int):
            return value
        return self.keys[value]


def _opcode(do: str) -> int:
    if do in SCSI_COMMANDS:
        return SCSI_COMMANDS[do][0]
    if do in PR_IN_COMMANDS or do == "pr_in":
        return int(Opcode.PERSISTENT_RESERVE_IN)
    return int(Opcode.PERSISTENT_RESERVE_OUT)


def _expand(value: Any, initiator: str) -> Any:
    if isinstance(value, str):
        return value.replace("{as}", initiator)
    if isinstance(value, list):
        return [_expand(v, initiator) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, initiator) for k, v in value.items()}
    return value


class ScenarioFormatError(TestingError, ValueError):
    """A scenario file that does not follow the format."""


def _check_step(where: str, raw: Mapping[str, Any], initiators: Sequence[str], ports: int) -> None:
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ScenarioFormatError(f"{where}: unknown step keys {sorted(unknown)}")
    for mode in MODES:
        extra = set(raw.get(mode, {})) - EXPECTATIONS - PARAMETERS
        if extra:
            raise ScenarioFormatError(f"{where}: unknown keys in {mode} override {sorted(extra)}")
    do = raw.get("do")
    known = (*PR_OUT_COMMANDS, *PR_IN_COMMANDS, *SCSI_COMMANDS, "pr_out", "pr_in")
    if do not in known:
        raise ScenarioFormatError(f"{where}: unknown command {do!r}")
    who = raw.get("as")
    names = [who] if isinstance(who, str) else who
    if not names or any(name not in initiators for name in names):
        raise ScenarioFormatError(f"{where}: 'as' must name initiators of {list(initiators)}")
    if not 1 <= int(raw.get("port", 1)) <= ports:
        raise ScenarioFormatError(f"{where}: port out of range")
    sense = raw.get("sense")
    for candidate in (sense, *(raw.get(m, {}).get("sense") for m in MODES)):
        if candidate is not None and candidate not in SenseCode.names():
            raise ScenarioFormatError(f"{where}: unknown sense {candidate!r}")


def load_file(path: Path) -> list[Scenario]:
    """The scenarios of one TOML file.

    :raises ScenarioFormatError: for unknown keys, commands, initiators or sense names.
    """
    with path.open("rb") as f:
        doc = tomllib.load(f)
    out: list[Scenario] = []
    for number, raw in enumerate(doc.get("scenario", []), 1):
        where = f"{path.name} scenario {number}"
        unknown = set(raw) - _SCENARIO_KEYS
        if unknown:
            raise ScenarioFormatError(f"{where}: unknown keys {sorted(unknown)}")
        initiators = tuple(raw.get("initiators", ("A", "B", "C")))
        ports = int(raw.get("ports", 1))
        modes = tuple(raw.get("modes", MODES))
        if set(modes) - set(MODES):
            raise ScenarioFormatError(f"{where}: unknown modes {modes}")
        steps = tuple(raw.get("step", ()))
        if not steps:
            raise ScenarioFormatError(f"{where}: no steps")
        for index, step in enumerate(steps, 1):
            _check_step(f"{where} step {index}", step, initiators, ports)
        out.append(
            Scenario(
                id=raw["id"],
                title=raw.get("title", ""),
                ref=raw.get("ref", ""),
                file=path.name,
                initiators=initiators,
                ports=ports,
                modes=modes,
                keys={**DEFAULT_KEYS, **raw.get("keys", {})},
                raw_steps=steps,
            )
        )
    return out


def load_all(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario under *directory*, file by file.

    :raises ScenarioFormatError: also for duplicate scenario ids.
    """
    out: list[Scenario] = []
    for path in sorted(directory.glob("*.toml")):
        out.extend(load_file(path))
    ids = [s.id for s in out]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ScenarioFormatError(f"duplicate scenario ids {sorted(duplicates)}")
    return out


# -- building commands ---------------------------------------------------------------------


def _pr_type(value: int | str | None) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return int(PrType[value])


def build(scenario: Scenario, step: Step, target: Target) -> tuple[bytes, bytes]:
    """The CDB and data-out of *step*."""
    p = step.params
    do = step.do
    if do in SCSI_COMMANDS:
        return SCSI_COMMANDS[do], b""
    if do in PR_IN_COMMANDS or do == "pr_in":
        action = PR_IN_COMMANDS[do] if do in PR_IN_COMMANDS else int(p["action"])
        return PrInCdb(action, int(p.get("alloc", _DEFAULT_ALLOC))).to_bytes(), b""
    action = PR_OUT_COMMANDS[do] if do in PR_OUT_COMMANDS else int(p["action"])
    if "param_hex" in p:
        data = bytes.fromhex(p["param_hex"])
    elif action == PrOutAction.REGISTER_AND_MOVE:
        dest = target.transport_id(p["dest"])
        if "dest_rtpi" in p:
            rtpi = int(p["dest_rtpi"])
        else:
            rtpi = target.rtpi(int(p.get("dest_port", step.port)), p["dest"])
        data = RegisterAndMoveParameters(
            reservation_key=scenario.key(p.get("rk", 0)),
            sa_key=scenario.key(p.get("sark", 0)),
            unreg=bool(p.get("unreg", False)),
            aptpl=bool(p.get("aptpl", False)),
            relative_target_port=rtpi,
            transport_id=dest,
        ).to_bytes()
    else:
        tids = tuple(target.transport_id(name) for name in p.get("tids", ()))
        data = PrOutParameters(
            reservation_key=scenario.key(p.get("rk", 0)),
            sa_key=scenario.key(p.get("sark", 0)),
            spec_i_pt=bool(p.get("spec_i_pt", bool(tids))),
            all_tg_pt=bool(p.get("all_tg_pt", False)),
            aptpl=bool(p.get("aptpl", False)),
            transport_ids=tids,
        ).to_bytes()
    if "tid_length_delta" in p:
        at = 20 if action == PrOutAction.REGISTER_AND_MOVE else 24
        length = int.from_bytes(data[at : at + 4], "big") + int(p["tid_length_delta"])
        data = data[:at] + length.to_bytes(4, "big") + data[at + 4 :]
    length = int(p.get("param_length", len(data)))
    cdb = PrOutCdb(action, int(p.get("scope", 0)), _pr_type(p.get("type")), length).to_bytes()
    return cdb, data[:length] + bytes(max(0, length - len(data)))


# -- checking results ------------------------------------------------------------------------


class ScenarioStepError(TestingError, AssertionError):
    """A step's result differs from what the scenario expects (a test failure)."""


def _expected_status(expect: Mapping[str, Any]) -> ScsiStatus:
    if "status" in expect:
        return ScsiStatus[expect["status"]]
    return ScsiStatus.CHECK_CONDITION if "sense" in expect else ScsiStatus.GOOD


def check(
    scenario: Scenario,
    step: Step,
    result: ScsiResult,
    target: Target,
    base_generation: int,
) -> None:
    """Compare *result* with the step's expectations.

    :raises ScenarioStepError: naming the scenario, step and what differed.
    """
    where = f"{scenario.file}:{scenario.id} step {step.index} ({step.initiator} {step.do})"
    expect = step.expect

    def fail(what: str, got: object, want: object) -> None:
        raise ScenarioStepError(f"{where}: {what} is {got!r}, expected {want!r}")

    status = _expected_status(expect)
    if result.status != status:
        extra = f" sense {result.sense_code}" if result.sense_code else ""
        fail("status", f"{result.status.name}{extra}", status.name)
    if "sense" in expect:
        want = SenseCode.by_name(expect["sense"])
        if result.sense_code != want:
            fail("sense", result.sense_code, want)
    data = result.data
    if "length" in expect and len(data) != expect["length"]:
        fail("data length", len(data), expect["length"])
    if "data_hex" in expect and data.hex() != expect["data_hex"].replace(" ", "").lower():
        fail("data", data.hex(), expect["data_hex"])
    if "data_tail_hex" in expect and data[4:].hex() != expect["data_tail_hex"].replace(" ", ""):
        fail("data after PRGENERATION", data[4:].hex(), expect["data_tail_hex"])
    if "generation" in expect:
        generation = (int.from_bytes(data[0:4], "big") - base_generation) & 0xFFFF_FFFF
        if generation != expect["generation"]:
            fail("PRgeneration (relative)", generation, expect["generation"])
    if "additional_length" in expect:
        additional = int.from_bytes(data[4:8], "big")
        if additional != expect["additional_length"]:
            fail("ADDITIONAL LENGTH", additional, expect["additional_length"])
    if "keys" in expect:
        keys = list(ReadKeysData.from_bytes(data).keys)
        want_keys = [scenario.key(k) for k in expect["keys"]]
        if keys != want_keys:
            fail("keys", [hex(k) for k in keys], [hex(k) for k in want_keys])
    if "reservation" in expect:
        _check_reservation(scenario, data, expect["reservation"], fail)
    if "full_status" in expect:
        _check_full_status(scenario, data, expect["full_status"], target, fail)
    if "sense_data" in expect:
        got = SenseData.from_bytes(data).code if any(data) else None
        want = SenseCode.by_name(expect["sense_data"])
        if got != want:
            fail("REQUEST SENSE data", got, want)


def _check_reservation(scenario: Scenario, data: bytes, want: Any, fail: Any) -> None:
    rr = ReadReservationData.from_bytes(data)
    if want == "none":
        if rr.has_reservation:
            fail("reservation", (rr.type, hex(rr.reservation_key)), "none")
        return
    got = (rr.type, rr.reservation_key)
    wanted = (_pr_type(want["type"]), scenario.key(want.get("key", 0)))
    if got != wanted:
        fail("reservation (type, key)", got, wanted)


def _check_full_status(
    scenario: Scenario, data: bytes, want: list[Mapping[str, Any]], target: Target, fail: Any
) -> None:
    got = []
    for d in ReadFullStatusData.from_bytes(data).descriptors:
        got.append(
            {
                "as": target.initiator_of(d.transport_id),
                "key": d.reservation_key,
                "holder": d.r_holder,
                "type": int(d.type) if d.r_holder else 0,
                "all_tg_pt": d.all_tg_pt,
                "rtpi": d.relative_target_port,
            }
        )
    wanted = []
    for w in want:
        all_tg_pt = bool(w.get("all_tg_pt", False))
        wanted.append(
            {
                "as": w["as"],
                "key": scenario.key(w["key"]),
                "holder": bool(w.get("holder", False)),
                "type": _pr_type(w.get("type")) if w.get("holder") else 0,
                "all_tg_pt": all_tg_pt,
                "rtpi": 0 if all_tg_pt else target.rtpi(int(w.get("port", 1)), w["as"]),
            }
        )
    if got != wanted:
        fail("READ FULL STATUS", got, wanted)


def run(scenario: Scenario, target: Target, mode: str) -> int:
    """Run *scenario* against *target* in *mode*; returns the number of steps run.

    The PRgeneration base is read (READ KEYS) by the first initiator before step 1; the
    logical unit must be free of registrations and unit attentions.

    :raises ScenarioStepError: at the first step whose result differs.
    """
    first = scenario.initiators[0]
    probe = target.command(first, 1, PrInCdb(PrInAction.READ_KEYS, 8).to_bytes(), b"")
    if probe.status != ScsiStatus.GOOD:
        raise ScenarioStepError(f"{scenario.id}: the logical unit is not ready: {probe}")
    base = struct.unpack(">I", probe.data[:4])[0]
    count = 0
    for step in scenario.steps(mode):
        cdb, data = build(scenario, step, target)
        result = target.command(step.initiator, step.port, cdb, data)
        check(scenario, step, result, target, base)
        count += 1
    return count
