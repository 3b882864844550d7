# SPDX-License-Identifier: MIT
"""The commands of a run: sending, unit attentions, reading the LU, and what all steps share.

:class:`Session` holds a run's state (nodes, keys, what was found at the start, every command
sent and how long it took, the unit attentions each node got) and the ways to talk to the LU.
Every command goes to a node's manager (:mod:`qompr.validate._nodes`); a command answered
with a unit attention is sent again, at most :data:`MAX_UA_RETRIES` times, as an initiator's
SCSI layer does (SPC-4 §5.14: the UNIT ATTENTION condition is reported instead of executing
the command, and reporting it clears it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TypeVar

from qompr.errors import ScsiError
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import SenseCode
from qompr.validate._model import CheckBook
from qompr.validate._model import CommandRecord
from qompr.validate._nodes import Answer
from qompr.validate._nodes import Node
from qompr.validate._nodes import PathKind
from qompr.validate._profiles import Profile
from qompr.validate._text import answer_hint

__all__ = [
    "ALLOCATION",
    "KEY_PREFIX",
    "MAX_UA_RETRIES",
    "Session",
    "Stop",
    "all_registrants",
    "new_key",
]

#: A unit attention is reported and cleared per command: retry this often at most.
MAX_UA_RETRIES = 3
#: PR IN allocation length (qemu-pr-helper's data buffer).
ALLOCATION = 8192
#: The high half of every key this suite makes: ASCII "qomp", so an admin can tell them.
KEY_PREFIX = 0x716F6D70

_REGISTRATIONS_PREEMPTED = SenseCode.REGISTRATIONS_PREEMPTED


def new_key(taken: Iterable[int] = ()) -> int:
    """A fresh key: ``0x716f6d70`` ("qomp") then 32 random bits, none of *taken*."""
    used = set(taken)
    while True:
        key = (KEY_PREFIX << 32) | secrets.randbits(32)
        if key not in used:
            return key


_Data = TypeVar("_Data", ReadKeysData, ReadReservationData, ReportCapabilitiesData)


class Stop(Exception):  # noqa: N818  (ends the steps; not an error of the caller)
    """Ends the steps: the rest would mean nothing (reason given)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def all_registrants(type_: PrType) -> bool:
    return type_ in (PrType.WE_AR, PrType.EA_AR)


class Session:
    """The state of one run and the commands it sends.

    :param nodes: the nodes, in order.
    :param profile: the profile.
    :param timeout: seconds each command may take.
    """

    def __init__(self, nodes: Sequence[Node], profile: Profile, timeout: float) -> None:
        self.nodes = list(nodes)
        self.profile = profile
        self.timeout = timeout
        #: Checks not to run (asked by the caller).
        self.skip: frozenset[str] = frozenset()
        self.book = CheckBook(profile.checks)
        #: Each node's key, by node name.
        self.keys: dict[str, int] = {}
        self.commands: list[CommandRecord] = []
        self.uas: dict[str, list[SenseCode]] = {n.name: [] for n in self.nodes}
        self.notes: list[str] = list(profile.notes)
        #: A PR OUT was sent: the LU needs restoring.
        self.changed = False
        #: The LU had others' registrations or reservation (``force``).
        self.shared = False
        self.initial_keys: tuple[int, ...] = ()
        self.initial_res: ReadReservationData | None = None
        self.initial_ptpl = False
        self.caps: ReportCapabilitiesData | None = None
        #: The last PRgeneration read, and how many times it advanced as it must.
        self.generation_seen: int | None = None
        self.bumps = 0
        #: The check the running step is about (a node that stops answering FAILs it).
        self.current: str | None = None

    # -- commands --------------------------------------------------------------------------

    def record(self, node: Node, label: str, answer: Answer) -> None:
        self.commands.append(
            CommandRecord(node.name, label, answer.elapsed, answer.describe(), answer.wedged)
        )

    def send(
        self, node: Node, label: str, cdb: bytes, data: bytes = b"", *, shield: bool = False
    ) -> Answer:
        """One command, repeated while it reports a unit attention (recorded per node)."""
        if node.wedged:
            answer = Answer(None, 0.0, "not sent: an earlier command on this node never ended")
            self.record(node, label, answer)
            return answer
        answer = Answer(None, 0.0, "not sent")
        for _ in range(MAX_UA_RETRIES + 1):
            answer = node.execute(cdb, data, self.timeout, shield=shield)
            self.record(node, label, answer)
            ua = answer.unit_attention
            if ua is None:
                break
            self.uas[node.name].append(ua)
        return answer

    def tur(self, node: Node, *, shield: bool = False) -> Answer | None:
        """TEST UNIT READY (repeated while it reports a unit attention), if the path can."""
        answer: Answer | None = None
        for _ in range(MAX_UA_RETRIES + 1):
            if node.wedged:
                return None
            answer = node.test_unit_ready(self.timeout, shield=shield)
            if answer is None:
                return None
            self.record(node, "TEST UNIT READY", answer)
            ua = answer.unit_attention
            if ua is None:
                break
            self.uas[node.name].append(ua)
        return answer

    def out(
        self,
        node: Node,
        action: PrOutAction,
        *,
        type_: PrType | int = 0,
        rk: int = 0,
        sark: int = 0,
        aptpl: bool | None = None,
        shield: bool = False,
    ) -> Answer:
        registering = action in (
            PrOutAction.REGISTER,
            PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
        )
        # Every REGISTER carries the APTPL the LU had: LIO's PTPL_A follows the last one.
        flag = (self.initial_ptpl if aptpl is None else aptpl) if registering else False
        params = PrOutParameters(reservation_key=rk, sa_key=sark, aptpl=flag).to_bytes()
        cdb = PrOutCdb(action, PrScope.LU_SCOPE, type_, len(params)).to_bytes()
        label = action.name.replace("_", " ")
        if type_:
            label += f" {PrType(type_).name}"
        label += f" RK=0x{rk:x} SARK=0x{sark:x}" + (" APTPL" if flag else "")
        self.changed = True
        return self.send(node, f"PR OUT {label}", cdb, params, shield=shield)

    def pr_in(self, node: Node, action: PrInAction, *, shield: bool = False) -> Answer:
        cdb = PrInCdb(action, ALLOCATION).to_bytes()
        return self.send(node, f"PR IN {action.name.replace('_', ' ')}", cdb, shield=shield)

    def read_keys(self, node: Node, *, shield: bool = False) -> tuple[Answer, ReadKeysData | None]:
        answer, data = self._pr_in_data(node, PrInAction.READ_KEYS, ReadKeysData, shield)
        if data is not None:
            self.generation_seen = data.generation
        return answer, data

    def read_reservation(
        self, node: Node, *, shield: bool = False
    ) -> tuple[Answer, ReadReservationData | None]:
        return self._pr_in_data(node, PrInAction.READ_RESERVATION, ReadReservationData, shield)

    def capabilities(
        self, node: Node, *, shield: bool = False
    ) -> tuple[Answer, ReportCapabilitiesData | None]:
        return self._pr_in_data(
            node, PrInAction.REPORT_CAPABILITIES, ReportCapabilitiesData, shield
        )

    def _pr_in_data(
        self, node: Node, action: PrInAction, kind: type[_Data], shield: bool
    ) -> tuple[Answer, _Data | None]:
        """A PR IN and its data decoded as *kind* (``None`` unless GOOD and well formed)."""
        answer = self.pr_in(node, action, shield=shield)
        if not answer.ok or answer.result is None:
            return answer, None
        try:
            return answer, kind.from_bytes(answer.result.data)
        except ScsiError:
            return answer, None

    def refused(
        self, check: str, node: Node, what: str, answer: Answer, type_: PrType | None = None
    ) -> None:
        """A FAIL of *check*: *node*'s *what* got *answer* instead of the one asked for, with
        what to look at (:func:`~qompr.validate._text.answer_hint`)."""
        self.book.fail(
            check, f"node {node.name}: {what} answered {answer.describe()}",
            answer_hint(node, answer, type_),
        )  # fmt: skip

    def alive(self, answer: Answer, node: Node, what: str) -> None:
        """Stop the steps when *node* got no answer: the LU or its path stopped answering
        (a FAIL of the check the step is about)."""
        if answer.wedged:
            reason = (
                f"node {node.name}'s {what} got no answer ({answer.describe()}): the LU or the "
                "path to it stopped answering"
            )
            if self.current is not None:
                self.book.fail(self.current, reason, answer_hint(node, answer))
            raise Stop(reason)

    def generation(self, label: str, before: int | None, after: int | None) -> None:
        """A REGISTER, PREEMPT or CLEAR must advance PRgeneration (SPC-4 §6.16.2)."""
        if before is None or after is None:
            return
        if 0 < (after - before) % (1 << 32) < (1 << 31):
            self.bumps += 1
            return
        self.book.fail(
            "generation",
            f"PRgeneration stayed 0x{before:x} across {label}"
            + ("" if after == before else f" (now 0x{after:x})"),
            "Clusters read PRgeneration to notice that registrations changed; the target does "
            "not advance it as SPC-4 requires: ask its vendor",
        )

    def ua_mark(self, node: Node) -> int:
        return len(self.uas[node.name])

    def probe_ua(self, node: Node, mark: int, check: str, event: str) -> None:
        """The node's next command must report the unit attention of *event*, once."""
        answer = self.tur(node)
        if answer is None:  # the path sends PR commands only: the next one gets it
            answer = self.pr_in(node, PrInAction.READ_KEYS)
        self.alive(answer, node, "first command after " + event)
        seen = self.uas[node.name][mark:]
        if answer.unit_attention is not None:
            self.book.fail(
                check,
                f"node {node.name} got UNIT ATTENTION {MAX_UA_RETRIES + 1} times after {event}: "
                "it is never cleared",
                "Every command fails while the unit attention stays; check the target (or the "
                "helper) passes REQUEST SENSE / autosense through",
            )
        elif _REGISTRATIONS_PREEMPTED in seen:
            self.book.passed(
                check, f"node {node.name} got REGISTRATIONS PREEMPTED once after {event}"
            )
        elif seen:
            codes = ", ".join(str(c) for c in seen)
            self.book.warn(
                check,
                f"node {node.name} got {codes} after {event}, not REGISTRATIONS PREEMPTED",
                "A fenced node learns why from this unit attention; the target words it "
                "differently from SPC-4 (2Ah/05h)",
            )
        else:
            self.book.warn(
                check,
                f"node {node.name} got no unit attention after {event}",
                "The node learns it was fenced only when a write fails; SPC-4 has the target "
                "queue REGISTRATIONS PREEMPTED for it" + multipath_note(node, _UA_MULTIPATH_NOTE),
            )


_UA_MULTIPATH_NOTE = (
    " (libmpathpersist retries unit attentions itself; TEST UNIT READY on the map reaches one path)"
)


def multipath_note(node: Node, note: str) -> str:
    """*note* when *node* reaches the LU through dm-multipath, else nothing."""
    return note if node.kind is PathKind.MULTIPATH else ""
