# SPDX-License-Identifier: MIT
"""Putting the LU back as the run found it, and saying whether that worked.

Runs after the steps however they ended (a FAIL, a node that stopped answering,
KeyboardInterrupt).  Commands wait through a further KeyboardInterrupt ("shielded") and are
bounded by the command timeout, so the clean-up cannot hang and cannot be cut in half.

1. Wait for commands still running; nodes that never answered are left alone.
2. Each node unregisters its key (REGISTER with SERVICE ACTION RESERVATION KEY 0; REGISTER AND
   IGNORE EXISTING KEY where its nexus carries another key of this run).  Unregistering the
   holder releases the reservation, the last registrant an all-registrants one.
3. Keys of this run still listed (a target that kept them): one node registers and CLEARs,
   unless the LU had others' registrations (``--force``), which CLEAR would remove.
4. PTPL_A back to what REPORT CAPABILITIES said at the start (LIO makes it follow the last
   REGISTER's APTPL bit and clears it on CLEAR).
5. TEST UNIT READY where possible, so no unit attention of this run waits for the LU's users.
6. Compare: the keys, the reservation and PTPL_A must be as found (PRgeneration cannot be).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from qompr.scsi import PrOutAction
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.validate._nodes import GRACE
from qompr.validate._nodes import Node
from qompr.validate._text import keys_text
from qompr.validate._text import reservation_text

if TYPE_CHECKING:
    from qompr.validate._suite import Validator

__all__ = ["Restorer"]

_IGNORE = PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY


class Restorer:
    """The clean-up of one :class:`~qompr.validate.Validator` run."""

    def __init__(self, validator: Validator) -> None:
        self.v = validator

    def manual_hint(self) -> str:
        v = self.v
        keys = ", ".join(f"0x{k:x}" for k in v.keys.values()) or "none"
        return (
            f"This run's keys ({keys}) may still be registered: once the LU answers, remove "
            "each from its node's path with 'sg_persist --out --register --param-rk=KEY "
            "DEVICE' (or 'qompr persist' through the same --helper/--object)"
        )

    def _alive(self) -> list[Node]:
        return [n for n in self.v.nodes if not n.wedged]

    def run(self) -> None:
        v, book = self.v, self.v.book
        for node in v.nodes:
            if not node.wedged:
                node.settle(v.timeout + GRACE)
        if not v.changed:
            book.passed("restored", "nothing was changed")
            return
        ours = set(v.keys.values())
        for node in self._alive():
            key = v.keys.get(node.name)
            if key is None:
                continue
            answer = v.out(node, PrOutAction.REGISTER, rk=key, sark=0, shield=True)
            if answer.conflict and not v.shared:
                v.out(node, _IGNORE, sark=0, shield=True)
        state = self._read()
        if state is None:
            return
        keys, res = state
        stale = [k for k in keys.keys if k in ours]
        leftover = stale or (res.has_reservation and not v.shared)
        if leftover and not v.shared:
            self._clear()
            state = self._read()
            if state is None:
                return
            keys, res = state
        ptpl = self._ptpl()
        if ptpl is not None and ptpl != v.initial_ptpl and not v.shared:
            self._set_ptpl()
            ptpl = self._ptpl()
            state = self._read()
            if state is None:
                return
            keys, res = state
        for node in self._alive():
            v.tur(node, shield=True)
        self._verdict(keys, res, ptpl)

    def _read(self) -> tuple[ReadKeysData, ReadReservationData] | None:
        v = self.v
        for node in self._alive():
            _, keys = v.read_keys(node, shield=True)
            if keys is None:
                continue
            _, res = v.read_reservation(node, shield=True)
            if res is not None:
                return keys, res
        v.book.fail(
            "restored",
            "no node could read the LU's state after the run",
            self.manual_hint(),
        )
        return None

    def _clear(self) -> None:
        v = self.v
        for node in self._alive():
            key = v.keys[node.name]
            answer = v.out(node, _IGNORE, sark=key, shield=True)
            if not answer.ok:
                continue
            if v.out(node, PrOutAction.CLEAR, rk=key, shield=True).ok:
                return

    def _ptpl(self) -> bool | None:
        v = self.v
        for node in self._alive():
            _, caps = v.capabilities(node, shield=True)
            if caps is not None:
                return caps.ptpl_a
        return None

    def _set_ptpl(self) -> None:
        """REGISTER and unregister with the APTPL bit the LU had: PTPL_A follows it."""
        v = self.v
        for node in self._alive():
            key = v.keys[node.name]
            if v.out(node, _IGNORE, sark=key, shield=True).ok:
                v.out(node, PrOutAction.REGISTER, rk=key, sark=0, shield=True)
                return

    def _verdict(self, keys: ReadKeysData, res: ReadReservationData, ptpl: bool | None) -> None:
        v, book = self.v, self.v.book
        problems: list[str] = []
        if Counter(keys.keys) != Counter(v.initial_keys):
            problems.append(f"{keys_text(keys.keys)} (found: {keys_text(v.initial_keys)})")
        before = v.initial_res
        had = before is not None and before.has_reservation
        if res.has_reservation != had or (
            had
            and before is not None
            and (res.type, res.reservation_key) != (before.type, before.reservation_key)
        ):
            found = reservation_text(before) if before is not None else "no reservation"
            problems.append(f"{reservation_text(res)} (found: {found})")
        if ptpl is not None and ptpl != v.initial_ptpl:
            problems.append(f"PTPL_A={int(ptpl)} (found: {int(v.initial_ptpl)})")
        if problems:
            book.fail("restored", "the LU now has " + "; ".join(problems), self.manual_hint())
            return
        what = keys_text(keys.keys)
        if not res.has_reservation:
            what += " and no reservation"
        else:
            what += f" and {reservation_text(res)}"
        book.passed("restored", f"{what}, as found")
