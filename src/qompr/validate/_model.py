# SPDX-License-Identifier: MIT
"""What a validation run finds: checks, their outcomes, the commands sent, and the report.

A check ends PASS, WARN or FAIL with a one-line reason (and for WARN and FAIL a hint), or SKIP
when it was not run (asked with ``--skip``, not checkable on this path, or an earlier failure
made it meaningless).  Steps add *observations* to a :class:`CheckBook`; a check's outcome is
its worst observation, so one FAIL among many PASSes is what the report shows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any
from typing import Final

import attrs

__all__ = [
    "CHECKS",
    "CheckBook",
    "CheckResult",
    "CommandRecord",
    "ExitStatus",
    "NodeInfo",
    "Report",
    "Status",
]


class Status(enum.Enum):
    """The outcome of one check."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    #: Not run: asked to skip, not checkable through this path, or made meaningless.
    SKIP = "SKIP"

    @property
    def severity(self) -> int:
        """Order for "worst of": SKIP < PASS < WARN < FAIL."""
        return _SEVERITY[self]


_SEVERITY: Final = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}


class ExitStatus(enum.IntEnum):
    """``qompr validate``'s exit statuses."""

    OK = 0  # nothing FAILed (WARN and SKIP allowed)
    FAILED = 1  # at least one check FAILed
    USAGE = 2  # a bad command line
    REFUSED = 3  # the LU has registrations or a reservation, and no --force
    CANNOT_RUN = 4  # a device, helper or manager could not be opened or created
    INTERRUPTED = 130  # SIGINT or SIGTERM; the LU was restored as far as possible


#: Every check, in report order, with its title.
CHECKS: Final[dict[str, str]] = {
    "capabilities": "REPORT CAPABILITIES and the types the profile needs",
    "register": "REGISTER from every node with its own key",
    "read-keys": "READ KEYS alike from every node",
    "distinct-nexus": "every node is its own I_T nexus",
    "reserve": "RESERVE with the profile's type",
    "read-reservation": "READ RESERVATION from the other nodes",
    "preempt": "PREEMPT removes the other node",
    "unit-attention": "unit attention for the preempted node",
    "write-conflict": "RESERVATION CONFLICT for a preempted node's WRITE",
    "release": "RELEASE",
    "unregister": "unregister one node",
    "aptpl": "APTPL accepted and reported",
    "clear": "CLEAR",
    "preempt-abort": "PREEMPT AND ABORT fences a node",
    "generation": "PRgeneration advances",
    "latency": "command latency against the cluster's timeouts",
    "multipath": "multipath reservation_key and multipathd",
    "restored": "the LU is left as it was found",
}


@attrs.frozen
class CheckResult:
    """One check's outcome.

    :param id: the check's name (a key of :data:`CHECKS`).
    :param status: PASS, WARN, FAIL or SKIP.
    :param reason: what was found, in one line.
    :param hint: what to do about it (WARN and FAIL).
    """

    id: str
    status: Status
    reason: str
    hint: str | None = None

    @property
    def title(self) -> str:
        return CHECKS.get(self.id, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "reason": self.reason,
            "hint": self.hint,
        }


class CheckBook:
    """Observations per check; a check's result is its worst observation.

    A PASS check reports its *summary* when one was set, else its first PASS reason.
    """

    def __init__(self, checks: Iterable[str]) -> None:
        self.order = list(checks)
        self._seen: dict[str, list[CheckResult]] = {name: [] for name in self.order}
        self._summary: dict[str, str] = {}

    def add(self, check: str, status: Status, reason: str, hint: str | None = None) -> None:
        if check not in self._seen:
            return  # not part of this profile
        self._seen[check].append(CheckResult(check, status, reason, hint))

    def passed(self, check: str, reason: str) -> None:
        self.add(check, Status.PASS, reason)

    def warn(self, check: str, reason: str, hint: str | None = None) -> None:
        self.add(check, Status.WARN, reason, hint)

    def fail(self, check: str, reason: str, hint: str | None = None) -> None:
        self.add(check, Status.FAIL, reason, hint)

    def skip(self, check: str, reason: str) -> None:
        """Mark *check* as not run, unless something was observed for it already."""
        if check in self._seen and not self._seen[check]:
            self.add(check, Status.SKIP, reason)

    def summary(self, check: str, text: str) -> None:
        """The reason a PASS check reports (instead of its first observation)."""
        self._summary[check] = text

    def has(self, check: str) -> bool:
        return check in self._seen

    def observed(self, check: str) -> bool:
        return bool(self._seen.get(check))

    def status(self, check: str) -> Status | None:
        seen = self._seen.get(check)
        if not seen:
            return None
        return max(seen, key=lambda r: r.status.severity).status

    def results(self) -> list[CheckResult]:
        out: list[CheckResult] = []
        for name in self.order:
            seen = self._seen[name]
            if not seen:
                out.append(CheckResult(name, Status.SKIP, "not run"))
                continue
            worst = max(seen, key=lambda r: r.status.severity)
            first = next(r for r in seen if r.status is worst.status)
            if worst.status is Status.PASS and name in self._summary:
                first = CheckResult(name, Status.PASS, self._summary[name])
            out.append(first)
        return out


@attrs.frozen
class NodeInfo:
    """How one node reaches the LU, for the report.

    :param name: the node's name (``a``, ``b``, or the ``--node`` name).
    :param path: ``device``, ``multipath``, ``helper`` or ``manager``.
    :param description: one line: what it is and through which manager.
    :param key: the reservation key it used.
    """

    name: str
    path: str
    description: str
    key: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "key": None if self.key is None else f"0x{self.key:x}",
        }


@attrs.frozen
class CommandRecord:
    """One command sent: by which node, what, how long it took, and the answer."""

    node: str
    command: str
    elapsed: float
    answer: str
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "command": self.command,
            "elapsed_ms": round(self.elapsed * 1000, 3),
            "answer": self.answer,
            "timed_out": self.timed_out,
        }


@attrs.frozen
class Report:
    """The outcome of a run.

    :param profile: the profile's name.
    :param nodes: the nodes, in order.
    :param checks: every check of the profile, in report order.
    :param commands: every command sent, in order.
    :param refused: why the run did not start (the LU is in use), or ``None``.
    :param interrupted: the run was interrupted (SIGINT or SIGTERM).
    :param notes: lines the report prints after the table (approximations, warnings).
    """

    profile: str
    nodes: tuple[NodeInfo, ...]
    checks: tuple[CheckResult, ...] = ()
    commands: tuple[CommandRecord, ...] = ()
    refused: str | None = None
    interrupted: bool = False
    notes: tuple[str, ...] = ()

    def check(self, name: str) -> CheckResult:
        """The result of check *name*.

        :raises KeyError: if the profile has no such check.
        """
        for result in self.checks:
            if result.id == name:
                return result
        raise KeyError(name)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    @property
    def failed(self) -> bool:
        return any(c.status is Status.FAIL for c in self.checks)

    @property
    def exit_status(self) -> ExitStatus:
        if self.refused is not None:
            return ExitStatus.REFUSED
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        return ExitStatus.FAILED if self.failed else ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "nodes": [n.to_json() for n in self.nodes],
            "refused": self.refused,
            "interrupted": self.interrupted,
            "checks": [c.to_json() for c in self.checks],
            "summary": {s.value: self.count(s) for s in Status},
            "commands": [c.to_json() for c in self.commands],
            "notes": list(self.notes),
            "exit_status": int(self.exit_status),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    def render(self) -> str:
        """The human report: the nodes, a table of checks with hints, and a summary line."""
        lines = [f"qompr validate: profile {self.profile}, {len(self.nodes)} nodes"]
        for node in self.nodes:
            key = "" if node.key is None else f", key 0x{node.key:x}"
            lines.append(f"  node {node.name}: {node.description}{key}")
        if self.refused is not None:
            lines += ["", f"refused: {self.refused}"]
            return "\n".join(lines) + "\n"
        width = max([len("CHECK"), *(len(c.id) for c in self.checks)])
        lines += ["", f"{'CHECK':<{width}}  RESULT  REASON"]
        for c in self.checks:
            lines.append(f"{c.id:<{width}}  {c.status.value:<6}  {c.reason}")
            if c.hint and c.status in (Status.WARN, Status.FAIL):
                lines.append(f"{'':<{width}}          hint: {c.hint}")
        counts = ", ".join(f"{self.count(s)} {s.value}" for s in Status)
        lines += ["", f"{len(self.checks)} checks: {counts}"]
        if self.interrupted:
            lines.append("interrupted: the run stopped early; see 'restored' above")
        if self.notes:
            lines += ["", *(f"note: {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"
