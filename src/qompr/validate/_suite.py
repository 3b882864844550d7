# SPDX-License-Identifier: MIT
"""The suite: one sequence of PR commands from several nodes, checked step by step.

Order (each step adds observations to its checks; the profile chooses types and roles):

1. *preflight* — TEST UNIT READY where the path can send it; READ KEYS, READ RESERVATION and
   REPORT CAPABILITIES from every node.  A LU with registrations or a reservation is refused
   (nothing is sent) unless ``force``; with ``force`` only the steps that leave others'
   registrations alone run.
2. *register* — each node registers its own key; READ KEYS after each tells whether it took
   another node's place (one I_T nexus); then every node must read the same keys.
3. *reserve* — the first node reserves; the others must read that reservation.
4. *preempt* — one node preempts the other (the challenger takes the disk for ``wsfc``, the
   holder fences for the others); the preempted node must get a unit attention and, where the
   path can send one, RESERVATION CONFLICT for a WRITE; then it registers again.
5. *release*, 6. *unregister* (one node leaves and comes back), 7. *aptpl*, 8. *clear*.
9. *preempt-abort* — last, because some targets stop answering on it (LIO through tcm_loop
   on Linux 5.13+, docs/vm-testbed.md).

Then the LU is put back as it was found (keys of this run removed, the reservation released,
PTPL_A as it was), also after a failing step or KeyboardInterrupt, and checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from collections.abc import Sequence

from qompr.scsi import PrOutAction
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ReportCapabilitiesData
from qompr.validate._model import NodeInfo
from qompr.validate._model import Report
from qompr.validate._multipath import DEFAULT_MULTIPATH_CONF
from qompr.validate._multipath import configured_key
from qompr.validate._multipath import multipath_findings
from qompr.validate._nodes import Node
from qompr.validate._nodes import PathKind
from qompr.validate._profiles import PROFILES
from qompr.validate._profiles import Profile
from qompr.validate._restore import Restorer
from qompr.validate._session import Stop
from qompr.validate._session import new_key
from qompr.validate._steps import Steps
from qompr.validate._text import keys_text
from qompr.validate._text import nexus_hint
from qompr.validate._text import reservation_text
from qompr.validate._text import type_text

__all__ = ["SKIPPABLE", "Validator"]

#: What ``skip`` accepts, and what each takes with it (checks that need it).
SKIPPABLE: dict[str, tuple[str, ...]] = {
    "reserve": (
        "read-reservation",
        "preempt",
        "unit-attention",
        "write-conflict",
        "release",
        "preempt-abort",
    ),
    "preempt": ("write-conflict",),
    "preempt-abort": (),
    "unit-attention": (),
    "write-conflict": (),
    "release": (),
    "unregister": (),
    "aptpl": (),
    "clear": (),
    "multipath": (),
}
# Steps that would touch others' registrations or reservation (not run on a shared LU).
_DISTURBING = frozenset(
    {
        "reserve",
        "read-reservation",
        "preempt",
        "unit-attention",
        "write-conflict",
        "release",
        "aptpl",
        "clear",
        "preempt-abort",
    }
)


class Validator(Steps):
    """One run of the suite over *nodes*.

    :param nodes: two or more nodes (see :mod:`qompr.validate._nodes`); the caller closes them.
    :param profile: a profile or its name (``wsfc``, ``fence_scsi``, ``lvmpersist``).
    :param force: run on a LU with registrations or a reservation (only the steps that leave
        them alone).
    :param skip: check names not to run (keys of :data:`SKIPPABLE`).
    :param timeout: seconds each command may take before the node counts as wedged (the
        caller waits :data:`~qompr.validate._nodes.GRACE` more).
    :param multipath_conf: the multipath.conf the multipath check reads.
    :param keys: the key of each node (default: fresh ones, or multipath's configured key).
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        profile: Profile | str = "wsfc",
        *,
        force: bool = False,
        skip: Iterable[str] = (),
        timeout: float = 30.0,
        multipath_conf: str = DEFAULT_MULTIPATH_CONF,
        keys: Sequence[int] | None = None,
    ) -> None:
        if len(nodes) < 2:
            raise ValueError("a cluster needs at least two nodes")
        if len({n.name for n in nodes}) != len(nodes):
            raise ValueError("node names must differ")
        chosen = PROFILES[profile] if isinstance(profile, str) else profile
        super().__init__(nodes, chosen, timeout)
        self.force = force
        self.skip = frozenset(skip)
        unknown = self.skip - SKIPPABLE.keys()
        if unknown:
            raise ValueError(f"cannot skip: {', '.join(sorted(unknown))}")
        self.multipath_conf = multipath_conf
        self._given_keys = list(keys) if keys is not None else None
        self._refused: str | None = None
        self._interrupted = False
        self._stop: str | None = None

    # -- running -------------------------------------------------------------------------------

    def run(self) -> Report:
        """Run the suite and put the LU back; never raises for what the LU answers.

        A KeyboardInterrupt ends the steps, the LU is restored, and the report says
        ``interrupted``.
        """
        try:
            self._preflight()
            if self._refused is None and self._stop is None:
                self._register()
                self._steps()
        except Stop as stop:
            self._stop = stop.reason
        except KeyboardInterrupt:
            self._interrupted = True
            self._stop = "interrupted"
        except Exception as exc:  # a defect, or an error no step expected: report, restore
            self._stop = f"unexpected error: {exc!r}"
            self.notes.append(f"internal error during the run: {exc!r}")
        if self._refused is None:
            self._restore()
        self._finish()
        return Report(
            profile=self.profile.name,
            nodes=tuple(
                NodeInfo(n.name, n.kind.value, n.description, self.keys.get(n.name))
                for n in self.nodes
            ),
            checks=tuple(self.book.results()) if self._refused is None else (),
            commands=tuple(self.commands),
            refused=self._refused,
            interrupted=self._interrupted,
            notes=tuple(self.notes),
        )

    def _steps(self) -> None:
        steps = [
            ("reserve", self._reserve),
            ("preempt", self._preempt),
            ("release", self._release),
            ("unregister", self._unregister),
            ("aptpl", self._aptpl),
            ("clear", self._clear),
            ("preempt-abort", self._preempt_abort),
        ]
        skipped = set(self.skip)
        for name in self.skip:
            skipped.update(SKIPPABLE[name])
        for name, step in steps:
            if not self.book.has(name):
                continue
            if name in skipped:
                self.book.skip(name, "skipped on request (--skip)")
                for dependent in SKIPPABLE.get(name, ()):
                    self.book.skip(dependent, f"not run: needs '{name}', which was skipped")
                continue
            if self.shared and name in _DISTURBING:
                continue
            self.current = name
            step()

    # -- 1. preflight ------------------------------------------------------------------------

    def _preflight(self) -> None:
        self.current = "read-keys"
        book = self.book
        views: list[tuple[Node, ReadKeysData, ReadReservationData | None]] = []
        caps: list[tuple[Node, ReportCapabilitiesData]] = []
        for node in self.nodes:
            self.tur(node)  # consume what is pending (a power-on reset, old preemptions)
            answer, keys = self.read_keys(node)
            self.alive(answer, node, "READ KEYS")
            if keys is None:
                self.refused("read-keys", node, "READ KEYS", answer)
            answer, res = self.read_reservation(node)
            self.alive(answer, node, "READ RESERVATION")
            answer, cap = self.capabilities(node)
            self.alive(answer, node, "REPORT CAPABILITIES")
            if cap is None:
                self.refused("capabilities", node, "REPORT CAPABILITIES", answer)
            else:
                caps.append((node, cap))
            if keys is not None:
                views.append((node, keys, res))
        self._check_capabilities(caps)
        if len(views) < len(self.nodes):
            raise Stop(
                "the LU's registrations could not be read from every node, so nothing was changed"
            )
        self.caps = caps[0][1] if caps else None
        self.initial_ptpl = bool(self.caps and self.caps.ptpl_a)
        first_keys, first_res = views[0][1].keys, views[0][2]
        self.initial_keys = first_keys
        self.initial_res = first_res
        in_use = [
            (node, keys, res)
            for node, keys, res in views
            if keys.keys or (res is not None and res.has_reservation)
        ]
        if in_use:
            node, keys, res = in_use[0]
            what = keys_text(keys.keys)
            if res is not None and res.has_reservation:
                what += f" and a reservation ({reservation_text(res)})"
            if not self.force:
                self._refused = (
                    f"node {node.name} sees {what}: the LU is in use, so validate changes "
                    "nothing (run it on a LU no cluster uses yet, or give --force to run only "
                    "the checks that leave others' registrations alone)"
                )
                return
            self.shared = True
            self.notes.append(
                f"--force: the LU had {what}; the steps that would disturb them were not run"
            )
            for check in _DISTURBING:
                book.skip(check, "not run: the LU has others' registrations (--force)")
        self._choose_keys()

    def _check_capabilities(self, caps: list[tuple[Node, ReportCapabilitiesData]]) -> None:
        book, profile = self.book, self.profile
        if not caps:
            return
        first = caps[0][1]
        for node, cap in caps[1:]:
            if cap != first:
                book.warn(
                    "capabilities",
                    f"nodes {caps[0][0].name} and {node.name} read different REPORT "
                    f"CAPABILITIES ({first.to_bytes().hex()} and {cap.to_bytes().hex()})",
                    "The nodes may not reach the same LU, or a path rewrites the answer",
                )
        if not first.tmv:
            book.warn(
                "capabilities",
                "TMV=0: the target does not say which reservation types it supports",
                "Clusters that check the type mask (lvmpersist) refuse such a LU",
            )
            return
        names = " ".join(t.name for t in sorted(first.types))
        missing = profile.required_types - first.types
        if missing:
            book.fail(
                "capabilities",
                f"{type_text(min(missing))} not advertised (types: {names or 'none'})",
                f"{profile.title} reserves with {type_text(profile.reservation_type)}; "
                "the target (or its firmware settings) must support it",
            )
        lacking = profile.wanted_types - first.types
        if lacking:
            book.warn(
                "capabilities",
                f"{type_text(min(lacking))} not advertised (types: {names})",
                f"{profile.title} may use it: see docs/validate.md",
            )
        book.passed(
            "capabilities",
            f"types {names} on every node; {profile.name} reserves with "
            f"{profile.reservation_type.name}",
        )

    def _choose_keys(self) -> None:
        taken = set(self.initial_keys)
        for index, node in enumerate(self.nodes):
            key: int | None = None
            if self._given_keys is not None and index < len(self._given_keys):
                key = self._given_keys[index]
            elif node.kind is PathKind.MULTIPATH and node.device is not None:
                key = configured_key(node.device)
                if key is not None:
                    self.notes.append(
                        f"node {node.name} uses multipath's configured reservation_key "
                        f"0x{key:x} (libmpathpersist refuses any other)"
                    )
            if key is None:
                key = new_key(taken | set(self.keys.values()))
            if key in self.keys.values() or key in taken:
                raise Stop(f"node {node.name}'s key 0x{key:x} is not its own")
            self.keys[node.name] = key

    # -- 2. register -------------------------------------------------------------------------

    def _register(self) -> None:
        self.current = "register"
        book, profile = self.book, self.profile
        action = PrOutAction.REGISTER if self.shared else profile.register_action
        counts = Counter(self.initial_keys)
        overlaps: list[tuple[Node, Node]] = []
        for index, node in enumerate(self.nodes):
            key = self.keys[node.name]
            before = self.generation_seen
            answer = self.out(node, action, sark=key)
            self.alive(answer, node, "REGISTER")
            if answer.conflict and action is PrOutAction.REGISTER and not self.shared:
                # Its I_T nexus is registered already: find out whose key it replaces.
                answer = self.out(node, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=key)
                self.alive(answer, node, "REGISTER AND IGNORE EXISTING KEY")
            if not answer.ok:
                self.refused("register", node, "REGISTER", answer)
                if answer.conflict and self.shared:
                    book.skip("distinct-nexus", "not checkable on a LU in use (--force)")
                raise Stop(f"node {node.name} could not register")
            answer, data = self.read_keys(node)
            self.alive(answer, node, "READ KEYS")
            if data is None:
                self.refused("read-keys", node, "READ KEYS after REGISTER", answer)
                raise Stop(f"node {node.name} could not read the keys")
            now = Counter(data.keys)
            if now[key] == 0:
                book.fail(
                    "register",
                    f"node {node.name}'s REGISTER was GOOD but READ KEYS does not list 0x{key:x}",
                    "The target acknowledged a registration it did not keep",
                )
                raise Stop(f"node {node.name}'s key is missing")
            for other in self.nodes[:index]:
                other_key = self.keys[other.name]
                if now[other_key] < counts[other_key]:
                    overlaps.append((other, node))
            self.generation(f"node {node.name}'s REGISTER", before, data.generation)
            counts = now
        book.passed(
            "register",
            f"{len(self.nodes)} nodes registered with {action.name.replace('_', ' ')} and "
            "their own keys",
        )
        if overlaps:
            first, second = overlaps[0]
            book.fail(
                "distinct-nexus",
                f"nodes {first.name} and {second.name} are one I_T nexus: {second.name}'s "
                f"registration replaced {first.name}'s, so a reservation one takes is held by "
                "both and neither can fence the other",
                nexus_hint(first, second),
            )
            raise Stop(f"nodes {first.name} and {second.name} are one I_T nexus")
        book.passed("distinct-nexus", f"{len(self.nodes)} nodes, {len(self.nodes)} registrations")
        self._keys_alike()

    def _keys_alike(self) -> None:
        self.current = "read-keys"
        book = self.book
        ours = {self.keys[n.name] for n in self.nodes}
        seen: list[tuple[Node, ReadKeysData]] = []
        for node in self.nodes:
            answer, data = self.read_keys(node)
            self.alive(answer, node, "READ KEYS")
            if data is None:
                self.refused("read-keys", node, "READ KEYS", answer)
                continue
            missing = ours - set(data.keys)
            if missing:
                book.fail(
                    "read-keys",
                    f"node {node.name} does not see {keys_text(sorted(missing))}",
                    "The nodes must reach one LU (the same WWID); a gateway that keeps PR "
                    "state per gateway (several iSCSI gateways) gives each path its own view",
                )
            seen.append((node, data))
        if len(seen) > 1:
            first_node, first = seen[0]
            for node, data in seen[1:]:
                if Counter(data.keys) != Counter(first.keys) or data.generation != first.generation:
                    book.warn(
                        "read-keys",
                        f"nodes {first_node.name} and {node.name} read different keys or "
                        f"generations (0x{first.generation:x}, 0x{data.generation:x})",
                        "Another initiator may be changing the LU during the run",
                    )
        book.passed(
            "read-keys",
            f"every node reads the {len(ours)} keys and PRgeneration 0x{seen[0][1].generation:x}"
            if seen
            else "",
        )

    # -- the end ---------------------------------------------------------------------------

    def _restore(self) -> None:
        restorer = Restorer(self)
        try:
            restorer.run()
        except KeyboardInterrupt:
            self._interrupted = True
            self.book.fail(
                "restored",
                "interrupted again while restoring the LU",
                restorer.manual_hint(),
            )

    def _finish(self) -> None:
        book, profile = self.book, self.profile
        if book.has("generation") and not book.observed("generation") and self.bumps:
            book.passed(
                "generation",
                f"advanced after each of {self.bumps} REGISTER, PREEMPT and CLEAR commands",
            )
        self._latency()
        if book.has("multipath") and "multipath" not in self.skip:
            self._multipath()
        elif "multipath" in self.skip:
            book.skip("multipath", "skipped on request (--skip)")
        reason = f"not run: {self._stop}" if self._stop else "not run"
        for check in profile.checks:
            book.skip(check, reason)

    def _latency(self) -> None:
        book, profile = self.book, self.profile
        timed = [c for c in self.commands if c.elapsed > 0 or c.timed_out]
        if not timed:
            return
        slowest = max(timed, key=lambda c: c.elapsed)
        text = f"slowest: {slowest.command} from {slowest.node}, {slowest.elapsed * 1000:.0f} ms"
        allows = f"{profile.name} allows {profile.latency_fail:g} s ({profile.latency_source})"
        stuck = [c for c in timed if c.timed_out]
        if stuck:
            book.fail(
                "latency",
                f"{stuck[0].command} from {stuck[0].node}: no answer "
                f"(given up after {stuck[0].elapsed:.1f} s)",
                f"A cluster gives up on such a command: {allows}",
            )
        elif slowest.elapsed > profile.latency_fail:
            book.fail(
                "latency",
                f"{text}, over {profile.latency_fail:g} s",
                f"Commands this slow make the cluster give up ({allows}); look at the path "
                "(multipath failover, an overloaded gateway, a helper that queues)",
            )
        elif slowest.elapsed > profile.latency_warn:
            book.warn(
                "latency",
                f"{text}, over {profile.latency_warn:g} s",
                f"Still within what {allows}, but with little headroom",
            )
        else:
            book.passed("latency", f"{len(timed)} commands; {text}")

    def _multipath(self) -> None:
        book = self.book
        maps = [n for n in self.nodes if n.kind is PathKind.MULTIPATH and n.device]
        if not maps:
            book.skip("multipath", "no node reaches the LU through a dm-multipath map")
            return
        for node in maps:
            assert node.device is not None
            findings = multipath_findings(node.device, self.multipath_conf)
            bad = [f for f in findings if not f[1] and f[0] != "libmpathpersist"]
            bad += [f for f in findings if not f[1] and f[0] == "libmpathpersist"]
            if bad:
                name, _, detail, hint = bad[0]
                book.fail("multipath", f"node {node.name} ({node.device}): {name}: {detail}", hint)
            else:
                details = "; ".join(f[2] for f in findings if f[0] != "libmpathpersist")
                book.passed("multipath", f"node {node.name}: {details}")
