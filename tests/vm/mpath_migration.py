# SPDX-License-Identifier: MIT
"""A reservation migrating between a dm-multipath map and a path outside it (guest side).

Run by ``tests/vm/test_multipath.py``'s guest program, in its one boot.  Path 3 is taken out
of mpatha, so the LU has two "hosts": host A is the map (paths 1 and 2) served by a
``qompr-pr-helper`` whose default backend hands the map's fd to libmpathpersist, host B is
path 3 served by a second ``qompr-pr-helper`` (SG_IO).  The guest's key is multipath.conf's
``reservation_key``: libmpathpersist refuses any other key on the map.

* QEMU 11's destination sequence (:func:`.qemu11_replay.replay`): the source registers the
  key (and reserves), the destination sends REGISTER (RK 0, SARK key) and PREEMPT (RK = SARK =
  key, TYPE), A to B and B to A, for Write Exclusive - Registrants Only, QEMU 11's
  not-reserved case (TYPE 0) and a not-reserved PREEMPT with a valid TYPE; and B to the map
  through helper H, which serves the map with ``--migrate-pr=handover``.
* :class:`qompr.embed.Migration` (the handover a VM manager runs): B to the map, then its
  rollback; and the map to B, then its rollback; each for Write Exclusive - Registrants Only,
  Write Exclusive, Exclusive Access - All Registrants and a guest registered only.  Onto the
  map the handover uses the guest's key only (libmpathpersist refuses its temporary key).

The LU's state after each step is read with SG_IO on a path (READ KEYS, READ RESERVATION,
READ FULL STATUS: :func:`.qemu11_replay.lu_state`).  The LU is left unregistered and path 3
back in the map.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from .guest_tools import PRHelperClient
from .qemu11_replay import lu_state
from .qemu11_replay import path_of_initiators
from .qemu11_replay import replay
from .qemu11_replay import reset_lu
from .qemu11_replay import sense_triplet
from .qemu11_replay import unit_attention

SOCK = {"A": "/run/qompr-mp-a.sock", "B": "/run/qompr-mp-b.sock", "H": "/run/qompr-mp-h.sock"}
CONTROL = {
    "A": "/run/qompr-mp-a.control",
    "B": "/run/qompr-mp-b.control",
    "H": "/run/qompr-mp-h.control",
}
#: helper H serves the map too, with ``--migrate-pr=handover``
HELPER_OPTIONS = {"A": [], "B": [], "H": ["--migrate-pr=handover"]}
#: (case, type the source reserves or None, TYPE of the destination's PREEMPT)
CASES: tuple[tuple[str, int | None, int], ...] = (
    ("we_ro", 5, 5),
    ("none", None, 0),
    ("none_we_ro", None, 5),
)
WE_RO = 5
#: (case, type the source reserves, 0: registered only) for the handovers both ways
HANDOVER_CASES: tuple[tuple[str, int], ...] = (
    ("we_ro", WE_RO),
    ("we", 1),
    ("ea_ar", 8),
    ("none", 0),
)

Note = Callable[[str, Any], None]


def _slaves(mpath: str) -> list[str]:
    dm = os.path.basename(os.path.realpath(mpath))
    try:
        return sorted(os.listdir(f"/sys/block/{dm}/slaves"))
    except OSError:
        return []


def _wait(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.2)
    return what()


def _sh(command: str) -> dict[str, Any]:
    proc = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False, timeout=120
    )
    return {"command": command, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def _state(devs: list[str], paths: dict[int, int]) -> dict[str, Any]:
    """The LU's state read through the first path that answers (a unit attention one
    path reports is consumed, then read again)."""
    last: OSError | None = None
    for _ in range(8):
        for dev in devs:
            try:
                return lu_state(dev, paths)
            except OSError as exc:
                last = exc
                unit_attention(dev)
    assert last is not None
    raise last


def _reset(devs: list[str]) -> None:
    """:func:`.qemu11_replay.reset_lu`, after the unit attentions a preempted nexus has
    queued (path 3 is outside the map: no path checker consumes them) are drained."""
    for dev in devs:
        for _ in range(8):
            if not unit_attention(dev):
                break
    reset_lu(devs)


def migration_section(note: Note, devs: list[str], mpath: str) -> None:  # pragma: no cover
    """Everything above, recorded with *note* (``mpmig_*`` entries)."""
    from qompr.testing import wait_for_socket

    env = dict(os.environ)
    paths = path_of_initiators(env)
    dev3 = os.path.basename(devs[2])
    note("mpmig_del_path", _sh(f"multipathd del path {dev3}"))
    note("mpmig_map_paths", [_wait(lambda: len(_slaves(mpath)) == 2, 60), _slaves(mpath)])
    procs = {
        host: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qompr.daemon.main",
                "-k",
                SOCK[host],
                f"--control={CONTROL[host]}",
                *HELPER_OPTIONS[host],
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in ("A", "B", "H")
    }
    try:
        for host, proc in procs.items():
            wait_for_socket(SOCK[host], 180, proc)  # TCG, a loaded host
        fds = {"A": os.open(mpath, os.O_RDWR), "B": os.open(devs[2], os.O_RDWR)}
        fds["H"] = fds["A"]
        try:
            _replays(note, devs, paths, fds)
            _handovers(note, devs, paths, fds)
        finally:
            for fd in {fds["A"], fds["B"]}:
                os.close(fd)
    finally:
        exits = []
        for proc in procs.values():
            proc.terminate()
            _, err = proc.communicate(timeout=30)
            exits.append([proc.returncode, err[-1500:]])
        note("mpmig_daemon_exits", exits)
        _reset(devs)
        _sh(f"multipathd add path {dev3}")
        if not _wait(lambda: len(_slaves(mpath)) == 3, 30):
            _sh("multipathd reconfigure")
        note("mpmig_restored", [_wait(lambda: len(_slaves(mpath)) == 3, 60), _slaves(mpath)])
        note("mpmig_after", _state(devs, paths))


def _replays(note: Note, devs: list[str], paths: dict[int, int], fds: dict[str, int]) -> None:
    from .test_multipath import KEY

    out: dict[str, Any] = {}
    directions = (("a_to_b", ("A", "B")), ("b_to_a", ("B", "A")), ("b_to_h", ("B", "H")))
    for direction, (src, dst) in directions:
        out[direction] = {}
        for name, reserved, preempt_type in CASES:
            _reset(devs)
            source, destination = PRHelperClient(SOCK[src]), PRHelperClient(SOCK[dst])
            try:
                steps = replay(
                    (source, fds[src]), (destination, fds[dst]), KEY, reserved, preempt_type
                )
            finally:
                source.close()
                destination.close()
            out[direction][name] = {"steps": steps, "state": _state(devs, paths)}
            note("mpmig_replay", out)


def _untrack(client: PRHelperClient, fd: int) -> None:
    """Register and unregister through the helper, so it tracks nothing for this process
    (the reset after it goes behind the helper's back; the type an earlier case reserved
    would stay tracked: a REGISTER sets only the key, as in QEMU 11)."""
    from .guest_tools import pr_out_cdb
    from .guest_tools import pr_out_params
    from .test_multipath import KEY

    for action, rk, sark in ((6, 0, KEY), (0, KEY, 0)):  # REGISTER AND IGNORE, REGISTER
        for _ in range(8):  # a unit attention answer: not run, send it again
            reply = client.run(fd, pr_out_cdb(action, 0), pr_out_params(rk, sark))
            if sense_triplet(reply.sense)[:1] != [0x06]:
                break
        if reply.result != 0:
            raise OSError(f"untrack: {reply.result:#x} {sense_triplet(reply.sense)}")


def _handovers(note: Note, devs: list[str], paths: dict[int, int], fds: dict[str, int]) -> None:
    from qompr.embed import HandoverError
    from qompr.embed import Migration
    from qompr.embed import close_path
    from qompr.embed import helper_path

    from .guest_tools import pr_out_cdb
    from .guest_tools import pr_out_params
    from .test_multipath import KEY

    out: dict[str, Any] = {}
    for direction, (src, dst) in (("b_to_map", ("B", "A")), ("map_to_b", ("A", "B"))):
        out[direction] = {}
        for case, pr_type in HANDOVER_CASES:
            record: dict[str, Any] = {}
            client = PRHelperClient(SOCK[src])
            commands = [(0, 0, 0, KEY)] + ([(1, pr_type, KEY, 0)] if pr_type else [])
            try:
                _untrack(client, fds[src])
                _reset(devs)
                for action, type_, rk, sark in commands:
                    cdb = pr_out_cdb(action, type_)
                    began = time.perf_counter()
                    reply = client.run(fds[src], cdb, pr_out_params(rk, sark))
                    # one PR OUT through the source's helper: what a command costs there
                    record.setdefault("source_seconds", []).append(time.perf_counter() - began)
                    record.setdefault("source", []).append(
                        {"status": reply.result, "sense": sense_triplet(reply.sense)}
                    )
            finally:
                client.close()
            record["before"] = _state(devs, paths)
            source = helper_path(SOCK[src], fds[src])
            destination = helper_path(SOCK[dst], fds[dst])
            migration = Migration(destination, source=source)
            try:
                entry = migration.prepare(CONTROL[src], pid=os.getpid())
                record["tracked"] = {"key": entry.key, "type": entry.type}
            except Exception as exc:  # recorded: the host side asserts on it
                record["tracked"] = {"error": str(exc)}
                migration.key, migration.reservation_type = KEY, pr_type
            for phase, step in (
                ("switch_over", migration.switch_over),
                ("roll_back", migration.roll_back),
            ):
                try:
                    result = step()
                    record[phase] = None if result is None else result.as_json()
                except HandoverError as exc:
                    record[phase] = {
                        "error": str(exc),
                        "reason": exc.reason.value,
                        "steps": list(exc.steps),
                    }
                record[f"after_{phase}"] = _state(devs, paths)
            close_path(source)
            close_path(destination)
            out[direction][case] = record
            note("mpmig_handover", out)
