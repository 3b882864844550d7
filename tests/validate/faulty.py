# SPDX-License-Identifier: MIT
"""Faulty targets for the validate tests: managers that wrap ``pr-manager-emulated`` and get
one thing wrong each.  Test-only code (a plugin registered into the test's tree), never in the
wheel.

* ``pr-manager-test-stuck-generation`` — PRgeneration always reads 0;
* ``pr-manager-test-no-we-ro`` — refuses Write Exclusive - Registrants Only (type 5) and
  does not advertise it;
* ``pr-manager-test-bad-preempt`` — answers PREEMPT with GOOD and does nothing;
* ``pr-manager-test-one-port`` — every command arrives on one I_T nexus, whoever sends it
  (a real device reached through one initiator port, as two VMs sharing a helper are);
* ``pr-manager-test-no-aptpl`` — cannot persist through power loss (PTPL_C=0) and refuses
  APTPL, as SPC-4 has such a target do;
* ``pr-manager-test-sticky-ua`` — a preempted initiator gets REGISTRATIONS PREEMPTED for every
  command, for ever (a unit attention nobody clears);
* ``test-thing`` — an object that is no manager at all;
* ``pr-manager-test-pause`` — before executing its first PREEMPT it creates the file
  ``marker`` and waits (at most a minute) until the file is gone: the SIGINT test interrupts
  the run there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import qompr
from qompr.managers import ClientIdentity
from qompr.managers import DelegatingPRManager
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import USER_CREATABLE
from qompr.qom import Object
from qompr.qom import StringProperty
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

PR_IN, PR_OUT = 0x5E, 0x5F
_TYPED = (PrOutAction.RESERVE, PrOutAction.PREEMPT, PrOutAction.PREEMPT_AND_ABORT)


def _action(cdb: bytes) -> int:
    return cdb[1] & 0x1F


class StuckGeneration(DelegatingPRManager, qom_type="pr-manager-test-stuck-generation"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        result = super().run(fd, cdb, data, nexus=nexus)
        generational = (PrInAction.READ_KEYS, PrInAction.READ_RESERVATION)
        if cdb[0] == PR_IN and result.ok and _action(cdb) in generational:
            return ScsiResult.good(bytes(4) + result.data[4:])
        return result


class NoWriteExclusiveRegistrantsOnly(DelegatingPRManager, qom_type="pr-manager-test-no-we-ro"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if cdb[0] == PR_OUT and _action(cdb) in _TYPED and cdb[2] & 0x0F == 5:
            return ScsiResult.check(SenseCode.INVALID_FIELD)
        result = super().run(fd, cdb, data, nexus=nexus)
        if cdb[0] == PR_IN and result.ok and _action(cdb) == PrInAction.REPORT_CAPABILITIES:
            data_in = bytearray(result.data)
            data_in[4] &= ~0x20  # WR_EX_RO
            return ScsiResult.good(bytes(data_in))
        return result


class BadPreempt(DelegatingPRManager, qom_type="pr-manager-test-bad-preempt"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if cdb[0] == PR_OUT and _action(cdb) == PrOutAction.PREEMPT:
            return ScsiResult.good()
        return super().run(fd, cdb, data, nexus=nexus)


class OnePort(DelegatingPRManager, qom_type="pr-manager-test-one-port"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        return super().run(fd, cdb, data, nexus=None)

    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        return super().test_unit_ready(fd, nexus=None)

    def nexus_for_client(self, client: ClientIdentity) -> Nexus | None:
        return None


class NoAptpl(DelegatingPRManager, qom_type="pr-manager-test-no-aptpl"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if cdb[0] == PR_OUT and len(data) > 20 and data[20] & 0x01:
            return ScsiResult.check(SenseCode.INVALID_PARAM)
        result = super().run(fd, cdb, data, nexus=nexus)
        if cdb[0] == PR_IN and result.ok and _action(cdb) == PrInAction.REPORT_CAPABILITIES:
            data_in = bytearray(result.data)
            data_in[2] &= ~0x01  # PTPL_C
            data_in[3] &= ~0x01  # PTPL_A
            return ScsiResult.good(bytes(data_in))
        return result


class StickyUnitAttention(DelegatingPRManager, qom_type="pr-manager-test-sticky-ua"):
    def instance_init(self) -> None:
        super().instance_init()
        self._preempted: set[Nexus] = set()

    def _sticky(self, nexus: Nexus | None) -> ScsiResult | None:
        if nexus is not None and nexus in self._preempted:
            return ScsiResult.check(SenseCode.REGISTRATIONS_PREEMPTED)
        return None

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        sticky = self._sticky(nexus)
        if sticky is not None:
            return sticky
        victims: set[Nexus] = set()
        if cdb[0] == PR_OUT and _action(cdb) == PrOutAction.PREEMPT:
            emulated = self.delegate
            assert isinstance(emulated, PRManagerEmulated)
            key = int.from_bytes(data[8:16], "big")
            registered = emulated.snapshot(fd).registrations
            victims = {who for who, reg in registered if reg.key == key}
        result = super().run(fd, cdb, data, nexus=nexus)
        if result.ok:
            self._preempted |= victims
        return result

    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        return self._sticky(nexus) or super().test_unit_ready(fd, nexus=nexus)


class Pause(DelegatingPRManager, qom_type="pr-manager-test-pause"):
    marker = StringProperty(mandatory=True, description="file that holds the first PREEMPT")

    def instance_init(self) -> None:
        super().instance_init()
        self._paused = False

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if cdb[0] == PR_OUT and _action(cdb) == PrOutAction.PREEMPT and not self._paused:
            self._paused = True
            with open(self.marker, "w"):
                pass
            deadline = time.monotonic() + 60
            while os.path.exists(self.marker) and time.monotonic() < deadline:
                time.sleep(0.01)
        return super().run(fd, cdb, data, nexus=nexus)


class Thing(Object, qom_type="test-thing", interfaces=(USER_CREATABLE,)):
    """A user-creatable object that is no manager."""


TYPES: tuple[type[Object], ...] = (
    Thing,
    StuckGeneration,
    NoWriteExclusiveRegistrantsOnly,
    BadPreempt,
    OnePort,
    NoAptpl,
    StickyUnitAttention,
    Pause,
)


@qompr.hookimpl
def qompr_register_types(register: Callable[[type[Object]], Any]) -> None:
    for cls in TYPES:
        register(cls)
