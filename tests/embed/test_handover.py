# SPDX-License-Identifier: MIT
"""The handover of a live migration (``qompr.embed.take_over``) against the emulated engine
answering as LIO (and, where the letter differs, as SPC-4): all six types, nothing reserved,
a reservation another node holds, a source that is gone, a fenced guest, rollback."""

from __future__ import annotations

import pytest

from qompr.embed import HandoverError
from qompr.embed import HandoverReason
from qompr.embed import Migration
from qompr.embed import PRPath
from qompr.embed import roll_back
from qompr.embed import take_over
from qompr.managers.emulated import PRManagerEmulated
from qompr.plugins import new_tree
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import pr_out_command

KEY = 0x1234_5678_9ABC_DEF0
OTHER = 0xBEEF
SRC = Nexus("host-a-qemu")
DST = Nexus("host-b-qemu")
NODE = Nexus("node-2")  # another cluster node
TYPES = [int(t) for t in (PrType.WE, PrType.EA, PrType.WE_RO, PrType.EA_RO)]
AR_TYPES = [int(PrType.WE_AR), int(PrType.EA_AR)]


@pytest.fixture(params=["lio", "spc4"])
def emu(request: pytest.FixtureRequest) -> PRManagerEmulated:
    tree = new_tree(load_entrypoints=False)
    obj = tree.object_add("pr-manager-emulated", "emu0", lu_name="lu0", mode=request.param)
    assert isinstance(obj, PRManagerEmulated)
    return obj


@pytest.fixture
def lio() -> PRManagerEmulated:
    tree = new_tree(load_entrypoints=False)
    obj = tree.object_add("pr-manager-emulated", "emu0", lu_name="lu0", mode="lio")
    assert isinstance(obj, PRManagerEmulated)
    return obj


def out(
    emu: PRManagerEmulated,
    nexus: Nexus,
    action: PrOutAction,
    *,
    rk: int = 0,
    sark: int = 0,
    pr_type: int = 0,
) -> ScsiStatus:
    cdb, data = pr_out_command(action, rk=rk, sark=sark, pr_type=pr_type)
    return emu.execute(-1, cdb, data, nexus=nexus).status


def register(emu: PRManagerEmulated, nexus: Nexus, key: int) -> None:
    assert out(emu, nexus, PrOutAction.REGISTER, sark=key) == ScsiStatus.GOOD


def reserve(emu: PRManagerEmulated, nexus: Nexus, key: int, pr_type: int) -> None:
    assert out(emu, nexus, PrOutAction.RESERVE, rk=key, pr_type=pr_type) == ScsiStatus.GOOD


def registrations(emu: PRManagerEmulated) -> dict[Nexus, int]:
    return {nexus: reg.key for nexus, reg in emu.snapshot(-1).registrations}


def reservation(emu: PRManagerEmulated) -> tuple[int, Nexus] | None:
    res = emu.snapshot(-1).reservation
    return None if res is None else (int(res.type), res.holder)


def path(emu: PRManagerEmulated, nexus: Nexus) -> PRPath:
    return PRPath(emu, -1, nexus)


@pytest.mark.parametrize("pr_type", TYPES)
def test_reservation_moves_to_the_destination(emu: PRManagerEmulated, pr_type: int) -> None:
    register(emu, SRC, KEY)
    reserve(emu, SRC, KEY, pr_type)
    register(emu, NODE, OTHER)
    result = take_over(path(emu, DST), KEY, pr_type)
    assert result.method == "reservation"
    assert result.type == pr_type
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    assert reservation(emu) == (pr_type, DST)
    # The other node learns nothing changed type: no RESERVATIONS RELEASED for it.
    assert SenseCode.RESERVATIONS_RELEASED not in emu.unit_attentions(-1, NODE)
    # The guest, now on DST, sees its own key and may write.
    assert emu.check_command(-1, bytes([0x2A]) + bytes(9), nexus=DST) is None


@pytest.mark.parametrize("pr_type", AR_TYPES)
def test_all_registrants_reservation_stays_and_the_source_goes(
    emu: PRManagerEmulated, pr_type: int
) -> None:
    register(emu, SRC, KEY)
    register(emu, NODE, OTHER)
    reserve(emu, SRC, KEY, pr_type)
    result = take_over(path(emu, DST), KEY, pr_type)
    assert result.type == pr_type
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    held = reservation(emu)
    assert held is not None and held[0] == pr_type
    assert emu.check_command(-1, bytes([0x2A]) + bytes(9), nexus=DST) is None


@pytest.mark.parametrize("pr_type", AR_TYPES)
def test_all_registrants_reservation_of_another_node(emu: PRManagerEmulated, pr_type: int) -> None:
    # The guest only registered; the other node reserved (the guest tracked type 0).
    register(emu, SRC, KEY)
    register(emu, NODE, OTHER)
    reserve(emu, NODE, OTHER, pr_type)
    result = take_over(path(emu, DST), KEY, 0)
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    assert reservation(emu) is not None
    assert result.type == pr_type  # every registrant holds an all-registrants reservation


def test_registered_but_nothing_reserved(emu: PRManagerEmulated) -> None:
    # QEMU 11 sends PREEMPT with TYPE 0 here, which LIO refuses; the handover does not.
    register(emu, SRC, KEY)
    register(emu, NODE, OTHER)
    result = take_over(path(emu, DST), KEY, 0)
    assert result.method == "registration"
    assert result.type == 0
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    assert reservation(emu) is None


@pytest.mark.parametrize("pr_type", TYPES)
def test_reservation_of_another_node_is_left_alone(emu: PRManagerEmulated, pr_type: int) -> None:
    register(emu, SRC, KEY)
    register(emu, NODE, OTHER)
    reserve(emu, NODE, OTHER, pr_type)
    result = take_over(path(emu, DST), KEY, 0)
    assert result.method == "registration"
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    assert reservation(emu) == (pr_type, NODE)


def test_stale_type_moves_what_the_target_holds(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.WE_RO))
    result = take_over(path(lio, DST), KEY, int(PrType.EA))
    assert result.type == int(PrType.WE_RO)
    assert result.type_mismatch == int(PrType.EA)
    assert reservation(lio) == (int(PrType.WE_RO), DST)


def test_source_gone_is_destination_side_only(lio: PRManagerEmulated) -> None:
    # Nothing is sent through the source: its registration goes all the same.
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.WE_RO))
    migration = Migration(path(lio, DST), key=KEY, reservation_type=int(PrType.WE_RO))
    result = migration.switch_over()
    assert result.type == int(PrType.WE_RO)
    assert registrations(lio) == {DST: KEY}
    with pytest.raises(HandoverError, match="no path through the source"):
        migration.roll_back()


def test_fenced_guest_is_not_resurrected(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    register(lio, NODE, OTHER)
    reserve(lio, NODE, OTHER, int(PrType.WE_RO))
    # The other node fences the guest before the switch-over.
    assert (
        out(lio, NODE, PrOutAction.PREEMPT, rk=OTHER, sark=KEY, pr_type=int(PrType.WE_RO))
        == ScsiStatus.GOOD
    )
    before = lio.snapshot(-1).persistent()
    with pytest.raises(HandoverError) as caught:
        take_over(path(lio, DST), KEY, 0)
    assert caught.value.reason is HandoverReason.NOT_REGISTERED
    after = lio.snapshot(-1).persistent()
    assert registrations(lio) == {NODE: OTHER}
    assert after.reservation == before.reservation


@pytest.mark.parametrize("pr_type", [0, *TYPES, *AR_TYPES])
def test_roll_back_gives_everything_back(emu: PRManagerEmulated, pr_type: int) -> None:
    register(emu, SRC, KEY)
    register(emu, NODE, OTHER)
    if pr_type:
        reserve(emu, SRC, KEY, pr_type)
    before = emu.snapshot(-1)
    migration = Migration(path(emu, DST), source=path(emu, SRC), key=KEY, reservation_type=pr_type)
    migration.switch_over()
    assert registrations(emu) == {NODE: OTHER, DST: KEY}
    back = migration.roll_back()
    assert back is not None
    assert registrations(emu) == {NODE: OTHER, SRC: KEY}
    res = reservation(emu)
    if pr_type and pr_type not in AR_TYPES:
        assert res == (pr_type, SRC)
    elif pr_type:
        assert res is not None and res[0] == pr_type
    else:
        assert res is None
    assert before.reservation is None or res is not None
    # The source's guest finds no unit attention left over from the round trip.
    assert emu.unit_attentions(-1, SRC) == ()


def test_cancelled_before_the_switch_over_changes_nothing(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.WE_RO))
    before = lio.snapshot(-1)
    migration = Migration(path(lio, DST), source=path(lio, SRC), key=KEY)
    assert migration.roll_back() is None
    assert lio.snapshot(-1) == before


def test_roll_back_without_handover_finds_the_source_holding(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.WE_RO))
    result = roll_back(path(lio, SRC), KEY, int(PrType.WE_RO))
    assert result.method == "already-held"
    assert registrations(lio) == {SRC: KEY}
    assert reservation(lio) == (int(PrType.WE_RO), SRC)


def test_same_nexus_is_already_held(lio: PRManagerEmulated) -> None:
    # vm-name initiators: source and destination QEMU on one host are one nexus.
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.EA_RO))
    result = take_over(path(lio, SRC), KEY, int(PrType.EA_RO))
    assert result.method == "already-held"
    assert result.type == int(PrType.EA_RO)
    assert registrations(lio) == {SRC: KEY}
    assert reservation(lio) == (int(PrType.EA_RO), SRC)


def test_destination_with_a_stale_registration(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    register(lio, DST, 0x77)  # left over from an earlier guest on that nexus
    reserve(lio, SRC, KEY, int(PrType.WE))
    take_over(path(lio, DST), KEY, int(PrType.WE))
    assert registrations(lio) == {DST: KEY}
    assert reservation(lio) == (int(PrType.WE), DST)


def test_failed_preempt_leaves_the_destination_unregistered(lio: PRManagerEmulated) -> None:
    register(lio, SRC, KEY)
    reserve(lio, SRC, KEY, int(PrType.EA))

    calls: list[bytes] = []
    real = lio.execute

    def execute(fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None):  # type: ignore[no-untyped-def]
        calls.append(bytes(cdb))
        if cdb[0] == 0x5F and cdb[1] & 0x1F == PrOutAction.PREEMPT:
            # Another node preempts the guest just before the destination's PREEMPT.
            real(-1, *pr_out_command(PrOutAction.REGISTER, sark=OTHER), nexus=NODE)
            real(
                -1,
                *pr_out_command(PrOutAction.PREEMPT, rk=OTHER, sark=KEY, pr_type=int(PrType.EA)),
                nexus=NODE,
            )
        return real(fd, cdb, data, nexus=nexus)

    lio.execute = execute  # type: ignore[method-assign]
    with pytest.raises(HandoverError) as caught:
        take_over(path(lio, DST), KEY, int(PrType.EA))
    assert caught.value.reason is HandoverReason.COMMAND_FAILED
    assert caught.value.result is not None
    assert caught.value.result.status == ScsiStatus.RESERVATION_CONFLICT
    assert "UNDO_REGISTER=GOOD" in caught.value.steps
    assert registrations(lio) == {NODE: OTHER}


def test_invalid_arguments(lio: PRManagerEmulated) -> None:
    with pytest.raises(HandoverError) as caught:
        take_over(path(lio, DST), 0, 0)
    assert caught.value.reason is HandoverReason.INVALID
    with pytest.raises(HandoverError):
        take_over(path(lio, DST), KEY, 2)
