# SPDX-License-Identifier: MIT
"""The handover onto a destination that takes no key but the guest's: a dm-multipath map with
multipath.conf's ``reservation_key``, as libmpathpersist (multipath-tools 0.9) drives it.

The map is simulated over the emulated engine (LIO and SPC-4 modes) the way the VM suite saw
the real library behave (tests/vm/test_multipath.py): a PR OUT whose RK and SARK both differ
from the configured key is refused before anything is sent (ABORTED COMMAND, LOGICAL UNIT
COMMUNICATION FAILURE, qompr's answer for the library's refusal); REGISTER and REGISTER AND
IGNORE EXISTING KEY go to every path; everything else through the first path.  The real map
is exercised in the VM suite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qompr.embed import HandoverError
from qompr.embed import HandoverReason
from qompr.embed import Migration
from qompr.embed import PRPath
from qompr.embed import take_over
from qompr.managers.emulated import PRManagerEmulated
from qompr.plugins import new_tree
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import pr_out_command

KEY = 0x123ABC  # multipath.conf's reservation_key, and the guest's
OTHER = 0xBEEF
SRC = Nexus("host-a-qemu")
NODE = Nexus("node-2")
MAP = Nexus("map")  # the nexus PRPath names for the map: its paths are P1 and P2
P1, P2 = Nexus("map-path-1"), Nexus("map-path-2")
TYPES = [int(t) for t in (PrType.WE, PrType.EA, PrType.WE_RO, PrType.EA_RO)]
AR_TYPES = [int(PrType.WE_AR), int(PrType.EA_AR)]
_REGISTERS = (PrOutAction.REGISTER, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY)


class MapOver:
    """The emulated engine's ``execute``, with nexus ``MAP`` behaving like a multipath map."""

    def __init__(self, emu: PRManagerEmulated, *, broken: bool = False) -> None:
        self.emu = emu
        self.real = emu.execute
        self.broken = broken  # every PR OUT through the map fails (a dead map)
        self.sent: list[tuple[int, int, int]] = []  # (action, RK, SARK) the library let through
        emu.execute = self.execute  # type: ignore[method-assign]

    def execute(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if nexus != MAP:
            return self.real(fd, cdb, data, nexus=nexus)
        if cdb[0] != 0x5F:
            return self.real(fd, cdb, data, nexus=P1)
        action = cdb[1] & 0x1F
        rk, sark = int.from_bytes(data[0:8], "big"), int.from_bytes(data[8:16], "big")
        if self.broken or KEY not in (rk, sark):
            return ScsiResult.check(SenseCode.LUN_COMM_FAILURE)
        self.sent.append((action, rk, sark))
        if action not in _REGISTERS:
            return self.real(fd, cdb, data, nexus=P1)
        results = [self.real(fd, cdb, data, nexus=p) for p in (P1, P2)]
        return next((r for r in results if not r.ok), results[0])


@pytest.fixture(params=["lio", "spc4"])
def emu(request: pytest.FixtureRequest) -> Iterator[PRManagerEmulated]:
    tree = new_tree(load_entrypoints=False)
    obj = tree.object_add("pr-manager-emulated", "emu0", lu_name="lu0", mode=request.param)
    assert isinstance(obj, PRManagerEmulated)
    yield obj


def out(
    emu: PRManagerEmulated, nexus: Nexus, action: PrOutAction, *, rk: int = 0, sark: int = 0,
    pr_type: int = 0,
) -> ScsiStatus:  # fmt: skip
    cdb, data = pr_out_command(action, rk=rk, sark=sark, pr_type=pr_type)
    return emu.execute(-1, cdb, data, nexus=nexus).status


def registrations(emu: PRManagerEmulated) -> dict[Nexus, int]:
    return {nexus: reg.key for nexus, reg in emu.snapshot(-1).registrations}


def reservation(emu: PRManagerEmulated) -> tuple[int, Nexus] | None:
    res = emu.snapshot(-1).reservation
    return None if res is None else (int(res.type), res.holder)


def source_holds(emu: PRManagerEmulated, pr_type: int, *, reserver: Nexus = SRC) -> None:
    """The guest on SRC registered (and reserved *pr_type* unless 0); NODE registered OTHER
    (and reserved *pr_type* itself when *reserver* is NODE)."""
    assert out(emu, SRC, PrOutAction.REGISTER, sark=KEY) == ScsiStatus.GOOD
    assert out(emu, NODE, PrOutAction.REGISTER, sark=OTHER) == ScsiStatus.GOOD
    if pr_type:
        rk = KEY if reserver == SRC else OTHER
        assert out(emu, reserver, PrOutAction.RESERVE, rk=rk, pr_type=pr_type) == ScsiStatus.GOOD


MAP_REGISTERED = {NODE: OTHER, P1: KEY, P2: KEY}
FALLBACK_STEPS = [
    "READ_KEYS=GOOD",
    "READ_RESERVATION=GOOD",
    "REGISTER=CHECK_CONDITION",  # the temporary key, refused
    "READ_KEYS=GOOD",  # nothing changed: the guest's key it is
    "REGISTER_AND_IGNORE=GOOD",
    "PREEMPT=GOOD",
    "REGISTER_AND_IGNORE=GOOD",
]


@pytest.mark.parametrize("pr_type", TYPES)
def test_reservation_moves_onto_every_path_of_the_map(emu: PRManagerEmulated, pr_type: int) -> None:
    source_holds(emu, pr_type)
    sim = MapOver(emu)
    result = take_over(PRPath(emu, -1, MAP), KEY, pr_type)
    assert (result.method, result.type) == ("reservation", pr_type)
    assert list(result.steps) == FALLBACK_STEPS
    # The PREEMPT removed the map's second path with the source; registered again.
    assert registrations(emu) == MAP_REGISTERED
    assert reservation(emu) == (pr_type, P1)
    assert SenseCode.RESERVATIONS_RELEASED not in emu.unit_attentions(-1, NODE)
    # Only the guest's key ever reached the device.
    assert all(KEY in (rk, sark) for _, rk, sark in sim.sent)


@pytest.mark.parametrize("pr_type", AR_TYPES)
def test_all_registrants_reservation_stays_with_the_map(
    emu: PRManagerEmulated, pr_type: int
) -> None:
    source_holds(emu, pr_type)
    MapOver(emu)
    result = take_over(PRPath(emu, -1, MAP), KEY, pr_type)
    assert result.type == pr_type
    assert registrations(emu) == MAP_REGISTERED
    held = reservation(emu)
    assert held is not None and held[0] == pr_type
    # every path of the map may write: it is a registrant of an all-registrants reservation
    for nexus in (P1, P2):
        assert emu.check_command(-1, bytes([0x2A]) + bytes(9), nexus=nexus) is None


def test_registered_but_nothing_reserved(emu: PRManagerEmulated) -> None:
    # The PREEMPT takes the sender's registration too (LIO, SPC-4): the map registers again.
    source_holds(emu, 0)
    MapOver(emu)
    result = take_over(PRPath(emu, -1, MAP), KEY, 0)
    assert (result.method, result.type) == ("registration", 0)
    assert registrations(emu) == MAP_REGISTERED
    assert reservation(emu) is None


@pytest.mark.parametrize("pr_type", TYPES)
def test_reservation_of_another_node_is_left_alone(emu: PRManagerEmulated, pr_type: int) -> None:
    source_holds(emu, pr_type, reserver=NODE)
    MapOver(emu)
    result = take_over(PRPath(emu, -1, MAP), KEY, 0)
    assert result.method == "registration"
    assert registrations(emu) == MAP_REGISTERED
    assert reservation(emu) == (pr_type, NODE)


def test_fenced_guest_is_not_resurrected_and_nothing_is_sent(emu: PRManagerEmulated) -> None:
    source_holds(emu, int(PrType.WE_RO), reserver=NODE)
    rk, sark, wero = OTHER, KEY, int(PrType.WE_RO)
    assert out(emu, NODE, PrOutAction.PREEMPT, rk=rk, sark=sark, pr_type=wero) == ScsiStatus.GOOD
    sim = MapOver(emu)
    with pytest.raises(HandoverError) as caught:
        take_over(PRPath(emu, -1, MAP), KEY, 0)
    assert caught.value.reason is HandoverReason.NOT_REGISTERED
    assert sim.sent == [] and registrations(emu) == {NODE: OTHER}


@pytest.mark.parametrize("pr_type", [0, *TYPES, *AR_TYPES])
def test_from_the_map_and_back(emu: PRManagerEmulated, pr_type: int) -> None:
    # The guest starts on the map; it migrates to SRC (temporary key there), then the
    # migration fails and rolls back onto the map (the guest's key only).
    assert out(emu, NODE, PrOutAction.REGISTER, sark=OTHER) == ScsiStatus.GOOD
    sim = MapOver(emu)
    assert sim.execute(-1, *pr_out_command(PrOutAction.REGISTER, sark=KEY), nexus=MAP).ok
    if pr_type:
        reserve = pr_out_command(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type)
        assert sim.execute(-1, *reserve, nexus=MAP).ok
    migration = Migration(
        PRPath(emu, -1, SRC), source=PRPath(emu, -1, MAP), key=KEY, reservation_type=pr_type
    )
    migration.switch_over()
    assert registrations(emu) == {NODE: OTHER, SRC: KEY}
    back = migration.roll_back()
    assert back is not None and "REGISTER=CHECK_CONDITION" in back.steps
    assert registrations(emu) == MAP_REGISTERED
    held = reservation(emu)
    if pr_type in AR_TYPES:
        assert held is not None and held[0] == pr_type
    else:
        assert held == ((pr_type, P1) if pr_type else None)


@pytest.mark.parametrize("pr_type", [0, *TYPES, *AR_TYPES])
def test_guests_key_only_is_right_on_any_target(emu: PRManagerEmulated, pr_type: int) -> None:
    # temporary_key=False on a plain nexus: the same outcome as the temporary key's.
    dst = Nexus("host-b-qemu")
    source_holds(emu, pr_type)
    result = take_over(PRPath(emu, -1, dst), KEY, pr_type, temporary_key=False)
    assert "REGISTER=CHECK_CONDITION" not in result.steps
    assert registrations(emu) == {NODE: OTHER, dst: KEY}
    held = reservation(emu)
    if pr_type in AR_TYPES:
        assert held is not None and held[0] == pr_type
    else:
        assert held == ((pr_type, dst) if pr_type else None)


def test_failed_preempt_unregisters_the_map_again(emu: PRManagerEmulated) -> None:
    source_holds(emu, int(PrType.EA))
    sim = MapOver(emu)
    real = sim.execute

    def execute(
        fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if nexus == MAP and cdb[0] == 0x5F and cdb[1] & 0x1F == PrOutAction.PREEMPT:
            return ScsiResult.check(SenseCode.LUN_COMM_FAILURE)  # the path it went down died
        return real(fd, cdb, data, nexus=nexus)

    emu.execute = execute  # type: ignore[method-assign]
    with pytest.raises(HandoverError) as caught:
        take_over(PRPath(emu, -1, MAP), KEY, int(PrType.EA))
    assert caught.value.reason is HandoverReason.COMMAND_FAILED
    assert caught.value.steps[-3:] == (
        "PREEMPT=CHECK_CONDITION",
        "READ_KEYS=GOOD",
        "UNDO_REGISTER=GOOD",
    )
    # the source keeps everything; the map's registrations made for the handover are gone
    assert registrations(emu) == {SRC: KEY, NODE: OTHER}
    assert reservation(emu) == (int(PrType.EA), SRC)


def test_a_dead_map_fails_and_changes_nothing(emu: PRManagerEmulated) -> None:
    source_holds(emu, int(PrType.WE_RO))
    before = emu.snapshot(-1).persistent()
    MapOver(emu, broken=True)
    with pytest.raises(HandoverError) as caught:
        take_over(PRPath(emu, -1, MAP), KEY, int(PrType.WE_RO))
    assert caught.value.reason is HandoverReason.COMMAND_FAILED
    assert caught.value.result is not None
    assert caught.value.result.sense_code == SenseCode.LUN_COMM_FAILURE
    assert emu.snapshot(-1).persistent() == before


@pytest.mark.parametrize("pr_type", [0, *TYPES, *AR_TYPES])
def test_guests_key_only_onto_the_nexus_that_holds_it(emu: PRManagerEmulated, pr_type: int) -> None:
    # A retried handover, or one host: the destination already is the guest's nexus.  The
    # PREEMPT preempts itself (and, nothing reserved, its own registration): all comes back.
    source_holds(emu, pr_type)
    result = take_over(PRPath(emu, -1, SRC), KEY, pr_type, temporary_key=False)
    assert result.type == pr_type
    assert registrations(emu) == {SRC: KEY, NODE: OTHER}
    held = reservation(emu)
    if pr_type in AR_TYPES:
        assert held is not None and held[0] == pr_type
    else:
        assert held == ((pr_type, SRC) if pr_type else None)
