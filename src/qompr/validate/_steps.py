# SPDX-License-Identifier: MIT
"""Steps 3 to 9 of the suite: reserve, preempt, release, unregister, APTPL, clear, PREEMPT AND
ABORT (see :mod:`qompr.validate._suite` for the order and why PREEMPT AND ABORT is last).

Each step sends its commands from the nodes the profile's roles name, reads the LU back from
the nodes that must see the effect, and adds PASS, WARN or FAIL observations to its checks;
it raises :class:`~qompr.validate._session.Stop` when the rest would mean nothing.
"""

from __future__ import annotations

from qompr.scsi import PrOutAction
from qompr.validate._nodes import Node
from qompr.validate._session import Session
from qompr.validate._session import Stop
from qompr.validate._session import all_registrants
from qompr.validate._session import multipath_note
from qompr.validate._text import answer_hint
from qompr.validate._text import keys_text
from qompr.validate._text import reservation_text
from qompr.validate._text import type_text

__all__ = ["Steps"]


class Steps(Session):
    """The PR steps after registration."""

    # -- 3. reserve --------------------------------------------------------------------------

    def _reserve(self) -> None:
        book, type_ = self.book, self.profile.reservation_type
        holder = self.nodes[0]
        answer = self.out(holder, PrOutAction.RESERVE, type_=type_, rk=self.keys[holder.name])
        self.alive(answer, holder, "RESERVE")
        if not answer.ok:
            self.refused("reserve", holder, f"RESERVE {type_.name}", answer, type_)
            raise Stop("the reservation failed")
        if not self._reservation_seen(holder, holder, "reserve"):
            raise Stop("the reservation is not read back")
        book.passed("reserve", f"node {holder.name} holds {type_text(type_)}")
        if all_registrants(type_):
            other = self.nodes[1]
            answer = self.out(other, PrOutAction.RESERVE, type_=type_, rk=self.keys[other.name])
            self.alive(answer, other, "RESERVE")
            if not answer.ok:
                book.warn(
                    "reserve",
                    f"node {other.name}'s RESERVE of the {type_.name} reservation it shares "
                    f"answered {answer.describe()}",
                    "SPC-4 makes it a no-op; tools that do not read the reservation first fail",
                )
        for node in self.nodes[1:]:
            self._reservation_seen(node, holder, "read-reservation")
        book.passed(
            "read-reservation",
            f"{len(self.nodes) - 1} other node(s) read {type_.name} held by {holder.name}",
        )

    def _reservation_seen(self, node: Node, holder: Node, check: str) -> bool:
        """Whether *node* reads the reservation *holder* holds (FAIL in *check* if not)."""
        type_ = self.profile.reservation_type
        answer, res = self.read_reservation(node)
        self.alive(answer, node, "READ RESERVATION")
        if res is None:
            self.refused(check, node, "READ RESERVATION", answer)
            return False
        key = self.keys[holder.name]
        want_keys = {0, *self.keys.values()} if all_registrants(type_) else {key}
        if not res.has_reservation or res.type != type_ or res.reservation_key not in want_keys:
            found = reservation_text(res) if res.has_reservation else "no reservation"
            self.book.fail(
                check,
                f"node {node.name} reads {found}; {holder.name} holds {type_.name} with key "
                f"0x{key:x}",
                "Windows reports this as 'Failed to read PR ... Some PR implementations fail to "
                "report existing PR on a disk': the nodes must see one LU's state",
            )
            return False
        return True

    # -- 4. preempt --------------------------------------------------------------------------

    def _roles(self) -> tuple[Node, Node]:
        """(survivor, victim): the challenger takes the disk, or the holder fences."""
        a, b = self.nodes[0], self.nodes[1]
        return (b, a) if self.profile.challenger_preempts else (a, b)

    def _preempt(self) -> None:
        book, type_ = self.book, self.profile.reservation_type
        survivor, victim = self._roles()
        ks, kv = self.keys[survivor.name], self.keys[victim.name]
        mark = self.ua_mark(victim)
        before = self.generation_seen
        answer = self.out(survivor, PrOutAction.PREEMPT, type_=type_, rk=ks, sark=kv)
        self.alive(answer, survivor, "PREEMPT")
        if not answer.ok:
            self.refused("preempt", survivor, f"PREEMPT of {victim.name}'s key", answer, type_)
            raise Stop("PREEMPT failed")
        if book.has("unit-attention") and "unit-attention" not in self.skip:
            self.probe_ua(victim, mark, "unit-attention", f"{survivor.name}'s PREEMPT")
        self._removed(survivor, victim, "preempt", "PREEMPT", before)
        if book.has("write-conflict") and "write-conflict" not in self.skip:
            self._write_conflict(survivor, victim)
        self._rejoin(victim)

    def _removed(
        self, survivor: Node, victim: Node, check: str, what: str, before: int | None
    ) -> None:
        """After *what*, the victim's key is gone and the survivor holds the reservation."""
        type_ = self.profile.reservation_type
        answer, data = self.read_keys(survivor)
        self.alive(answer, survivor, "READ KEYS")
        kv = self.keys[victim.name]
        if data is None or kv in data.keys or self.keys[survivor.name] not in data.keys:
            found = keys_text(data.keys) if data is not None else answer.describe()
            self.book.fail(
                check,
                f"after {survivor.name}'s {what} of 0x{kv:x} the keys are: {found}",
                "The target answered GOOD but did not remove the preempted registration: "
                "fencing through it does not fence",
            )
            raise Stop(f"{what} did not remove the key")
        self.generation(what, before, data.generation)
        if not self._reservation_seen(survivor, survivor, check):
            raise Stop(f"the reservation after {what} is wrong")
        self.book.passed(
            check,
            f"{survivor.name} removed {victim.name}'s key and holds {type_.name}",
        )

    def _write_conflict(self, survivor: Node, victim: Node) -> None:
        book = self.book
        probe = victim.write_probe(self.timeout)
        if probe is None:
            book.skip(
                "write-conflict",
                f"not checkable through node {victim.name}'s path ({victim.kind.value}): only "
                "PR commands go through it; the guest's WRITEs go to the device",
            )
            return
        self.record(victim, "WRITE(10) of block 0 with its own bytes", probe)
        self.alive(probe, victim, "WRITE")
        if probe.result is None:
            book.warn(
                "write-conflict",
                f"not checked: node {victim.name} could not read block 0 ({probe.error})",
                "The check reads one block and writes the same bytes back",
            )
            return
        if not probe.conflict:
            book.fail(
                "write-conflict",
                f"node {victim.name}'s WRITE after being preempted answered {probe.describe()}, "
                "not RESERVATION CONFLICT",
                "A fenced node can still write: the target does not enforce the reservation "
                "(or the path does not reach the reserved LU)",
            )
            return
        mine = survivor.write_probe(self.timeout)
        if mine is not None:
            self.record(survivor, "WRITE(10) of block 0 with its own bytes", mine)
            self.alive(mine, survivor, "WRITE")
            if not mine.ok:
                book.fail(
                    "write-conflict",
                    f"the holder {survivor.name}'s WRITE answered {mine.describe()}",
                    "The node holding the reservation must be able to write",
                )
                return
        book.passed(
            "write-conflict",
            f"{victim.name}'s WRITE: RESERVATION CONFLICT; {survivor.name}'s: GOOD",
        )

    def _rejoin(self, node: Node) -> None:
        before = self.generation_seen
        answer = self.out(node, self.profile.register_action, sark=self.keys[node.name])
        self.alive(answer, node, "REGISTER")
        if not answer.ok:
            self.book.fail(
                "register",
                f"node {node.name} could not register again: {answer.describe()}",
                answer_hint(node, answer),
            )
            raise Stop(f"node {node.name} could not register again")
        answer, data = self.read_keys(node)
        self.alive(answer, node, "READ KEYS")
        if data is not None:
            self.generation(f"node {node.name}'s REGISTER", before, data.generation)

    # -- 5.-8. release, unregister, aptpl, clear -------------------------------------------------

    def _release(self) -> None:
        type_ = self.profile.reservation_type
        holder = self._roles()[0] if self.book.observed("preempt") else self.nodes[0]
        answer = self.out(holder, PrOutAction.RELEASE, type_=type_, rk=self.keys[holder.name])
        self.alive(answer, holder, "RELEASE")
        if not answer.ok:
            self.refused("release", holder, f"RELEASE {type_.name}", answer, type_)
            raise Stop("RELEASE failed")
        for node in self.nodes:
            answer, res = self.read_reservation(node)
            self.alive(answer, node, "READ RESERVATION")
            if res is None or res.has_reservation:
                found = reservation_text(res) if res is not None else answer.describe()
                self.book.fail(
                    "release",
                    f"after {holder.name}'s RELEASE node {node.name} reads {found}",
                    "The reservation stayed: the cluster cannot hand the disk over cleanly",
                )
                raise Stop("the reservation stayed")
        self.book.passed("release", f"{holder.name} released; every node reads no reservation")

    def _unregister(self) -> None:
        node = self.nodes[-1]
        key = self.keys[node.name]
        answer = self.out(node, PrOutAction.REGISTER, rk=key, sark=0)
        self.alive(answer, node, "REGISTER (unregister)")
        reader = self.nodes[0]
        check, data = self.read_keys(reader)
        self.alive(check, reader, "READ KEYS")
        if not answer.ok or data is None or key in data.keys:
            found = answer.describe() if not answer.ok else "the key is still listed"
            self.book.fail(
                "unregister",
                f"node {node.name}'s unregister (REGISTER with SERVICE ACTION RESERVATION KEY "
                f"0): {found}",
                "A node leaving the cluster must be able to remove its key",
            )
            raise Stop("unregister failed")
        self.book.passed("unregister", f"node {node.name}'s key is gone after it unregistered")
        self._rejoin(node)

    def _aptpl(self) -> None:
        node, profile = self.nodes[0], self.profile
        key = self.keys[node.name]
        capable = bool(self.caps and self.caps.ptpl_c)
        if profile.register_action is PrOutAction.REGISTER:
            answer = self.out(node, PrOutAction.REGISTER, rk=key, sark=key, aptpl=True)
        else:
            answer = self.out(node, profile.register_action, sark=key, aptpl=True)
        self.alive(answer, node, "REGISTER with APTPL")
        if not answer.ok:
            status_add = self.book.fail if capable or profile.aptpl_required else self.book.warn
            status_add(
                "aptpl",
                f"REGISTER with APTPL answered {answer.describe()}"
                + (" although PTPL_C=1" if capable else " (PTPL_C=0)"),
                "Registrations will not survive a power loss of the target; fence_scsi --aptpl "
                "and lvmpersist --ptpl need it" + multipath_note(node, _APTPL_MULTIPATH_NOTE),
            )
            return
        _, caps = self.capabilities(node)
        reported = caps is not None and caps.ptpl_a
        restore = self.out(node, PrOutAction.REGISTER, rk=key, sark=key, aptpl=self.initial_ptpl)
        self.alive(restore, node, "REGISTER")
        if not reported:
            self.book.fail(
                "aptpl",
                "REGISTER with APTPL was GOOD but REPORT CAPABILITIES does not show PTPL_A",
                "The target accepts APTPL without persisting: registrations may be lost on a "
                "power cycle",
            )
            return
        self.book.passed("aptpl", "REGISTER with APTPL accepted; PTPL_A reported")

    def _clear(self) -> None:
        node = self.nodes[0]
        before = self.generation_seen
        answer = self.out(node, PrOutAction.CLEAR, rk=self.keys[node.name])
        self.alive(answer, node, "CLEAR")
        if not answer.ok:
            self.refused("clear", node, "CLEAR", answer)
            raise Stop("CLEAR failed")
        for reader in self.nodes:
            rk, keys = self.read_keys(reader)
            self.alive(rk, reader, "READ KEYS")
            rr, res = self.read_reservation(reader)
            self.alive(rr, reader, "READ RESERVATION")
            if keys is None or keys.keys or res is None or res.has_reservation:
                self.book.fail(
                    "clear",
                    f"after CLEAR node {reader.name} reads "
                    + (keys_text(keys.keys) if keys is not None else rk.describe()),
                    "CLEAR must remove every registration and the reservation",
                )
                raise Stop("CLEAR left state behind")
            if reader is node:
                self.generation("CLEAR", before, keys.generation)
        self.book.passed("clear", "no registrations and no reservation on any node after CLEAR")

    # -- 9. preempt and abort ----------------------------------------------------------------

    def _preempt_abort(self) -> None:
        book, type_ = self.book, self.profile.reservation_type
        survivor, victim = self.nodes[0], self.nodes[1]
        ks, kv = self.keys[survivor.name], self.keys[victim.name]
        for node in (survivor, victim):
            answer, data = self.read_keys(node)
            self.alive(answer, node, "READ KEYS")
            if data is not None and self.keys[node.name] not in data.keys:
                self._rejoin(node)
        answer, res = self.read_reservation(survivor)
        self.alive(answer, survivor, "READ RESERVATION")
        if res is None or not res.has_reservation:
            answer = self.out(survivor, PrOutAction.RESERVE, type_=type_, rk=ks)
            self.alive(answer, survivor, "RESERVE")
        mark = self.ua_mark(victim)
        before = self.generation_seen
        answer = self.out(survivor, PrOutAction.PREEMPT_AND_ABORT, type_=type_, rk=ks, sark=kv)
        if answer.wedged:
            book.fail(
                "preempt-abort",
                f"node {survivor.name}'s PREEMPT AND ABORT got no answer (given up after "
                f"{answer.elapsed:.1f} s); the LU stopped answering",
                "Fencing would hang on this target.  LIO through tcm_loop deadlocks on PREEMPT "
                "AND ABORT on Linux 5.13 and later (docs/validate.md); elsewhere ask the "
                "target's vendor",
            )
            raise Stop("PREEMPT AND ABORT got no answer")
        if not answer.ok:
            self.refused("preempt-abort", survivor, "PREEMPT AND ABORT", answer, type_)
            raise Stop("PREEMPT AND ABORT failed")
        if book.has("unit-attention") and "unit-attention" not in self.skip:
            self.probe_ua(victim, mark, "unit-attention", f"{survivor.name}'s PREEMPT AND ABORT")
        self._removed(survivor, victim, "preempt-abort", "PREEMPT AND ABORT", before)


_APTPL_MULTIPATH_NOTE = (
    "; through multipath, libmpathpersist refuses APTPL while multipath.conf sets no "
    "reservation_key (seen with multipath-tools 0.9.4)"
)
