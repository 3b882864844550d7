# SPDX-License-Identifier: MIT
"""The comparison the LIO replay makes (``tests/vm/lio_scenarios.py``), checked without a VM.

``tests/vm/test_lio_scenarios.py`` compares LIO's recorded answers with the engine's; these
tests feed it records made from the engine itself, as is and altered, to show that it finds
every kind of difference it claims to (and only those): status, sense, PR IN data, PRgeneration
relative to the start, RELATIVE TARGET PORT IDENTIFIERs mapped to initiator and port.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

import qompr
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.testing.scenario import Scenario
from qompr.testing.scenario import build
from qompr.testing.scenario import load_all
from tests.vm.lio_scenarios import RecordedLio
from tests.vm.lio_scenarios import check_expectations
from tests.vm.lio_scenarios import compare_step
from tests.vm.lio_scenarios import compare_with_engine
from tests.vm.lio_scenarios import initiator_by_tid
from tests.vm.lio_scenarios import transport_id

from .harness import EmulatedTarget
from .harness import new_manager

SCENARIOS = {s.id: s for s in load_all()}
#: The guest's RTPIs: every tcm_loop path is its own target port.
LIO = RecordedLio({("A", 1): 1, ("B", 1): 2, ("C", 1): 3, ("A", 2): 4, ("B", 2): 5, ("C", 2): 6})


def engine_record(scenario: Scenario, generation_offset: int = 0) -> dict[str, Any]:
    """What the guest would record if LIO answered exactly as the engine (mode lio)."""
    manager = new_manager(qompr.new_tree(load_entrypoints=False), target_ports=scenario.ports)
    tids = {name: transport_id(name) for name in scenario.initiators}
    target = EmulatedTarget(manager, scenario.initiators, scenario.ports, transport_ids=tids)

    def record(cdb: bytes, data: bytes, result: ScsiResult) -> dict[str, Any]:
        payload = result.data
        if cdb[0] == 0x5E and cdb[1] != PrInAction.REPORT_CAPABILITIES and payload:
            generation = (int.from_bytes(payload[:4], "big") + generation_offset) & 0xFFFF_FFFF
            payload = generation.to_bytes(4, "big") + payload[4:]
        return {
            "cdb": cdb.hex(),
            "out": data.hex(),
            "status": int(result.status),
            "sense": result.sense.hex(),
            "data": payload.hex(),
            "host": 0,
            "driver": 0x08 if result.sense else 0,
        }

    probe = PrInCdb(PrInAction.READ_KEYS, 8).to_bytes()
    out: dict[str, Any] = {
        "probe": record(probe, b"", target.command(scenario.initiators[0], 1, probe, b"")),
        "steps": [],
    }
    for step in scenario.steps("lio"):
        cdb, data = build(scenario, step, target)
        answer = record(cdb, data, target.command(step.initiator, step.port, cdb, data))
        out["steps"].append({"index": step.index, **answer})
    return out


@pytest.mark.parametrize("scenario_id", ["register-change-key", "clear", "ua-queue-order"])
@pytest.mark.parametrize("offset", [0, 0x1234, 0xFFFF_FFFF])
def test_the_engine_compared_with_itself_has_no_differences(scenario_id: str, offset: int) -> None:
    """PRgeneration is compared relative to the start, so any base gives no difference."""
    scenario = SCENARIOS[scenario_id]
    record = engine_record(scenario, offset)
    assert compare_with_engine(scenario, record, LIO) == []
    assert check_expectations(scenario, record, LIO) == []


def test_a_different_status_is_found() -> None:
    scenario = SCENARIOS["clear"]
    record = engine_record(scenario)
    record["steps"][4]["status"] = 0x18  # B's CLEAR: RESERVATION CONFLICT instead of GOOD
    diffs = compare_with_engine(scenario, record, LIO)
    assert diffs == ["step 5 (B/1 clear): LIO RESERVATION_CONFLICT, engine GOOD"]
    assert check_expectations(scenario, record, LIO)[0].startswith("06_clear.toml:clear step 5")


def test_a_different_sense_is_found() -> None:
    scenario = SCENARIOS["ua-queue-order"]
    record = engine_record(scenario)
    step = record["steps"][5]  # B's TUR: RESERVATIONS RELEASED
    assert step["sense"] == SenseCode.RESERVATIONS_RELEASED.to_bytes().hex()
    step["sense"] = SenseCode.RESERVATIONS_PREEMPTED.to_bytes().hex()
    diffs = compare_with_engine(scenario, record, LIO)
    assert diffs == ["step 6 (B/1 tur): sense LIO (6, 42, 3), engine (6, 42, 4)"]


def test_a_different_key_or_generation_is_found() -> None:
    scenario = SCENARIOS["register-change-key"]
    record = engine_record(scenario)
    last = record["steps"][-1]  # READ KEYS
    data = bytearray.fromhex(last["data"])
    data[-1] ^= 1
    last["data"] = data.hex()
    assert "PR IN data" in compare_with_engine(scenario, record, LIO)[0]
    record = engine_record(scenario)
    record["probe"]["data"] = struct.pack(">II", 1, 0).hex()  # one more than the engine's base
    assert "'generation': 3" in compare_with_engine(scenario, record, LIO)[0]


def _full_status(rtpi: int, name: str) -> bytes:
    tid = transport_id(name).to_bytes()
    descriptor = struct.pack(">Q4xBB4xHI", 0xB2, 0, 0, rtpi, len(tid)) + tid
    return struct.pack(">II", 7, len(descriptor)) + descriptor


@pytest.mark.parametrize(
    ("lio_rtpi", "equal"),
    [(5, True), (2, False), (4, False), (99, False)],
    ids=["B-port-2", "B-port-1", "A-port-2", "unknown"],
)
def test_full_status_rtpis_are_compared_as_initiator_and_port(lio_rtpi: int, equal: bool) -> None:
    """B registered through its port 2: RTPI 5 on LIO (B's second tcm_loop target), 2 in the
    engine (port index 2); any other LIO RTPI is a difference."""
    step = next(SCENARIOS["read-full-status"].steps("lio"))
    cdb = PrInCdb(PrInAction.READ_FULL_STATUS, 8192).to_bytes()
    diffs = compare_step(
        step,
        cdb,
        ScsiResult.good(_full_status(lio_rtpi, "B")),
        ScsiResult.good(_full_status(2, "B")),
        lio_base=0,
        engine_base=0,
        lio_label=lambda rtpi, tid: LIO.port_label(rtpi, initiator_by_tid(tid)),
        engine_label=lambda rtpi, tid: f"{initiator_by_tid(tid)}/{rtpi}",
    )
    assert (diffs == []) is equal, diffs
