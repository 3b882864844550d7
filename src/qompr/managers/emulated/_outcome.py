# SPDX-License-Identifier: MIT
"""What the engine is configured with and what it answers: :class:`EngineConfig`,
:class:`EngineOutcome`, and the results and type sets the engine's modules share."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

import attrs

from qompr.managers.emulated._policy import LIO
from qompr.managers.emulated._policy import Policy
from qompr.managers.emulated._state import GENERATION_MASK
from qompr.managers.emulated._state import Changes
from qompr.managers.emulated._state import LUState
from qompr.scsi import Nexus
from qompr.scsi import PrType
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

__all__ = ["EngineConfig", "EngineOutcome"]

GOOD: Final = ScsiResult.good()
CONFLICT: Final = ScsiResult.conflict()
#: The largest parameter list the engine pads a short data-out buffer to.
MAX_PARAMETER_LIST: Final = 1 << 20
BASIC_LIST: Final = 24
VALID_TYPES: Final = frozenset(int(t) for t in PrType)
AR_TYPES: Final = frozenset({PrType.WE_AR, PrType.EA_AR})
RO_AR_TYPES: Final = frozenset({PrType.WE_RO, PrType.EA_RO, PrType.WE_AR, PrType.EA_AR})
RO_TYPES: Final = frozenset({PrType.WE_RO, PrType.EA_RO})
UA_PREEMPTED: Final = SenseCode.RESERVATIONS_PREEMPTED
UA_RELEASED: Final = SenseCode.RESERVATIONS_RELEASED
UA_REGISTRATIONS_PREEMPTED: Final = SenseCode.REGISTRATIONS_PREEMPTED


@functools.lru_cache(maxsize=64)
def check(code: SenseCode) -> ScsiResult:
    """CHECK CONDITION with fixed-format sense for *code* (results are immutable: cached)."""
    return ScsiResult.check(code)


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


@attrs.frozen
class EngineConfig:
    """The fixed configuration of an emulated logical unit.

    :param policy: LIO's answers (default) or SPC-4's (:data:`~._policy.SPC4`).
    :param target_ports: the RELATIVE TARGET PORT IDENTIFIERs through which the logical unit
        is reachable; commands through another port get ILLEGAL REQUEST 25/00.
    :param max_registrations: the most registrations the device server keeps (0 for no
        limit); beyond it REGISTER answers INSUFFICIENT REGISTRATION RESOURCES 55/04.
    """

    policy: Policy = LIO
    target_ports: tuple[int, ...] = attrs.field(default=(1,), converter=_int_tuple)
    max_registrations: int = attrs.field(default=0, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.target_ports or any(not 1 <= p <= 0xFFFF for p in self.target_ports):
            raise ValueError("target_ports must hold RELATIVE TARGET PORT IDENTIFIERs 1-65535")
        if self.max_registrations < 0:
            raise ValueError("max_registrations must not be negative")


@attrs.frozen
class EngineOutcome:
    """What a command did.

    :param result: the SCSI result; ``None`` only from :meth:`Engine.admit`, meaning the
        command may go on to the medium.
    :param changes: the state changes to apply, or ``None`` for none.
    :param aborted: the I_T nexuses whose tasks a PREEMPT AND ABORT aborts (SPC-4 §5.12.11.2.6).
    """

    result: ScsiResult | None
    changes: Changes | None = None
    aborted: frozenset[Nexus] = frozenset()


def bump(state: LUState, count: int = 1) -> int:
    return (state.generation + count) & GENERATION_MASK


def ua_to(nexuses: Iterable[Nexus], code: SenseCode) -> tuple[tuple[Nexus, SenseCode], ...]:
    return tuple((n, code) for n in nexuses)
