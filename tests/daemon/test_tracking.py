# SPDX-License-Identifier: MIT
"""PR tracking (``qompr.daemon._tracking``) in process, against the emulated engine answering
as LIO: every PR OUT service action and type, failures not tracked, PREEMPT read back, the
bounds, the client's name from /proc, the query, and QEMU 11's destination sequence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qompr.daemon._tracking import PRTracker
from qompr.linux import PeerCredentials
from qompr.managers.emulated import PRManagerEmulated
from qompr.plugins import new_tree
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from qompr.testing import pr_out_command

KEY = 0xA1B2
OTHER = 0xC3D4
SRC = PeerCredentials(1001, 107, 107)
DST = PeerCredentials(2002, 107, 107)
NODE = PeerCredentials(3003, 0, 0)
ALL_TYPES = [int(t) for t in (PrType.WE, PrType.EA, PrType.WE_RO, PrType.EA_RO)] + [
    int(PrType.WE_AR),
    int(PrType.EA_AR),
]


def fake_proc(root: Path, pid: int, argv: list[str], start: int = 4242) -> None:
    where = root / str(pid)
    where.mkdir(parents=True, exist_ok=True)
    (where / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10
    (where / "stat").write_bytes(f"{pid} (qemu-system-x86) ".encode() + " ".join(fields).encode())


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    fake_proc(root, SRC.pid, ["qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"])
    fake_proc(root, DST.pid, ["qemu-system-x86_64", "-name", "vm1", "-incoming", "defer"])
    fake_proc(root, NODE.pid, ["qemu-system-x86_64", "-name", "guest=node,,2"])
    return root


@pytest.fixture
def emu() -> PRManagerEmulated:
    obj = new_tree(load_entrypoints=False).object_add(
        "pr-manager-emulated", "emu0", lu_name="lu0", mode="lio"
    )
    assert isinstance(obj, PRManagerEmulated)
    return obj


@pytest.fixture
def tracker(proc: Path) -> PRTracker:
    return PRTracker(proc=str(proc), clock=lambda: 1000.0, qemu11_handover=True)


def nexus(peer: PeerCredentials) -> Nexus:
    return Nexus(f"pid:{peer.pid}")


def send(
    tracker: PRTracker,
    emu: PRManagerEmulated,
    peer: PeerCredentials,
    action: PrOutAction,
    *,
    rk: int = 0,
    sark: int = 0,
    pr_type: int = 0,
    who: Nexus | None = None,
    tids: tuple[TransportID, ...] = (),
) -> ScsiStatus:
    cdb, data = pr_out_command(action, rk=rk, sark=sark, pr_type=pr_type)
    if action == PrOutAction.REGISTER_AND_MOVE:
        from qompr.scsi import RegisterAndMoveParameters

        data = RegisterAndMoveParameters(
            transport_id=tids[0], reservation_key=rk, sa_key=sark, unreg=True
        ).to_bytes()
        cdb = cdb[:5] + len(data).to_bytes(4, "big") + cdb[9:]
    result = tracker.execute(
        emu, -1, cdb, data, nexus=who or nexus(peer), peer=peer, connection=peer.pid
    )
    return result.status


def entry(tracker: PRTracker, peer: PeerCredentials) -> tuple[int, int] | None:
    for e in tracker.entries():
        if e.pid == peer.pid:
            return e.key, e.type
    return None


def test_register_and_register_and_ignore_set_the_key(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    assert send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY) == ScsiStatus.GOOD
    assert entry(tracker, SRC) == (KEY, 0)
    assert (
        send(tracker, emu, SRC, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=OTHER)
        == ScsiStatus.GOOD
    )
    assert entry(tracker, SRC) == (OTHER, 0)
    assert send(tracker, emu, SRC, PrOutAction.REGISTER, rk=OTHER, sark=KEY) == ScsiStatus.GOOD
    assert entry(tracker, SRC) == (KEY, 0)


@pytest.mark.parametrize("pr_type", ALL_TYPES)
def test_reserve_sets_the_type_release_clears_it(
    tracker: PRTracker, emu: PRManagerEmulated, pr_type: int
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    assert send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=pr_type) == 0
    assert entry(tracker, SRC) == (KEY, pr_type)
    assert send(tracker, emu, SRC, PrOutAction.RELEASE, rk=KEY, pr_type=pr_type) == 0
    assert entry(tracker, SRC) == (KEY, 0)


def test_unregister_clears_key_and_type_and_the_entry(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.WE_RO))
    assert send(tracker, emu, SRC, PrOutAction.REGISTER, rk=KEY, sark=0) == ScsiStatus.GOOD
    assert entry(tracker, SRC) is None  # nothing left to migrate: not kept


def test_clear_zeroes_both(tracker: PRTracker, emu: PRManagerEmulated) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.EA))
    assert send(tracker, emu, SRC, PrOutAction.CLEAR, rk=KEY) == ScsiStatus.GOOD
    assert entry(tracker, SRC) is None


def test_failures_are_not_tracked(tracker: PRTracker, emu: PRManagerEmulated) -> None:
    # RESERVE unregistered: LIO's NOT READY; REGISTER with a wrong key: conflict.
    assert send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=1) != ScsiStatus.GOOD
    assert entry(tracker, SRC) is None
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    assert send(tracker, emu, SRC, PrOutAction.REGISTER, rk=OTHER, sark=5) == (
        ScsiStatus.RESERVATION_CONFLICT
    )
    assert send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=2) != ScsiStatus.GOOD
    assert entry(tracker, SRC) == (KEY, 0)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    send(tracker, emu, NODE, PrOutAction.RESERVE, rk=OTHER, pr_type=int(PrType.EA))
    assert send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.EA)) == (
        ScsiStatus.RESERVATION_CONFLICT
    )
    assert entry(tracker, SRC) == (KEY, 0)


@pytest.mark.parametrize("action", [PrOutAction.PREEMPT, PrOutAction.PREEMPT_AND_ABORT])
@pytest.mark.parametrize("pr_type", ALL_TYPES)
def test_preempt_reads_the_reservation_back(
    tracker: PRTracker, emu: PRManagerEmulated, pr_type: int, action: PrOutAction
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    send(tracker, emu, NODE, PrOutAction.RESERVE, rk=OTHER, pr_type=int(PrType.WE_RO))
    # SRC preempts NODE's reservation: it now holds one of pr_type.
    assert send(tracker, emu, SRC, action, rk=KEY, sark=OTHER, pr_type=pr_type) == 0
    assert entry(tracker, SRC) == (KEY, pr_type)
    assert entry(tracker, NODE) == (OTHER, int(PrType.WE_RO))  # stale, as in QEMU


def test_preempt_of_registrations_only_tracks_no_type(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    third = PeerCredentials(4004, 0, 0)
    send(tracker, emu, third, PrOutAction.REGISTER, sark=0x99)
    send(tracker, emu, third, PrOutAction.RESERVE, rk=0x99, pr_type=int(PrType.EA_RO))
    action = PrOutAction.PREEMPT_AND_ABORT
    assert send(tracker, emu, SRC, action, rk=KEY, sark=OTHER, pr_type=5) == ScsiStatus.GOOD
    assert entry(tracker, SRC) == (KEY, 0)  # the reservation is another's


def test_preempt_under_all_registrants_is_everyones(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    send(tracker, emu, NODE, PrOutAction.RESERVE, rk=OTHER, pr_type=int(PrType.WE_AR))
    third = PeerCredentials(4004, 0, 0)
    send(tracker, emu, third, PrOutAction.REGISTER, sark=0x99)
    assert send(tracker, emu, SRC, PrOutAction.PREEMPT, rk=KEY, sark=0x99, pr_type=7) == 0
    assert entry(tracker, SRC) == (KEY, int(PrType.WE_AR))


def test_register_and_move_is_not_tracked_but_marked(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.WE))
    tid = nexus(DST).transport_id
    status = send(tracker, emu, SRC, PrOutAction.REGISTER_AND_MOVE, rk=KEY, sark=KEY, tids=(tid,))
    assert status == ScsiStatus.GOOD
    (e,) = tracker.entries()
    assert (e.key, e.type, e.stale) == (KEY, int(PrType.WE), True)
    assert tracker.query({}, set())[0]["stale"] is True


def test_names_from_proc_and_the_query(tracker: PRTracker, emu: PRManagerEmulated) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    send(tracker, emu, NODE, PrOutAction.RESERVE, rk=OTHER, pr_type=int(PrType.EA_RO))
    everything = tracker.query({}, {SRC.pid})
    assert everything == [
        {
            "pid": SRC.pid,
            "uid": 107,
            "vm": "vm1",
            "initiator": f"pid:{SRC.pid}",
            "target-port": 1,
            "lu": "lu0",
            "key": f"0x{KEY:016x}",
            "type": 0,
            "type-name": None,
            "updated": 1000.0,
            "connected": True,
            "stale": False,
        },
        {
            "pid": NODE.pid,
            "uid": 0,
            "vm": "node,2",
            "initiator": f"pid:{NODE.pid}",
            "target-port": 1,
            "lu": "lu0",
            "key": f"0x{OTHER:016x}",
            "type": 6,
            "type-name": "exclusive-access-registrants-only",
            "updated": 1000.0,
            "connected": False,
            "stale": False,
        },
    ]
    assert [e["pid"] for e in tracker.query({"vm": "vm1"}, set())] == [SRC.pid]
    assert [e["pid"] for e in tracker.query({"pid": NODE.pid, "lu": "lu0"}, set())] == [NODE.pid]
    assert tracker.query({"lu": "lu9"}, set()) == []
    assert tracker.query({"initiator": f"pid:{SRC.pid}"}, set())[0]["pid"] == SRC.pid
    with pytest.raises(ValueError, match="Parameter 'device' is unexpected"):
        tracker.query({"device": "x"}, set())
    with pytest.raises(ValueError, match="Invalid parameter type for 'pid', expected: integer"):
        tracker.query({"pid": "1001"}, set())
    with pytest.raises(ValueError, match="expected: string"):
        tracker.query({"vm": 3}, set())


def test_a_reused_pid_is_another_process(
    tracker: PRTracker, emu: PRManagerEmulated, proc: Path
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=1)
    fake_proc(proc, SRC.pid, ["other", "-name", "vm7"], start=9999)
    cdb, data = pr_out_command(PrOutAction.REGISTER, sark=0x55)
    tracker.execute(emu, -1, cdb, data, nexus=Nexus("new"), peer=SRC, connection=77)
    (e,) = tracker.entries()
    assert (e.key, e.type, e.vm) == (0x55, 0, "vm7")


def test_memory_is_bounded(proc: Path, emu: PRManagerEmulated) -> None:
    tracker = PRTracker(max_entries=8, max_per_client=3, proc=str(proc))
    lus = [f"lu{i}" for i in range(6)]

    def register(peer: PeerCredentials, lu: str, key: int) -> None:
        emu_lu = new_tree(load_entrypoints=False).object_add("pr-manager-emulated", "e", lu_name=lu)
        assert isinstance(emu_lu, PRManagerEmulated)
        cdb, data = pr_out_command(PrOutAction.REGISTER, sark=key)
        result = tracker.execute(emu_lu, -1, cdb, data, nexus=nexus(peer), peer=peer, connection=1)
        assert result.ok

    for lu in lus:  # one client, six logical units: it keeps its last three
        register(SRC, lu, KEY)
    assert [e.lu for e in tracker.entries()] == ["lu3", "lu4", "lu5"]
    for pid in range(5000, 5010):  # ten more clients: the table keeps eight entries
        register(PeerCredentials(pid, 0, 0), "lu0", pid)
    assert len(tracker) == 8
    assert tracker.evicted == 3 + 5


def test_qemu11_destination_sequence_unsafe_on_lio_without_the_helper(
    emu: PRManagerEmulated,
) -> None:
    # What QEMU 11 meets on LIO when nothing was reserved: PREEMPT TYPE 0 is refused and the
    # source's registration stays (the documented limit the helper works around).
    for who, action, rk, sark, pr_type in (
        (nexus(SRC), PrOutAction.REGISTER, 0, KEY, 0),
        (nexus(DST), PrOutAction.REGISTER, 0, KEY, 0),
    ):
        cdb, data = pr_out_command(action, rk=rk, sark=sark, pr_type=pr_type)
        assert emu.execute(-1, cdb, data, nexus=who).ok
    cdb, data = pr_out_command(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=0)
    result = emu.execute(-1, cdb, data, nexus=nexus(DST))
    assert result.sense_code == SenseCode.INVALID_FIELD
    assert len(emu.snapshot(-1).registrations) == 2


@pytest.mark.parametrize("pr_type", [0, *ALL_TYPES])
def test_qemu11_destination_sequence_through_the_tracker(
    tracker: PRTracker, emu: PRManagerEmulated, pr_type: int
) -> None:
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    send(tracker, emu, NODE, PrOutAction.REGISTER, sark=OTHER)
    if pr_type:
        send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=pr_type)
    # The destination QEMU's post_load, byte for byte.
    assert send(tracker, emu, DST, PrOutAction.REGISTER, rk=0, sark=KEY) == ScsiStatus.GOOD
    assert (
        send(tracker, emu, DST, PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type)
        == ScsiStatus.GOOD
    )
    assert tracker.takeovers == 1
    regs = {n.initiator: r.key for n, r in emu.snapshot(-1).registrations}
    assert regs == {f"pid:{NODE.pid}": OTHER, f"pid:{DST.pid}": KEY}
    res = emu.snapshot(-1).reservation
    if pr_type:
        assert res is not None and int(res.type) == pr_type
        if pr_type not in (7, 8):
            assert res.holder == nexus(DST)
    else:
        assert res is None
    assert entry(tracker, DST) == (KEY, pr_type)


@pytest.mark.parametrize("pr_type", [0, 5])
def test_qemu11_passthrough_by_default(proc: Path, emu: PRManagerEmulated, pr_type: int) -> None:
    # --migrate-pr=passthrough: the target gets QEMU's PREEMPT, as from qemu-pr-helper.
    tracker = PRTracker(proc=str(proc))
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY)
    if pr_type:
        send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=pr_type)
    assert send(tracker, emu, DST, PrOutAction.REGISTER, rk=0, sark=KEY) == ScsiStatus.GOOD
    status = send(tracker, emu, DST, PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type)
    assert tracker.takeovers == 0
    regs = {n.initiator for n, _ in emu.snapshot(-1).registrations}
    if pr_type:  # LIO moves a reservation the guest held
        assert status == ScsiStatus.GOOD
        assert regs == {f"pid:{DST.pid}"}
    else:  # LIO refuses TYPE 0: the source stays registered
        assert status == ScsiStatus.CHECK_CONDITION
        assert regs == {f"pid:{SRC.pid}", f"pid:{DST.pid}"}
    assert entry(tracker, DST) == (KEY, pr_type)


def test_qemu11_preempt_without_a_source_goes_to_the_target(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    # Nothing to take over (the source's key is gone): the target answers QEMU's PREEMPT.
    assert send(tracker, emu, DST, PrOutAction.REGISTER, rk=0, sark=KEY) == ScsiStatus.GOOD
    cdb, data = pr_out_command(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=0)
    result = tracker.execute(emu, -1, cdb, data, nexus=nexus(DST), peer=DST, connection=DST.pid)
    assert result.sense_code == SenseCode.INVALID_FIELD  # LIO's answer to TYPE 0
    assert tracker.takeovers == 0
    assert {r.key for _, r in emu.snapshot(-1).registrations} == {KEY}


@pytest.mark.parametrize("pr_type", [0, int(PrType.WE_RO)])
def test_qemu11_with_one_nexus_for_both_qemus(
    tracker: PRTracker, emu: PRManagerEmulated, pr_type: int
) -> None:
    # initiator-rule=vm-name: the source and destination QEMU on one host are "vm:vm1".
    shared = Nexus("vm:vm1")
    send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY, who=shared)
    if pr_type:
        send(tracker, emu, SRC, PrOutAction.RESERVE, rk=KEY, pr_type=pr_type, who=shared)
    before = emu.snapshot(-1).persistent()
    # REGISTER with RK 0 from a registered nexus: RESERVATION CONFLICT, as on a real LU.
    status = send(tracker, emu, DST, PrOutAction.REGISTER, rk=0, sark=KEY, who=shared)
    assert status == ScsiStatus.RESERVATION_CONFLICT
    status = send(
        tracker, emu, DST, PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type, who=shared
    )
    after = emu.snapshot(-1).persistent()
    assert tracker.takeovers == 0
    # The registration and reservation stay where they are: with the one nexus.
    assert after.registrations == before.registrations
    assert after.reservation == before.reservation
    if pr_type:
        assert status == ScsiStatus.GOOD  # preempting itself
    else:
        assert status == ScsiStatus.CHECK_CONDITION  # LIO: TYPE 0


def test_a_tracking_failure_never_changes_the_answer(
    proc: Path, emu: PRManagerEmulated, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(PRTracker):
        def _update(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("tracking bug")

    tracker = Broken(proc=str(proc))
    assert send(tracker, emu, SRC, PrOutAction.REGISTER, sark=KEY) == ScsiStatus.GOOD
    assert emu.snapshot(-1).keys == (KEY,)
    assert "PR tracking failed" in caplog.text


def test_hostile_pr_out_is_answered_by_the_target(
    tracker: PRTracker, emu: PRManagerEmulated
) -> None:
    # Short or empty parameter lists, short CDBs, reserved service actions: the target's
    # answer, nothing tracked, no exception.
    for cdb, data in (
        (bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 8, 0]), bytes(8)),
        (bytes([0x5F, 4, 0]), b""),
        (bytes([0x5F, 0x1F, 0xFF, 0, 0, 0, 0, 0, 24, 0]), bytes(24)),
        (bytes([0x5F]), b""),
        # REPLACE LOST RESERVATION: not tracked by QEMU, refused by LIO.
        pr_out_command(PrOutAction.REPLACE_LOST_RESERVATION, rk=KEY, pr_type=1),
    ):
        result = tracker.execute(emu, -1, cdb, data, nexus=nexus(SRC), peer=SRC, connection=1)
        assert not result.ok
    cdb, data = pr_out_command(PrOutAction.REGISTER, sark=KEY)
    assert tracker.execute(emu, -1, cdb, data, nexus=None, peer=None, connection=1).ok
    assert tracker.entries() == []  # no peer credentials: not tracked


def test_a_full_table_fits_one_control_answer(tmp_path: Path) -> None:
    from qompr.daemon._control import MAX_PENDING
    from qompr.daemon._tracking import DEFAULT_MAX_ENTRIES

    # Worst case: every client with a huge, non-ASCII -name and a long initiator name.
    root = tmp_path / "proc"
    tracker = PRTracker(proc=str(root))
    emu = new_tree(load_entrypoints=False).object_add("pr-manager-emulated", "e", lu_name="lu0")
    assert isinstance(emu, PRManagerEmulated)
    cdb, data = pr_out_command(PrOutAction.REGISTER, sark=KEY)
    for i in range(DEFAULT_MAX_ENTRIES + 10):
        pid = 10_000 + i
        fake_proc(root, pid, ["qemu", "-name", "guest=" + '\u00e9"\\' * 100_000])
        peer = PeerCredentials(pid, 0xFFFF_FFFE, 0)
        who = Nexus("vm:" + "x" * 150 + str(i))
        assert tracker.execute(emu, -1, cdb, data, nexus=who, peer=peer, connection=i).ok
    assert len(tracker) == DEFAULT_MAX_ENTRIES
    answer = json.dumps({"return": tracker.query({}, set(range(10**6)))})
    assert len(answer) < MAX_PENDING // 2
    (first, *_) = tracker.entries()
    assert first.vm is not None and len(first.vm) == 64 and first.vm.isascii()
