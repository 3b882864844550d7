# SPDX-License-Identifier: MIT
"""A reservation follows a live-migrating QEMU guest from host A to host B, on real LIO.

One boot of the bed (``paths=3``, the real ``qemu-pr-helper`` started) runs
:func:`guest_main` (this file, imported as ``vm.test_migration``).  The bed's LU is reached
through three I_T nexuses: path 1 is "host A", path 2 "host B", path 3 an observer that
never registers (it reads the LU's state with SG_IO).  Each host has its own
``qompr-pr-helper`` (helper A serves path 1's fds, helper B path 2's), and the real
``qemu-pr-helper`` runs twice beside them for comparison.

* **QEMU 11's destination sequence** (:mod:`.qemu11_replay`): for each of the six types, the
  not-reserved case (TYPE 0) and a PREEMPT that only removes registrations, the source
  registers (and reserves) through helper A and the destination sends REGISTER + PREEMPT
  through helper B, once through qompr-pr-helper and once through the real qemu-pr-helper:
  the answers and the LU's state afterwards must be the same, and what LIO does is pinned.
  A third run sends it to a helper B started with ``--migrate-pr=handover``, which must turn
  every case into a move (docs/migration.md).
* **Live migration of a guest with a reservation** (:mod:`.migration_bed`): a second-level
  guest (:mod:`.nested`) boots on QEMU 7.2 on host A, its ``scsi-block`` disk on path 1
  through helper A; it registers a key, takes Write Exclusive - Registrants Only and keeps
  writing (busybox ``dd`` with O_DIRECT: a WRITE of a counter, a READ of the stop-flag
  block), printing each answer on its console.  Three migrations to a QEMU started with
  ``-incoming defer -S`` on path 2 / helper B, each stopped at ``pre-switchover``:

  1. cancelled there (``migrate_cancel``): nothing moves, the guest writes on through A;
  2. completed and handed over, then the destination is killed before it runs: the handover
     is rolled back and the source resumed (what libvirt does when its Finish phase fails);
  3. completed, handed over, the destination resumed: the reservation is B's.

  The handover is :class:`qompr.embed.Migration` as a VM manager runs it (phases 1 and 3):
  key and type from helper A's tracking (``query-pr-tracking`` for the source QEMU's pid),
  the VM manager's own fds of the disk on each host, sent through each host's helper; phase 2
  runs ``qompr migrate handover --from-control`` and ``qompr migrate rollback`` instead.
  The guest never sees a failed command, and at the end its own READ KEYS / READ RESERVATION
  (through QEMU on host B) show its key.  The handover's duration is printed (no timing is
  asserted).

Everything runs in the one boot; the second-level guest boots once (it is what costs: TCG
inside TCG).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import pytest

from .guest_program import boot
from .guest_program import load_record
from .migration_bed import ROUNDS
from .migration_bed import parse_writes
from .nested import Step
from .nested import build_initramfs
from .nested import parse_console
from .qemu11_replay import CASES
from .vmbed import REPO
from .vmbed import VMResult
from .vmbed import ensure_vmlinux
from .vmbed import host_kernel

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_host")]

RESULT = "migration.json"
KEY = 0x716D6967  # "qmig"
WE_RO = 5
GOOD, CHECK_CONDITION = 0x00, 0x02
ILLEGAL_REQUEST = 0x05
#: the block the guest writes its counter to, and the block whose "QOMPR-STOP" ends its loop
DATA_LBA, FLAG_LBA = 16, 100
STOP = b"QOMPR-STOP"
WRITE_MARK = "@@mig w"

SOCK = {"A": "/run/qompr-a.sock", "B": "/run/qompr-b.sock"}
CONTROL = {"A": "/run/qompr-a.control", "B": "/run/qompr-b.control"}
REAL_B_SOCK = "/run/qemu-pr-helper-b.sock"
#: helper B once more, with --migrate-pr=handover (QEMU 11's sequence made a handover)
HANDOVER_B_SOCK = "/run/qompr-b-handover.sock"

#: The guest's write loop: busybox dd with O_DIRECT (a static binary: each program start
#: costs seconds under TCG in TCG) writes the counter to DATA_LBA and reads FLAG_LBA; each
#: round prints "@@mig w COUNTER WRITE_RC READ_RC UPTIME" on the console.
_LOOP = (
    "i=0; while [ $i -lt 1000000 ]; do "
    "printf '%-511s\\n' \"qompr-migration $i\" >/tmp/blk; "
    f"dd if=/tmp/blk of=$D0 bs=512 seek={DATA_LBA} count=1 oflag=direct conv=notrunc "
    "2>/dev/null; w=$?; "
    f"dd if=$D0 of=/tmp/flag bs=512 skip={FLAG_LBA} count=1 iflag=direct 2>/dev/null; r=$?; "
    f'read up _ </proc/uptime; echo "{WRITE_MARK} $i $w $r $up" >/dev/console; '
    f"grep -q {STOP.decode()} /tmp/flag && break; i=$((i+1)); done"
)
PERSIST = "sg_persist -n"
#: (name, command) run in the second-level guest; $D0 is its one disk.
STEPS: list[tuple[str, str]] = [
    ("register", f"{PERSIST} --out --register --param-sark={KEY:#x} $D0"),
    ("reserve", f"{PERSIST} --out --reserve --param-rk={KEY:#x} --prout-type={WE_RO} $D0"),
    ("keys_before", f"{PERSIST} -k $D0"),
    ("write_loop", _LOOP),
    ("keys_after", f"{PERSIST} -k $D0"),
    ("resv_after", f"{PERSIST} -r $D0"),
]

GUEST_SCRIPT = """
set -u
cd "$VMBED_REPO"
"$VMBED_PYTHON" -c 'import tests.vm.test_migration as t; t.guest_main()'
"""


# ------------------------------------------------------------------------------------ guest side


def _start_helpers(env: Mapping[str, str]) -> dict[str, subprocess.Popen[str]]:
    """qompr-pr-helper A and B (with control sockets) and a second real qemu-pr-helper."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for host in ("A", "B"):
        procs[host] = subprocess.Popen(
            [sys.executable, "-m", "qompr.daemon.main", "-k", SOCK[host],
             f"--control={CONTROL[host]}"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    procs["handover_B"] = subprocess.Popen(
        [sys.executable, "-m", "qompr.daemon.main", "-k", HANDOVER_B_SOCK,
         "--migrate-pr=handover"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs["real_B"] = subprocess.Popen(
        ["qemu-pr-helper", "-k", REAL_B_SOCK], stderr=subprocess.PIPE, text=True
    )
    return procs


def _replays(env: Mapping[str, str]) -> dict[str, Any]:
    """Every case of :data:`CASES` through both kinds of helper (see the module docstring)."""
    from .guest_tools import PRHelperClient
    from .qemu11_replay import lu_state
    from .qemu11_replay import path_of_initiators
    from .qemu11_replay import replay
    from .qemu11_replay import reset_lu
    from .qemu11_replay import unit_attention

    devs = [env["VMBED_DEV1"], env["VMBED_DEV2"], env["VMBED_DEV3"]]
    paths = path_of_initiators(dict(env))
    sockets = {
        "qompr": (SOCK["A"], SOCK["B"]),
        "real": (env["VMBED_PRH_SOCK"], REAL_B_SOCK),
        "qompr_handover": (SOCK["A"], HANDOVER_B_SOCK),
    }
    out: dict[str, Any] = {}
    for kind, (sock_a, sock_b) in sockets.items():
        out[kind] = {}
        for name, reserved, preempt_type in CASES:
            reset_lu(devs)
            fd_a = os.open(devs[0], os.O_RDWR)
            fd_b = os.open(devs[1], os.O_RDWR)
            src, dst = PRHelperClient(sock_a), PRHelperClient(sock_b)
            try:
                steps = replay((src, fd_a), (dst, fd_b), KEY, reserved, preempt_type)
            finally:
                src.close()
                dst.close()
                os.close(fd_a)
                os.close(fd_b)
            out[kind][name] = {
                "steps": steps,
                "state": lu_state(devs[2], paths),
                "source_ua": unit_attention(devs[0]),
                "destination_ua": unit_attention(devs[1]),
            }
    reset_lu(devs)
    return out


class _EmbedHandover:
    """The handover as a VM manager runs it with :mod:`qompr.embed`: its own fds of the disk on
    both hosts, the helpers' sockets, the source helper's tracking for key and type."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from qompr.embed import Migration
        from qompr.embed import helper_path

        self.fds = [os.open(env["VMBED_DEV1"], os.O_RDWR), os.open(env["VMBED_DEV2"], os.O_RDWR)]
        self.source = helper_path(SOCK["A"], self.fds[0])
        self.destination = helper_path(SOCK["B"], self.fds[1])
        self.migration = Migration(self.destination, source=self.source)

    def prepare(self, source_pid: int) -> dict[str, Any]:
        entry = self.migration.prepare(CONTROL["A"], pid=source_pid)
        return {"key": entry.key, "type": entry.type, "vm": entry.vm,
                "connected": entry.connected, "stale": entry.stale}  # fmt: skip

    def switch_over(self) -> dict[str, Any]:
        return self.migration.switch_over().as_json()

    def roll_back(self) -> dict[str, Any] | None:
        result = self.migration.roll_back()
        return None if result is None else result.as_json()

    def close(self) -> None:
        from qompr.embed import close_path

        close_path(self.source)
        close_path(self.destination)
        for fd in self.fds:
            os.close(fd)


class _CliHandover:
    """The same with ``qompr migrate`` (a shell-scripted set-up): ``handover --from-control``
    on host B, ``rollback`` on host A; each opens the device itself."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.source_pid = 0
        self.key: int | None = None
        self.type = 0

    def _qompr(self, *argv: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-m", "qompr", "migrate", *argv, "--json"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"qompr migrate {argv[0]}: exit {proc.returncode}: {proc.stderr}")
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    def prepare(self, source_pid: int) -> dict[str, Any]:
        self.source_pid = source_pid
        return {}

    def switch_over(self) -> dict[str, Any]:
        result = self._qompr(
            "handover", "--helper", SOCK["B"], "--device", self.env["VMBED_DEV2"],
            "--from-control", CONTROL["A"], "--pid", str(self.source_pid),
        )  # fmt: skip
        self.key, self.type = int(result["key"], 16), int(result["type"])
        return result

    def roll_back(self) -> dict[str, Any] | None:
        if self.key is None:
            return None
        return self._qompr(
            "rollback", "--helper", SOCK["A"], "--device", self.env["VMBED_DEV1"],
            "--key", f"{self.key:#x}", "--type", str(self.type),
        )  # fmt: skip

    def close(self) -> None:
        pass


def guest_main() -> None:  # pragma: no cover - runs in the VM
    """Start the helpers, replay QEMU 11's sequence, migrate the nested guest; record."""
    from qompr.testing import wait_for_socket

    env = os.environ
    phases = env.get("MIGVM_PHASES", "replay,migrate").split(",")
    record: dict[str, Any] = {"phases": phases}

    def save() -> None:
        with open(os.path.join(env["VMBED_RESULT_DIR"], RESULT), "w") as out:
            json.dump(record, out, indent=1)

    procs = _start_helpers(env)
    try:
        start = time.monotonic()
        for name, path in (
            ("A", SOCK["A"]), ("B", SOCK["B"]), ("handover_B", HANDOVER_B_SOCK),
            ("real_B", REAL_B_SOCK),
        ):  # fmt: skip
            wait_for_socket(path, 120, procs[name])
        record["helpers_ready_seconds"] = round(time.monotonic() - start, 2)
        if "replay" in phases:
            start = time.monotonic()
            record["replay"] = _replays(env)
            record["replay_seconds"] = round(time.monotonic() - start, 2)
        if "migrate" in phases:
            from .migration_bed import migrate_scenario

            def progress(migration: dict[str, Any]) -> None:
                record["migration"] = migration
                save()

            start = time.monotonic()
            record["migration"] = migrate_scenario(
                env,
                lambda phase: _CliHandover(env) if phase == "rollback" else _EmbedHandover(env),
                data_lba=DATA_LBA,
                flag_lba=FLAG_LBA,
                helper_a=SOCK["A"],
                helper_b=SOCK["B"],
                save_progress=progress,
            )
            record["migrate_seconds"] = round(time.monotonic() - start, 1)
        record["done"] = True
    finally:
        for name, proc in procs.items():
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            record.setdefault("helpers", {})[name] = {"rc": proc.returncode, "stderr": err[-3000:]}
        save()


# ------------------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> VMResult:
    kver = host_kernel()
    kernel = ensure_vmlinux(kver)
    directory = tmp_path_factory.mktemp("migration")
    directory.chmod(0o755)
    initrd = build_initramfs(kver, STEPS, ["/usr/bin/sg_persist"], directory / "initrd.cpio",
                             disks=1)  # fmt: skip
    return boot(
        GUEST_SCRIPT,
        RESULT,
        paths=3,
        pr_helper=True,
        env={
            "NESTED_KERNEL": str(kernel or f"/boot/vmlinuz-{kver}"),
            "NESTED_INITRD": str(initrd),
            "MIGVM_PHASES": os.environ.get("MIGVM_PHASES", "replay,migrate"),
        },
        cwd=REPO,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def record(bed: VMResult) -> dict[str, Any]:
    return load_record(bed, RESULT)


def _phase(record: dict[str, Any], name: str) -> None:
    if name not in record["phases"]:
        pytest.fail(f"MIGVM_PHASES={','.join(record['phases'])} left out {name!r}")


# ---------------------------------------------------------------- QEMU 11's sequence, replayed

CASE_NAMES = [name for name, _, _ in CASES]


@pytest.fixture(scope="module")
def replays(record: dict[str, Any]) -> dict[str, Any]:
    _phase(record, "replay")
    result: dict[str, Any] = record["replay"]
    return result


def _registrant(path: int, holder: bool) -> dict[str, Any]:
    return {"path": path, "key": KEY, "holder": holder}


@pytest.mark.parametrize("case", CASE_NAMES)
def test_qemu11_sequence_same_outcome_through_both_helpers(
    replays: dict[str, Any], case: str
) -> None:
    assert replays["qompr"][case] == replays["real"][case]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_qemu11_source_setup_and_register_succeed(replays: dict[str, Any], case: str) -> None:
    for kind in ("qompr", "real"):
        steps = replays[kind][case]["steps"]
        assert steps["source_register"]["status"] == GOOD, (kind, steps)
        assert steps.get("source_reserve", {"status": GOOD})["status"] == GOOD, (kind, steps)
        assert steps["register"]["status"] == GOOD, (kind, steps)


@pytest.mark.parametrize("case", ["we", "ea", "we_ro", "ea_ro"])
def test_lio_preempt_moves_a_single_holder_reservation(replays: dict[str, Any], case: str) -> None:
    """SPC-4 §5.14.11.2.4: the holder's key preempted, its registrations removed except the
    sender's, the reservation the sender's with the new type: the source nexus is gone."""
    seen = replays["qompr"][case]
    pr_type = {"we": 1, "ea": 3, "we_ro": 5, "ea_ro": 6}[case]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": pr_type},
        "registrants": [_registrant(2, True)],
    }
    # REGISTRATIONS PREEMPTED (06/2A/05) for the source's nexus
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


@pytest.mark.parametrize("case", ["we_ar", "ea_ar"])
def test_lio_preempt_moves_an_all_registrants_reservation(
    replays: dict[str, Any], case: str
) -> None:
    """All-registrants with a non-zero SARK: LIO removes the source's registration and keeps
    the sender's, so the reservation (key 0: every registrant holds it) stays, B's alone."""
    seen = replays["qompr"][case]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {
        "keys": [KEY],
        "reservation": {"key": 0, "type": {"we_ar": 7, "ea_ar": 8}[case]},
        "registrants": [_registrant(2, True)],
    }
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


def test_lio_refuses_preempt_with_type_0(replays: dict[str, Any]) -> None:
    """QEMU 11's not-reserved case: LIO answers ILLEGAL REQUEST, INVALID FIELD IN CDB
    (05/24/00), so the source's registration stays beside the destination's."""
    seen = replays["qompr"]["none"]
    assert seen["steps"]["preempt"] == {"status": CHECK_CONDITION, "sense": [0x05, 0x24, 0x00]}
    assert seen["state"] == {
        "keys": [KEY, KEY],
        "reservation": None,
        "registrants": [_registrant(1, False), _registrant(2, False)],
    }
    assert seen["source_ua"] == [] and seen["destination_ua"] == []


def test_lio_preempt_that_only_removes_registrations_removes_the_senders_own(
    replays: dict[str, Any],
) -> None:
    """Nothing reserved and a valid TYPE: LIO removes every registration with the key, the
    sender's own too (SPC-4 §5.14.11.2.3 removes only the others'): no key is left."""
    seen = replays["qompr"]["none_we_ro"]
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    assert seen["state"] == {"keys": [], "reservation": None, "registrants": []}
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


@pytest.mark.parametrize("case", CASE_NAMES)
def test_handover_mode_makes_every_case_a_move(replays: dict[str, Any], case: str) -> None:
    """``--migrate-pr=handover`` on helper B: QEMU 11's sequence becomes qompr's handover, so
    on LIO too the destination ends with the guest's key and its reservation, and the
    source's registration is gone, TYPE 0 and "nothing reserved" included."""
    reserved = dict((name, r) for name, r, _ in CASES)[case]
    seen = replays["qompr_handover"][case]
    assert seen["steps"]["register"] == {"status": GOOD, "sense": []}
    assert seen["steps"]["preempt"] == {"status": GOOD, "sense": []}
    if reserved is None:
        reservation = None
    else:
        reservation = {"key": 0 if reserved in (7, 8) else KEY, "type": reserved}
    assert seen["state"] == {
        "keys": [KEY],
        "reservation": reservation,
        "registrants": [_registrant(2, reserved is not None)],
    }
    assert seen["source_ua"] == [0x06, 0x2A, 0x05]
    assert seen["destination_ua"] == []


def test_replay_timing(record: dict[str, Any]) -> None:
    _phase(record, "replay")
    print(f"\nQEMU 11 replay, 3 helper set-ups x {len(CASES)} cases: {record['replay_seconds']}s",
          file=sys.stderr)  # fmt: skip
    assert record["helpers"]["A"]["rc"] == 0, record["helpers"]["A"]
    assert record["helpers"]["B"]["rc"] == 0, record["helpers"]["B"]


# ------------------------------------------------------------------------- the live migration


@pytest.fixture(scope="module")
def migration(record: dict[str, Any]) -> dict[str, Any]:
    _phase(record, "migrate")
    result: dict[str, Any] = record["migration"]
    return result


def _writes(console: str) -> list[tuple[int, int, int, float]]:
    return parse_writes(console)


@pytest.fixture(scope="module")
def nested_steps(migration: dict[str, Any]) -> Mapping[str, Step]:
    # the guest's console is the source's until the switch, then the destination's
    text = migration["consoles"]["source"] + migration["consoles"]["destination"]
    _, steps, done = parse_console(text)
    assert done, f"the second-level guest did not finish:\n{text[-3000:]}"
    return steps


def test_source_helper_tracked_the_guests_key_and_type(migration: dict[str, Any]) -> None:
    """query-pr-tracking on helper A's control socket, for the source QEMU's pid: what its
    guest registered and reserved (what the handover then takes over)."""
    assert migration["tracked"] == {
        "key": KEY, "type": WE_RO, "vm": "source", "connected": True, "stale": False
    }  # fmt: skip


def test_guest_registers_and_reserves_through_helper_a(
    nested_steps: Mapping[str, Step], migration: dict[str, Any]
) -> None:
    assert nested_steps["register"].rc == 0, nested_steps["register"]
    assert nested_steps["reserve"].rc == 0, nested_steps["reserve"]
    assert migration["state"]["start"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": WE_RO},
        "registrants": [_registrant(1, True)],
    }


def test_cancelled_migration_leaves_the_reservation_with_a(migration: dict[str, Any]) -> None:
    assert migration["cancel"]["status"] == "cancelled", migration["cancel"]
    # Migration.roll_back() before any switch_over(): nothing to undo
    assert migration["cancel"]["roll_back"] is None
    assert migration["state"]["after_cancel"] == migration["state"]["start"]
    # and the guest wrote on through A afterwards
    assert migration["cancel"]["writes_after"] >= ROUNDS


def test_failed_destination_rolls_the_handover_back(migration: dict[str, Any]) -> None:
    rollback = migration["rollback"]
    assert rollback["status"] == "completed", rollback
    assert migration["state"]["handed_over_then_failed"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": WE_RO},
        "registrants": [_registrant(2, True)],
    }
    assert migration["state"]["after_rollback"] == migration["state"]["start"]
    assert rollback["writes_after"] >= ROUNDS


def test_migration_hands_the_reservation_to_b(migration: dict[str, Any]) -> None:
    assert migration["switch"]["status"] == "completed", migration["switch"]
    # READ RESERVATION / READ FULL STATUS through the observer: the guest's key, held through
    # B's nexus; A's registration is gone
    assert migration["state"]["after_switch"] == {
        "keys": [KEY],
        "reservation": {"key": KEY, "type": WE_RO},
        "registrants": [_registrant(2, True)],
    }
    assert migration["switch"]["writes_after"] >= ROUNDS


def test_every_guest_write_succeeded(migration: dict[str, Any]) -> None:
    """Before, during and after each migration, every WRITE and READ the guest sent was
    GOOD: the handover happened while it was paused, the roll-back before it resumed."""
    source = _writes(migration["consoles"]["source"])
    destination = _writes(migration["consoles"]["destination"])
    assert len(destination) >= 2, migration["consoles"]["destination"][-2000:]
    failed = [w for w in source + destination if (w[1], w[2]) != (0, 0)]
    assert not failed, failed
    # one counter across the switch: no round lost, none repeated (the one line the switch
    # may cut between the two consoles excepted)
    numbers = [w[0] for w in source + destination]
    gaps = [b - a for a, b in itertools.pairwise(numbers)]
    assert set(gaps) <= {1, 2} and gaps.count(2) <= 1, numbers


def test_the_last_write_is_on_the_lu(migration: dict[str, Any]) -> None:
    last = _writes(migration["consoles"]["destination"])[-1][0]
    assert migration["data_block"].rstrip() == f"qompr-migration {last}"


def test_guest_still_sees_its_key_after_migration(nested_steps: Mapping[str, Step]) -> None:
    keys, resv = nested_steps["keys_after"], nested_steps["resv_after"]
    assert keys.rc == 0 and resv.rc == 0, (keys, resv)
    assert "1 registered reservation key follows" in keys.output and f"{KEY:#x}" in keys.output
    assert f"Key={KEY:#x}" in resv.output
    assert "Write Exclusive, registrants only" in resv.output


def test_migration_timing(bed: VMResult, record: dict[str, Any], migration: dict[str, Any]) -> None:
    t = migration["timings"]
    rounds = _writes(migration["consoles"]["source"])
    per_round = (rounds[-1][3] - rounds[0][3]) / max(1, len(rounds) - 1)
    print(
        f"\nmigration bed: wall {bed.wall_time:.1f}s (helpers ready "
        f"{record['helpers_ready_seconds']}s, migration part {record['migrate_seconds']}s); "
        f"nested boot to its disk {t['nested_kernel']}s, to first writes "
        f"{t['nested_boot']}s, a write-loop round {per_round:.2f}s of guest time; "
        f"migrations {t['migrate_cancel']}s (cancelled at "
        f"pre-switchover), {t['migrate_rollback']}s, {t['migrate_switch']}s; QEMU downtime "
        f"{migration['switch']['downtime_ms']} ms; handover {t['handover']}s (API's own "
        f"{migration['switch']['handover']['seconds']:.3f}s), rollback {t['rollback']}s "
        "(a qompr migrate process); "
        f"source stopped to destination running {t['switch_total']}s",
        file=sys.stderr,
    )
    assert migration["switch"]["handover"]["method"] == "reservation"
    assert migration["rollback"]["roll_back"]["method"] == "reservation"
