# SPDX-License-Identifier: MIT
"""The pure engine: byte layouts, the access tables, limits and corner cases.

What the portable scenarios cannot say (exact TransportID bytes, allocation lengths that
depend on them, configuration limits, the functional state API) is tested here.
"""

from __future__ import annotations

import struct

import attrs
import pytest

from qompr.managers.emulated import LIO
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import SPC4
from qompr.managers.emulated import AccessClass
from qompr.managers.emulated import Changes
from qompr.managers.emulated import Engine
from qompr.managers.emulated import EngineConfig
from qompr.managers.emulated import LUState
from qompr.managers.emulated import Policy
from qompr.managers.emulated import Registration
from qompr.managers.emulated import Reservation
from qompr.managers.emulated import classify
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import SenseKey
from qompr.scsi import TransportID

from .harness import pr_in
from .harness import pr_out

A, B, C = Nexus("A"), Nexus("B"), Nexus("C")
K_A, K_B, K_C = 0xA, 0xB, 0xC
ENGINES = {"lio": Engine(EngineConfig(LIO)), "spc4": Engine(EngineConfig(SPC4))}


def send(
    engine: Engine, state: LUState, nexus: Nexus, command: tuple[bytes, bytes] | bytes
) -> ScsiResult:
    """Execute a command and apply its changes, as a store does."""
    cdb, data = command if isinstance(command, tuple) else (command, b"")
    outcome = engine.execute(state, nexus, cdb, data)
    if outcome.changes is not None:
        state.apply(outcome.changes)
    assert outcome.result is not None
    return outcome.result


def registered(engine: Engine, *pairs: tuple[Nexus, int]) -> LUState:
    state = LUState()
    for nexus, key in pairs:
        assert send(engine, state, nexus, pr_out(PrOutAction.REGISTER, sark=key)).ok
    return state


# -- READ FULL STATUS layout (docs/reference/spc4-pr.md §7 #73, #74) -------------------------------

IQN25 = "iqn.2003-01.org.linux:abcd"[:25]


def test_iqn_fixture_is_25_characters() -> None:
    assert len(IQN25) == 25


def test_read_full_status_descriptor_bytes() -> None:
    engine = ENGINES["lio"]
    nexus = Nexus("A", transport_id=TransportID.iscsi(IQN25, isid=0x400001370000))
    state = registered(engine, (nexus, K_A))
    data = send(engine, state, nexus, pr_in(PrInAction.READ_FULL_STATUS)).data
    assert struct.unpack(">II", data[:8]) == (1, 24 + 48)
    desc = data[8:]
    assert desc[0:8] == K_A.to_bytes(8, "big")
    assert desc[12] == 0x00 and desc[13] == 0x00
    assert desc[18:20] == b"\x00\x01"
    assert int.from_bytes(desc[20:24], "big") == 48
    tid = desc[24:]
    assert tid[:4] == bytes.fromhex("4500002c")
    body = f"{IQN25},i,0x400001370000".encode() + b"\0"
    assert tid[4:] == body.ljust(44, b"\0")


def test_read_full_status_holder_and_all_tg_pt_flags() -> None:
    engine = Engine(EngineConfig(LIO, (1, 2)))
    state = LUState()
    assert send(engine, state, A, pr_out(PrOutAction.REGISTER, sark=K_A, all_tg_pt=True)).ok
    assert send(engine, state, A, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.EA)).ok
    data = send(engine, state, B, pr_in(PrInAction.READ_FULL_STATUS)).data
    rfs = ReadFullStatusData.from_bytes(data, strict=True)
    assert [(d.all_tg_pt, d.r_holder, d.relative_target_port) for d in rfs.descriptors] == [
        (True, True, 0),
        (True, False, 0),
    ]
    first = data[8:]
    assert first[12] == 0x03 and first[13] == PrType.EA


@pytest.mark.parametrize("mode", ["lio", "spc4"])
def test_read_full_status_truncated_to_one_descriptor(mode: str) -> None:
    engine = ENGINES[mode]
    state = registered(engine, (A, K_A), (B, K_B))
    full = send(engine, state, A, pr_in(PrInAction.READ_FULL_STATUS)).data
    one = 24 + len(A.transport_id.to_bytes())
    data = send(engine, state, A, pr_in(PrInAction.READ_FULL_STATUS, 8 + one)).data
    assert data == full[: 8 + one][:4] + data[4:8] + full[8 : 8 + one]
    additional = int.from_bytes(data[4:8], "big")
    # [LIO≠SPC] LIO counts only the descriptor that fitted; SPC the full length.
    assert additional == (one if mode == "lio" else len(full) - 8)


def test_read_keys_of_many_registrants_is_in_order() -> None:
    engine = ENGINES["lio"]
    nexuses = [Nexus(f"i{n}") for n in range(300)]
    state = registered(engine, *((n, 1000 + i) for i, n in enumerate(nexuses)))
    data = send(engine, state, A, pr_in(PrInAction.READ_KEYS, 0xFFFF)).data
    count = (len(data) - 8) // 8
    assert struct.unpack(f">II{count}Q", data) == (300, 8 * 300, *range(1000, 1300))


# -- access tables (docs/reference/spc4-pr.md §4), transcribed independently of _access.py ---------

# Columns: WE R, WE U, EA R, EA U, WE_RO R, WE_RO U, EA_RO R, EA_RO U, WE_AR R, WE_AR U,
# EA_AR R, EA_AR U.  "X>Y" means SPC says X and LIO does Y (the reference's "X→Y").
REFERENCE_TABLE = {
    "always": "A A A A A A A A A A A A",
    "read_capacity": "A A A>C A>C A A A A>C A A A A>C",
    "read": "A A C C A A A C A A A C",
    "verify": "A>C A C C A A A C A A A C",
    "mode_sense": "A A C>A C A A A C A A A C",
    "write": "C C C C A C A C A C A C",
    "sync": "C C>A C C A C>A A C A C>A A C",
    "start": "A>C A A>C A>C A A A A>C A A A A>C",
}
COMMANDS = {
    "always": [
        bytes((Opcode.INQUIRY, 0, 0, 0, 36, 0)),
        bytes((Opcode.TEST_UNIT_READY, *bytes(5))),
        bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0)),
        bytes((Opcode.LOG_SENSE, *bytes(9))),
        bytes((Opcode.REPORT_LUNS, *bytes(11))),
        bytes((Opcode.MAINTENANCE_IN, 0x0A, *bytes(10))),
        pr_in(PrInAction.READ_RESERVATION),
        pr_out(PrOutAction.REGISTER)[0],
        pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY)[0],
    ],
    "read_capacity": [
        bytes((Opcode.READ_CAPACITY_10, *bytes(9))),
        bytes((Opcode.SERVICE_ACTION_IN_16, 0x10, *bytes(14))),
    ],
    "read": [
        bytes((Opcode.READ_6, *bytes(5))),
        bytes((Opcode.READ_10, *bytes(9))),
        bytes((Opcode.READ_12, *bytes(11))),
        bytes((Opcode.READ_16, *bytes(15))),
        bytes((Opcode.SERVICE_ACTION_IN_16, 0x12, *bytes(14))),
    ],
    "verify": [
        bytes((Opcode.VERIFY_10, *bytes(9))),
        bytes((Opcode.VERIFY_16, *bytes(15))),
        bytes((Opcode.PRE_FETCH_10, *bytes(9))),
    ],
    "mode_sense": [
        bytes((Opcode.MODE_SENSE_6, *bytes(5))),
        bytes((Opcode.MODE_SENSE_10, *bytes(9))),
        bytes((Opcode.READ_BUFFER, *bytes(9))),
        bytes((Opcode.MAINTENANCE_IN, 0x0C, *bytes(10))),
    ],
    "write": [
        bytes((Opcode.WRITE_10, *bytes(9))),
        bytes((Opcode.WRITE_SAME_16, *bytes(15))),
        bytes((Opcode.UNMAP, *bytes(9))),
        bytes((Opcode.MODE_SELECT_10, *bytes(9))),
        bytes((Opcode.VERIFY_10, 0x02, *bytes(8))),
        bytes((Opcode.FORMAT_UNIT, *bytes(5))),
        bytes((0xC0, *bytes(9))),  # a vendor-specific opcode: treated as a write
    ],
    "sync": [
        bytes((Opcode.SYNCHRONIZE_CACHE_10, *bytes(9))),
        bytes((Opcode.SYNCHRONIZE_CACHE_16, *bytes(15))),
        bytes((Opcode.START_STOP_UNIT, 0, 0, 0, 0x00, 0)),
        bytes((Opcode.START_STOP_UNIT, 0, 0, 0, 0x11, 0)),
        bytes((Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0x01, 0)),
    ],
    "start": [
        bytes((Opcode.START_STOP_UNIT, 0, 0, 0, 0x01, 0)),
        bytes((Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0x00, 0)),
    ],
}
TYPES = [PrType.WE, PrType.EA, PrType.WE_RO, PrType.EA_RO, PrType.WE_AR, PrType.EA_AR]


def _expected(cell: str, mode: str) -> bool:
    spc, _, lio = cell.partition(">")
    return (lio or spc if mode == "lio" else spc) == "A"


def _reserved_state(engine: Engine, pr_type: PrType) -> LUState:
    state = registered(engine, (A, K_A), (B, K_B))
    assert send(engine, state, A, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=pr_type)).ok
    return state


@pytest.mark.parametrize("mode", ["lio", "spc4"])
@pytest.mark.parametrize("row", sorted(REFERENCE_TABLE))
def test_access_table_matches_reference(mode: str, row: str) -> None:
    engine = ENGINES[mode]
    cells = REFERENCE_TABLE[row].split()
    for column, pr_type in enumerate(TYPES):
        state = _reserved_state(engine, pr_type)
        for offset, who in ((0, B), (1, C)):
            want = _expected(cells[2 * column + offset], mode)
            for cdb in COMMANDS[row]:
                got = engine.check_conflict(state, who, cdb) is None
                assert got == want, (mode, row, pr_type.name, who.initiator, cdb.hex())
            # The holder is never blocked.
            for cdb in COMMANDS[row]:
                assert engine.check_conflict(state, A, cdb) is None


def test_no_reservation_allows_everything() -> None:
    engine = ENGINES["spc4"]
    state = registered(engine, (A, K_A))
    for cdbs in COMMANDS.values():
        for cdb in cdbs:
            assert engine.check_conflict(state, C, cdb) is None


def test_classify_pr_out_service_actions() -> None:
    assert classify(pr_out(PrOutAction.RELEASE)[0]) is AccessClass.PR_REGISTRANT
    assert classify(pr_out(PrOutAction.REGISTER_AND_MOVE)[0]) is AccessClass.PR_RESERVE
    assert classify(pr_out(PrOutAction.REPLACE_LOST_RESERVATION)[0]) is AccessClass.PR_RESERVED
    assert classify(bytes((Opcode.RESERVE_10, *bytes(9)))) is AccessClass.LEGACY
    with pytest.raises(ValueError, match="empty"):
        classify(b"")


# -- limits and configuration ---------------------------------------------------------------


def test_insufficient_registration_resources() -> None:
    engine = Engine(EngineConfig(LIO, max_registrations=2))
    state = registered(engine, (A, K_A))
    # SPEC_I_PT naming two more initiators would make three: nothing is registered.
    register_many = pr_out(
        PrOutAction.REGISTER, sark=K_B, transport_ids=[C.transport_id, Nexus("D").transport_id]
    )
    result = send(engine, state, B, register_many)
    assert result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    assert list(state.registrations) == [A]
    assert send(engine, state, B, pr_out(PrOutAction.REGISTER, sark=K_B)).ok
    result = send(engine, state, C, pr_out(PrOutAction.REGISTER, sark=K_C))
    assert result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    # A key change needs no new room.
    assert send(engine, state, B, pr_out(PrOutAction.REGISTER, rk=K_B, sark=K_C)).ok
    # Neither does a REGISTER AND MOVE to a registered nexus, while one to a new one does.
    assert send(engine, state, A, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.WE)).ok
    move_new = RegisterAndMoveParameters(
        reservation_key=K_A, sa_key=7, transport_id=C.transport_id
    ).to_bytes()
    cdb = PrOutCdb(PrOutAction.REGISTER_AND_MOVE, 0, 0, len(move_new)).to_bytes()
    result = send(engine, state, A, (cdb, move_new))
    assert result.sense_code == SenseCode.INSUFFICIENT_REGISTRATION_RESOURCES
    move_old = RegisterAndMoveParameters(
        reservation_key=K_A, sa_key=7, transport_id=B.transport_id
    ).to_bytes()
    assert send(
        engine, state, A, (cdb[:5] + len(move_old).to_bytes(4, "big") + cdb[9:], move_old)
    ).ok
    assert state.reservation == Reservation(PrType.WE, B)


def test_unknown_target_port_is_not_this_lu() -> None:
    engine = ENGINES["lio"]
    state = LUState()
    result = send(engine, state, Nexus("A", 2), pr_out(PrOutAction.REGISTER, sark=1))
    assert result.sense_code == SenseCode.LUN_NOT_SUPPORTED
    outcome = engine.admit(state, Nexus("A", 3), bytes(6))
    assert outcome.result is not None
    assert outcome.result.sense_code == SenseCode.LUN_NOT_SUPPORTED


@pytest.mark.parametrize("ports", [(), (0,), (70000,)])
def test_config_rejects_bad_ports(ports: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="target_ports"):
        EngineConfig(LIO, ports)


def test_config_rejects_negative_limit() -> None:
    with pytest.raises(ValueError, match="max_registrations"):
        EngineConfig(LIO, max_registrations=-1)


def test_policy_presets() -> None:
    assert Policy.for_mode("lio") is LIO
    assert Policy.for_mode("spc4") is SPC4
    # Every switch is a departure: the two presets differ in each of them.
    same = [f.name for f in attrs.fields(Policy) if getattr(LIO, f.name) == getattr(SPC4, f.name)]
    assert same == []


def test_generation_wraps_at_32_bits() -> None:
    engine = ENGINES["lio"]
    state = LUState(generation=0xFFFF_FFFF)
    assert send(engine, state, A, pr_out(PrOutAction.REGISTER, sark=1)).ok
    assert state.generation == 0
    data = send(engine, state, A, pr_in(PrInAction.READ_KEYS)).data
    assert data[:4] == bytes(4)


# -- CDB and data handling ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lio", "spc4"])
def test_helper_protocol_16_byte_cdbs(mode: str) -> None:
    engine = ENGINES[mode]
    state = LUState()
    cdb, data = pr_out(PrOutAction.REGISTER, sark=K_A)
    assert send(engine, state, A, (cdb.ljust(16, b"\0"), data)).ok
    assert send(engine, state, A, pr_in(PrInAction.READ_KEYS).ljust(16, b"\0")).ok
    bad = send(engine, state, A, (cdb + b"\0\0\0\0\0\x01", data))
    assert bad.sense_code == SenseCode.INVALID_FIELD
    assert send(engine, state, A, (cdb[:9], data)).sense_code == SenseCode.INVALID_FIELD
    assert send(engine, state, A, b"").sense_code == SenseCode.INVALID_OPCODE
    assert send(engine, state, A, bytes(10)).sense_code == SenseCode.INVALID_OPCODE


def test_reserved_cdb_bits_lio_ignores_spc4_refuses() -> None:
    cdb, data = pr_out(PrOutAction.REGISTER, sark=K_A)
    dirty = cdb[:3] + b"\x01" + cdb[4:]  # byte 3 is reserved
    assert send(ENGINES["lio"], LUState(), A, (dirty, data)).ok
    result = send(ENGINES["spc4"], LUState(), A, (dirty, data))
    assert result.sense_code == SenseCode.INVALID_FIELD
    prin = bytearray(pr_in(PrInAction.READ_KEYS))
    prin[2] = 0xFF
    assert send(ENGINES["lio"], LUState(), A, bytes(prin)).ok
    assert send(ENGINES["spc4"], LUState(), A, bytes(prin)).sense_code == SenseCode.INVALID_FIELD


def test_data_shorter_than_parameter_list_length_reads_as_zero() -> None:
    engine = ENGINES["lio"]
    state = LUState()
    cdb, data = pr_out(PrOutAction.REGISTER, sark=K_A)
    assert send(engine, state, A, (cdb, data[:16])).ok  # bytes 16-23 read as zero
    assert state.registrations[A].key == K_A
    cdb_long = cdb[:5] + (1 << 31).to_bytes(4, "big") + cdb[9:]
    result = send(engine, state, B, (cdb_long, data))
    assert result.sense_code == SenseCode.INVALID_PARAM_LEN


# -- unit attentions, REQUEST SENSE, PREEMPT AND ABORT ---------------------------------------


def test_admit_and_request_sense() -> None:
    engine = ENGINES["lio"]
    state = registered(engine, (A, K_A), (B, K_B))
    assert send(engine, state, A, pr_out(PrOutAction.CLEAR, rk=K_A)).ok
    inquiry = bytes((Opcode.INQUIRY, 0, 0, 0, 36, 0))
    assert engine.admit(state, B, inquiry) == engine.admit(state, B, inquiry)
    assert engine.admit(state, B, inquiry).result is None
    # REQUEST SENSE with DESC=1 returns descriptor-format sense and clears the UA.
    result = send(engine, state, B, bytes((Opcode.REQUEST_SENSE, 1, 0, 0, 252, 0)))
    assert result.data == bytes((0x72, 0x06, 0x2A, 0x03, 0, 0, 0, 0))
    assert B not in state.unit_attentions
    result = send(engine, state, B, bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 4, 0)))
    assert result.data == bytes((0x70, 0, 0, 0))


def test_preempt_and_abort_reports_aborted_nexuses() -> None:
    for name, engine in ENGINES.items():
        state = registered(engine, (A, K_A), (B, K_B), (C, K_C))
        assert send(engine, state, A, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=8)).ok
        cdb, data = pr_out(PrOutAction.PREEMPT_AND_ABORT, rk=K_B, sark=0, pr_type=1)
        outcome = engine.execute(state, B, cdb, data)
        assert outcome.aborted == frozenset({A, C}), name
        cdb, data = pr_out(PrOutAction.PREEMPT, rk=K_B, sark=0, pr_type=1)
        assert engine.execute(state, B, cdb, data).aborted == frozenset(), name


def test_unit_attention_dedup_in_state() -> None:
    state = LUState()
    code = SenseCode.RESERVATIONS_RELEASED
    state.apply(Changes(add_ua=((A, code), (A, code), (A, SenseCode.RESERVATIONS_PREEMPTED))))
    assert state.unit_attentions[A] == [code, SenseCode.RESERVATIONS_PREEMPTED]
    state.apply(Changes(consume_ua=A))
    state.apply(Changes(consume_ua=A))
    state.apply(Changes(consume_ua=A))  # nothing left: no error
    assert A not in state.unit_attentions


# -- the functional state API -----------------------------------------------------------------


def test_engine_does_not_mutate_state() -> None:
    engine = ENGINES["lio"]
    state = registered(engine, (A, K_A), (B, K_B))
    before = state.snapshot()
    cdb, data = pr_out(PrOutAction.CLEAR, rk=K_A)
    outcome = engine.execute(state, A, cdb, data)
    assert state.snapshot() == before
    after = state.copy()
    assert outcome.changes is not None
    after.apply(outcome.changes)
    assert after.snapshot() != before
    assert state.snapshot() == before
    assert after.snapshot().keys == ()


def test_power_on_keeps_only_aptpl_state() -> None:
    state = LUState(
        generation=5,
        registrations={A: Registration(K_A, aptpl=True)},
        reservation=Reservation(PrType.WE, A),
        aptpl=True,
        legacy_holder=B,
        unit_attentions={B: [SenseCode.RESERVATIONS_RELEASED]},
    )
    kept = state.copy()
    kept.power_on()
    assert kept.snapshot().persistent() == state.snapshot().persistent().__class__(
        generation=0, registrations=((A, Registration(K_A, aptpl=True)),),
        reservation=Reservation(PrType.WE, A), aptpl=True,
    )  # fmt: skip
    # Older unit attentions are gone; every nexus that had state is told of the power on.
    assert kept.unit_attentions == {A: [POWER_ON_OCCURRED], B: [POWER_ON_OCCURRED]}
    assert kept.legacy_holder is None
    state.aptpl = False
    state.power_on()
    assert state.registrations == {} and state.reservation is None and state.generation == 0
    assert state.unit_attentions == {A: [POWER_ON_OCCURRED], B: [POWER_ON_OCCURRED]}
    assert SenseCode(SenseKey.UNIT_ATTENTION, 0x29, 0x01) == POWER_ON_OCCURRED
    # A second power cycle tells them again (they have not been heard from), nobody else.
    state.power_on()
    assert state.unit_attentions == {A: [POWER_ON_OCCURRED], B: [POWER_ON_OCCURRED]}
    # The power-on unit attention is reported, then the command runs on the new state.
    engine = ENGINES["lio"]
    outcome = engine.execute(state, A, pr_in(PrInAction.READ_KEYS))
    assert outcome.result is not None and outcome.result.sense_code == POWER_ON_OCCURRED
    assert outcome.changes is not None
    state.apply(outcome.changes)
    outcome = engine.execute(state, A, pr_in(PrInAction.READ_KEYS))
    assert outcome.result == ScsiResult.good(struct.pack(">II", 0, 0))


def test_result_statuses_are_exact() -> None:
    engine = ENGINES["lio"]
    state = registered(engine, (A, K_A))
    result = send(engine, state, A, pr_out(PrOutAction.REGISTER, rk=0, sark=K_B))
    assert result.status == ScsiStatus.RESERVATION_CONFLICT and result.sense == b""
    result = send(engine, state, A, pr_out(9))
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == SenseCode.INVALID_FIELD.to_bytes()


@pytest.mark.parametrize("mode", ["lio", "spc4"])
def test_new_isid_is_a_new_unregistered_nexus(mode: str) -> None:
    """docs/reference/spc4-pr.md §7 #78: a re-login with a new ISID is another initiator port."""
    engine = ENGINES[mode]
    old = Nexus("A", transport_id=TransportID.iscsi("iqn.1994-05.com.example:a", isid=1))
    new = Nexus("A", transport_id=TransportID.iscsi("iqn.1994-05.com.example:a", isid=2))
    state = registered(engine, (old, K_A))
    result = send(engine, state, new, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.WE))
    if mode == "lio":
        assert result.sense_code == SenseCode.NOT_READY_LUN_COMM_FAILURE
    else:
        assert result.status == ScsiStatus.RESERVATION_CONFLICT
    assert list(state.registrations) == [old]  # the old registration is still listed


# -- behaviour observed on LIO (tests/vm/test_lio_scenarios.py) ------------------------------

_PREEMPTED = SenseCode.RESERVATIONS_PREEMPTED
A2 = Nexus("A", 2)  # initiator A through target port 2


@pytest.mark.parametrize("mode", ["lio", "spc4"])
@pytest.mark.parametrize("request_sense", [False, True])
def test_reporting_a_unit_attention_clears_the_queue_in_lio_mode(
    mode: str, request_sense: bool
) -> None:
    """LIO frees every queued unit attention with the one it reports (Linux 6.1)."""
    engine = ENGINES[mode]
    state = registered(engine, (A, K_A), (B, K_B))
    assert send(engine, state, A, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.WE_RO)).ok
    assert send(engine, state, A, pr_out(PrOutAction.RELEASE, rk=K_A, pr_type=PrType.WE_RO)).ok
    assert send(engine, state, A, pr_out(PrOutAction.CLEAR, rk=K_A)).ok
    assert state.unit_attentions[B] == [SenseCode.RESERVATIONS_RELEASED, _PREEMPTED]
    if request_sense:
        data = send(engine, state, B, bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0))).data
        assert data == SenseCode.RESERVATIONS_RELEASED.to_bytes()
    else:
        outcome = engine.admit(state, B, bytes(6))
        assert outcome.result == ScsiResult.check(SenseCode.RESERVATIONS_RELEASED)
        assert outcome.changes is not None
        state.apply(outcome.changes)
    left = state.unit_attentions.get(B, [])
    assert left == ([] if mode == "lio" else [_PREEMPTED])


@pytest.mark.parametrize("policy", [LIO, SPC4])
def test_all_tg_pt_registrant_holds_only_through_the_reserving_port(policy: Policy) -> None:
    """SPC-4 §5.12.10: the holder is one I_T nexus, also for an ALL_TG_PT registrant."""
    engine = Engine(EngineConfig(policy, (1, 2)))
    state = LUState()
    assert send(engine, state, A, pr_out(PrOutAction.REGISTER, sark=K_A, all_tg_pt=True)).ok
    assert list(state.registrations) == [A, A2]
    assert send(engine, state, A2, pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.EA)).ok
    assert engine.is_holder(state, A2) and not engine.is_holder(state, A)
    read10 = bytes((Opcode.READ_10, 0, 0, 0, 0, 1, 0, 0, 1, 0))
    assert engine.admit(state, A2, read10).result is None
    assert engine.admit(state, A, read10).result == ScsiResult.conflict()
    again = pr_out(PrOutAction.RESERVE, rk=K_A, pr_type=PrType.EA)
    assert send(engine, state, A, again).status == ScsiStatus.RESERVATION_CONFLICT
    # RELEASE from the non-holder port: GOOD, nothing released.
    assert send(engine, state, A, pr_out(PrOutAction.RELEASE, rk=K_A, pr_type=PrType.EA)).ok
    assert state.reservation == Reservation(PrType.EA, A2)


@pytest.mark.parametrize("policy", [LIO, SPC4])
def test_key_change_of_an_all_tg_pt_registration(policy: Policy) -> None:
    """LIO changes the key only through the sending port; the spc4 mode on every port."""
    engine = Engine(EngineConfig(policy, (1, 2)))
    state = LUState()
    assert send(engine, state, A, pr_out(PrOutAction.REGISTER, sark=K_A, all_tg_pt=True)).ok
    change = pr_out(PrOutAction.REGISTER, rk=K_A, sark=K_B, all_tg_pt=True)
    assert send(engine, state, A2, change).ok
    keys = {n: r.key for n, r in state.registrations.items()}
    assert keys == ({A: K_A, A2: K_B} if policy is LIO else {A: K_B, A2: K_B})
    assert state.generation == (3 if policy is LIO else 2)


# -- PR IN answers kept per state (LUState.answers) ---------------------------------------------


def test_a_pr_in_answer_is_worked_out_once_per_state_change() -> None:
    engine = ENGINES["lio"]
    state = LUState()
    assert send(engine, state, A, pr_out(PrOutAction.REGISTER, sark=K_A)).ok
    read_keys = pr_in(PrInAction.READ_KEYS)
    first = engine.execute(state, A, read_keys)
    # The same CDB on the same state: the same answer, whoever asks (no unit attention).
    assert engine.execute(state, B, read_keys) is first
    assert first.result is not None and first.result.data[8:16] == K_A.to_bytes(8, "big")
    assert send(engine, state, B, pr_out(PrOutAction.REGISTER, sark=K_B)).ok
    assert state.answers == {}  # the change dropped them
    after = engine.execute(state, A, read_keys).result
    assert after is not None and after.data[4:8] == (16).to_bytes(4, "big")
    assert after.data[:4] == (2).to_bytes(4, "big")  # PRgeneration moved
    state.power_on()
    assert state.answers == {}
    # After the power cycle A and B have a unit attention each: theirs, not a kept answer.
    assert engine.execute(state, A, read_keys).result == ScsiResult.check(POWER_ON_OCCURRED)
    assert state.answers == {}


def test_kept_pr_in_answers_are_per_engine_and_bounded() -> None:
    lio, spc4 = ENGINES["lio"], ENGINES["spc4"]
    state = LUState()
    for nexus, key in ((A, 0xAAAA_0000_0000_000A), (B, K_B)):
        assert send(lio, state, nexus, pr_out(PrOutAction.REGISTER, sark=key)).ok
    short = pr_in(PrInAction.READ_KEYS, alloc=12)  # LIO writes no partial key; SPC-4 does
    assert lio.execute(state, A, short).result != spc4.execute(state, A, short).result
    for alloc in range(100, 130):  # clients choose CDBs: only a few answers are kept
        lio.execute(state, A, pr_in(PrInAction.READ_KEYS, alloc=alloc))
    assert len(state.answers) == 8


def test_an_spc2_reservation_is_never_answered_from_a_kept_answer() -> None:
    engine = ENGINES["spc4"]
    state = LUState()
    read_keys = pr_in(PrInAction.READ_KEYS)
    assert engine.execute(state, A, read_keys).result == ScsiResult.good(bytes(8))
    assert send(engine, state, A, bytes([Opcode.RESERVE_6, 0, 0, 0, 0, 0])).ok
    assert engine.execute(state, B, read_keys).result == ScsiResult(ScsiStatus.RESERVATION_CONFLICT)
