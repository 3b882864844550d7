# SPDX-License-Identifier: MIT
"""What each client VM holds: the guest's key and reservation type per logical unit, tracked
as QEMU 11's ``migrate-pr`` tracks them, and QEMU 11's destination sequence served right.

Tracking (``docs/migration.md``), from the *successful* PR OUT commands only, per client
process (the QEMU) and logical unit (:meth:`~qompr.managers.PRManager.logical_unit_id`):

=====================================  ==================================================
REGISTER, REGISTER AND IGNORE           key = SERVICE ACTION RESERVATION KEY (0: type = 0)
RESERVE                                 type = TYPE
RELEASE                                 type = 0
CLEAR                                   key = type = 0
PREEMPT, PREEMPT AND ABORT              READ RESERVATION through the same manager, fd and
                                        nexus: type = its type when the reservation is the
                                        guest's (its key, or all-registrants), else 0
REGISTER AND MOVE                       not tracked (as QEMU); the entry is marked stale
=====================================  ==================================================

QEMU 11's destination sends REGISTER (RK 0, SARK key) then PREEMPT (RK = SARK = key, TYPE, 0
when nothing is reserved).  LIO refuses TYPE 0, and a PREEMPT that only removes registrations
removes the sender's own too, on LIO and by SPC-4's letter.  With ``qemu11_handover``
(``--migrate-pr=handover``), when a connection's PREEMPT has RK = SARK = the key its previous
PR OUT on that logical unit registered with RK 0 (that sequence exactly), the helper runs
:func:`qompr.managers.take_over` instead, which does what QEMU means on every target, and
answers GOOD; where there is nothing to take over (the key is registered nowhere else) the
PREEMPT goes to the target as sent.  Without it (the default) every command goes to the
target as sent, as qemu-pr-helper sends it.

Bounds (every client is hostile): at most :attr:`PRTracker.max_entries` entries, of which at
most :attr:`PRTracker.max_per_client` for one client process; past either the entry changed
longest ago (of that client, for the second) is forgotten.  An entry whose key and type are
both 0 is dropped.  Names are cut to :data:`MAX_VM_NAME` and :data:`MAX_INITIATOR`
characters, so that every entry and the whole table have a size bound.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

from qompr.managers import PRManager
from qompr.managers._handover import HandoverError
from qompr.managers._handover import HandoverReason
from qompr.managers._handover import PRPath
from qompr.managers._handover import read_reservation
from qompr.managers._handover import take_over
from qompr.scsi import ScsiResult

if TYPE_CHECKING:
    from qompr.linux import PeerCredentials
    from qompr.scsi import Nexus

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_PER_CLIENT",
    "MAX_INITIATOR",
    "MAX_VM_NAME",
    "PRTracker",
    "TrackedEntry",
]

log = logging.getLogger("qompr.daemon")

#: Entries kept at most (about 300 bytes each).  An unfiltered ``query-pr-tracking`` answers
#: them all in one line, which must stay under the control socket's unread-answer bound
#: (1 MiB): 1,024 entries of at most ~700 bytes of JSON do.
DEFAULT_MAX_ENTRIES: Final = 1024
#: Entries one client process may have (QEMU: one per scsi-block disk with reservations).
DEFAULT_MAX_PER_CLIENT: Final = 256

#: Longest guest name kept (QEMU's -name; libvirt's are short), and longest initiator name.
MAX_VM_NAME: Final = 64
MAX_INITIATOR: Final = 256

_REGISTER, _RESERVE, _RELEASE, _CLEAR, _PREEMPT, _PREEMPT_ABORT, _IGNORE, _MOVE = range(8)
_AR: Final = frozenset({7, 8})
_TYPE_NAMES: Final = {
    0: None,
    1: "write-exclusive",
    3: "exclusive-access",
    5: "write-exclusive-registrants-only",
    6: "exclusive-access-registrants-only",
    7: "write-exclusive-all-registrants",
    8: "exclusive-access-all-registrants",
}


class TrackedEntry:
    """One client process's registration on one logical unit."""

    __slots__ = (
        "connection",
        "fresh",
        "initiator",
        "key",
        "lu",
        "pid",
        "stale",
        "start_time",
        "target_port",
        "type",
        "uid",
        "updated",
        "vm",
    )

    def __init__(self, pid: int, lu: str) -> None:
        self.pid = pid
        self.lu = lu
        self.uid = -1
        self.connection = -1
        self.start_time: int | None = None
        self.vm: str | None = None
        self.initiator: str | None = None
        self.target_port: int | None = None
        self.key = 0
        self.type = 0
        self.updated = 0.0
        self.stale = False
        #: The last PR OUT was a REGISTER with RK 0 (the first step of QEMU 11's sequence).
        self.fresh = False

    def as_json(self, connected: bool) -> dict[str, Any]:
        """The entry as ``query-pr-tracking`` shows it."""
        return {
            "pid": self.pid,
            "uid": self.uid,
            "vm": self.vm,
            "initiator": self.initiator,
            "target-port": self.target_port,
            "lu": self.lu,
            "key": f"0x{self.key:016x}",
            "type": self.type,
            "type-name": _TYPE_NAMES.get(self.type),
            "updated": self.updated,
            "connected": connected,
            "stale": self.stale,
        }


def _start_time(pid: int, proc: str) -> int | None:
    """Field 22 of ``/proc/PID/stat``: tells a reused pid from the process it was."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _vm_name(pid: int, proc: str) -> str | None:
    """The guest name of QEMU's ``-name guest=NAME`` / ``-name NAME`` (the last one)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            argv = f.read(1 << 20).split(b"\0")
    except OSError:
        return None
    name = None
    for flag, value in itertools.pairwise(argv):
        if flag not in (b"-name", b"--name"):
            continue
        # QemuOpts: ",," is a literal comma; the implied key is "guest".
        parts = value.replace(b",,", b"\0").split(b",")
        for index, part in enumerate(parts):
            key, sep, val = part.partition(b"=")
            if sep and key == b"guest":
                name = val
            elif not sep and index == 0:
                name = part
    if not name:
        return None
    # Printable ASCII, bounded: the name goes into logs and JSON answers.
    text = name.replace(b"\0", b",")[:MAX_VM_NAME].decode("ascii", errors="replace")
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in text)


class PRTracker:
    """The tracking table and the hook on the daemon's PR OUT path (thread-safe).

    :param max_entries: most entries kept.
    :param max_per_client: most entries one client process may have.
    :param qemu11_handover: run the handover for QEMU 11's destination PREEMPT.
    :param proc: where /proc is (tests).
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_per_client: int = DEFAULT_MAX_PER_CLIENT,
        qemu11_handover: bool = False,
        proc: str = "/proc",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_per_client = max_per_client
        self.qemu11_handover = qemu11_handover
        self._proc = proc
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[int, str], TrackedEntry]
        self._entries = collections.OrderedDict()  # least recently changed first
        self._per_client: collections.Counter[int] = collections.Counter()
        #: How many entries the bounds made it forget.
        self.evicted = 0
        #: How many QEMU 11 destination sequences it completed with a handover.
        self.takeovers = 0

    # -- the request path ----------------------------------------------------------------------
    def execute(
        self,
        manager: PRManager,
        fd: int,
        cdb: bytes,
        data: bytes,
        *,
        nexus: Nexus | None,
        peer: PeerCredentials | None,
        connection: int,
    ) -> ScsiResult:
        """Execute one PR OUT through *manager*, and track what it did if it succeeded."""
        if peer is None or len(cdb) < 3:
            return manager.execute(fd, cdb, data, nexus=nexus)
        try:
            lu = manager.logical_unit_id(fd)
        except Exception:  # an fd the manager cannot name: not tracked
            return manager.execute(fd, cdb, data, nexus=nexus)
        action = cdb[1] & 0x1F
        pr_type = cdb[2] & 0x0F
        rk = int.from_bytes(data[0:8], "big") if len(data) >= 16 else 0
        sark = int.from_bytes(data[8:16], "big") if len(data) >= 16 else 0
        if (
            action == _PREEMPT
            and rk == sark != 0
            and self.qemu11_handover
            and self._fresh(peer.pid, lu, rk)
        ):
            path = PRPath(manager, fd, nexus)
            answer = self._qemu11_takeover(
                path, peer=peer, connection=connection, lu=lu, key=rk, pr_type=pr_type
            )
            if answer is not None:
                return answer
        result = manager.execute(fd, cdb, data, nexus=nexus)
        if result.status == 0:
            try:
                self._observe(
                    PRPath(manager, fd, nexus), peer, connection=connection, lu=lu,
                    action=action, pr_type=pr_type, rk=rk, sark=sark,
                )  # fmt: skip
            except Exception:  # tracking must never change an answer
                log.exception("PR tracking failed on %s from pid %d", cdb.hex(), peer.pid)
        return result

    def _observe(
        self,
        path: PRPath,
        peer: PeerCredentials,
        *,
        connection: int,
        lu: str,
        action: int,
        pr_type: int,
        rk: int,
        sark: int,
    ) -> None:
        """Track what a successful PR OUT did."""
        nexus = path.nexus
        if action in (_REGISTER, _IGNORE):
            fresh = action == _REGISTER and rk == 0 and sark != 0
            self._update(peer, lu, nexus, connection, key=sark, fresh=fresh)
        elif action == _RESERVE:
            self._update(peer, lu, nexus, connection, pr_type=pr_type)
        elif action == _RELEASE:
            self._update(peer, lu, nexus, connection, pr_type=0)
        elif action == _CLEAR:
            self._update(peer, lu, nexus, connection, key=0, pr_type=0)
        elif action in (_PREEMPT, _PREEMPT_ABORT):
            # QEMU 11 reads the reservation back: PREEMPT's outcome depends on the state.
            try:
                res = read_reservation(path)
            except (HandoverError, ValueError):
                self._update(peer, lu, nexus, connection, stale=True)
            else:
                key = self._key(peer.pid, lu)
                held = res.type or 0
                mine = held in _AR or (held != 0 and res.reservation_key == key)
                self._update(peer, lu, nexus, connection, pr_type=held if mine else 0)
        elif action == _MOVE:
            self._update(peer, lu, nexus, connection, stale=True)

    def _qemu11_takeover(
        self,
        path: PRPath,
        *,
        peer: PeerCredentials,
        connection: int,
        lu: str,
        key: int,
        pr_type: int,
    ) -> ScsiResult | None:
        """QEMU 11's PREEMPT, done right; ``None``: send it as it came."""
        try:
            done = take_over(path, key, pr_type, registered=True)
        except HandoverError as exc:
            if exc.reason is HandoverReason.COMMAND_FAILED and exc.result is not None:
                log.warning("QEMU 11 destination sequence of pid %d: %s", peer.pid, exc)
                return exc.result
            return None  # nothing to take over: the target answers the PREEMPT itself
        self.takeovers += 1
        log.info(
            "pid %d took over key 0x%x on %s (QEMU 11 destination sequence, %s, %s)",
            peer.pid,
            key,
            lu,
            done.method,
            " ".join(done.steps),
        )
        self._update(peer, lu, path.nexus, connection, key=key, pr_type=done.type)
        return ScsiResult.good()

    # -- the table ------------------------------------------------------------------------------
    def _fresh(self, pid: int, lu: str, key: int) -> bool:
        with self._lock:
            entry = self._entries.get((pid, lu))
            return entry is not None and entry.fresh and entry.key == key

    def _key(self, pid: int, lu: str) -> int:
        with self._lock:
            entry = self._entries.get((pid, lu))
            return 0 if entry is None else entry.key

    def _update(
        self,
        peer: PeerCredentials,
        lu: str,
        nexus: Nexus | None,
        connection: int,
        *,
        key: int | None = None,
        pr_type: int | None = None,
        fresh: bool = False,
        stale: bool = False,
    ) -> None:
        pid = peer.pid
        # /proc is read outside the lock, and only for a connection not seen before.
        with self._lock:
            entry = self._entries.get((pid, lu))
            known = entry is not None and entry.connection == connection
        start = vm = None
        if not known:
            start, vm = _start_time(pid, self._proc), _vm_name(pid, self._proc)
        with self._lock:
            entry = self._entries.get((pid, lu))
            if entry is not None and not known and entry.start_time != start:
                self._drop(entry)  # a reused pid: another process
                entry = None
            if entry is None:
                entry = TrackedEntry(pid, lu)
                self._make_room(pid)
                self._entries[(pid, lu)] = entry
                self._per_client[pid] += 1
            if not known:
                entry.start_time, entry.vm = start, vm
            entry.connection = connection
            entry.uid = peer.uid
            if nexus is not None:
                entry.initiator = nexus.initiator[:MAX_INITIATOR]
                entry.target_port = nexus.target_port
            if key is not None:
                entry.key = key
                if key == 0:
                    entry.type = 0
            if pr_type is not None:
                entry.type = pr_type
            entry.fresh = fresh
            entry.stale = entry.stale or stale
            entry.updated = self._clock()
            self._entries.move_to_end((pid, lu))
            if entry.key == 0 and entry.type == 0 and not entry.stale:
                self._drop(entry)

    def _drop(self, entry: TrackedEntry) -> None:
        if self._entries.pop((entry.pid, entry.lu), None) is not None:
            self._per_client[entry.pid] -= 1
            if self._per_client[entry.pid] <= 0:
                del self._per_client[entry.pid]

    def _make_room(self, pid: int) -> None:
        if self._per_client[pid] >= self.max_per_client:
            victim = next(e for e in self._entries.values() if e.pid == pid)
        elif len(self._entries) >= self.max_entries:
            victim = next(iter(self._entries.values()))
        else:
            return
        self._drop(victim)
        self.evicted += 1
        if self.evicted == 1 or self.evicted % 1000 == 0:
            log.warning(
                "PR tracking: %d entries forgotten to stay within %d (%d per client)",
                self.evicted,
                self.max_entries,
                self.max_per_client,
            )

    def entries(self) -> list[TrackedEntry]:
        """A copy of every entry, by pid then logical unit."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: (e.pid, e.lu))

    def __len__(self) -> int:
        return len(self._entries)

    # -- the control interface ------------------------------------------------------------------
    def query(self, arguments: dict[str, Any], open_connections: set[int]) -> list[Any]:
        """``query-pr-tracking``: every entry, or those matching *arguments* (``pid``, ``vm``,
        ``lu``, ``initiator``; all given must match).

        :raises ValueError: with QMP's text, for an unknown or mistyped argument.
        """
        wanted: dict[str, Any] = {}
        for name, value in arguments.items():
            kind = _FILTERS.get(name)
            if kind is None:
                raise ValueError(f"Parameter '{name}' is unexpected")
            if not isinstance(value, kind) or isinstance(value, bool):
                expected = "integer" if kind is int else "string"
                raise ValueError(f"Invalid parameter type for '{name}', expected: {expected}")
            wanted[name] = value
        out = []
        for entry in self.entries():
            if "pid" in wanted and entry.pid != wanted["pid"]:
                continue
            if "vm" in wanted and entry.vm != wanted["vm"]:
                continue
            if "lu" in wanted and entry.lu != wanted["lu"]:
                continue
            if "initiator" in wanted and entry.initiator != wanted["initiator"]:
                continue
            out.append(entry.as_json(entry.connection in open_connections))
        return out


_FILTERS: Final[dict[str, type]] = {"pid": int, "vm": str, "lu": str, "initiator": str}
