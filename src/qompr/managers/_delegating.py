# SPDX-License-Identifier: MIT
"""A manager that wraps another: the base for logging, filtering or routing managers.

:class:`DelegatingPRManager` has a ``target`` link to another ``pr-manager`` and passes it the
commands and the whole manager contract (nexus naming, ``cannot_block``, ``batch``, capabilities,
TEST UNIT READY, connection state).  Without that, a wrapper behind ``qompr-pr-helper`` would
hide its target's identity rules, and every client would become one initiator.  A subclass
overrides :meth:`DelegatingPRManager.run` (and friends) to add its own behaviour, calling
``super()`` to reach the target.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from qompr._compat import override
from qompr.errors import ObjectError
from qompr.managers._base import ClientIdentity
from qompr.managers._base import PRManager
from qompr.qom import LinkProperty
from qompr.scsi import ScsiResult

if TYPE_CHECKING:
    from qompr.linux.caps import Capability
    from qompr.scsi import Nexus

__all__ = ["DelegatingPRManager"]


class DelegatingPRManager(PRManager):
    """Executes every command through ``target`` and answers the contract as it does.

    Not a QOM type itself: subclass it with ``qom_type=...``.
    """

    target = LinkProperty(
        PRManager, mandatory=True, description="the manager that executes the commands"
    )

    @override
    def complete(self) -> None:
        """Refuse a missing target and a chain of delegates that leads back here."""
        seen: set[int] = set()
        obj: object = self
        while isinstance(obj, DelegatingPRManager):
            if id(obj) in seen:
                raise ObjectError(f"{self.typename} '{self.id}': 'target' leads back to itself")
            seen.add(id(obj))
            obj = obj.target
            if obj is None:
                raise ObjectError("Parameter 'target' is missing")

    @property
    def delegate(self) -> PRManager:
        """The target manager.

        :raises ObjectError: if the link is unset (only before ``complete()``).
        """
        target = self.target
        if target is None:
            raise ObjectError(f"{self.typename} '{self.id}' has no target")
        return target

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """The target's :meth:`~PRManager.execute` (so its hooks and in-use count apply)."""
        return self.delegate.execute(fd, cdb, data, nexus=nexus)

    @override
    def is_connected(self) -> bool:
        return self.delegate.is_connected()

    @property
    @override
    def default_nexus(self) -> Nexus | None:
        return self.delegate.default_nexus

    @override
    def nexus_for_client(self, client: ClientIdentity) -> Nexus | None:
        return self.delegate.nexus_for_client(client)

    @override
    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        return self.delegate.cannot_block(fd, cdb)

    @override
    def batch(self) -> contextlib.AbstractContextManager[None]:
        return self.delegate.batch()

    @override
    def required_capabilities(self) -> frozenset[Capability]:
        return self.delegate.required_capabilities()

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        return self.delegate.test_unit_ready(fd, nexus=nexus)

    @override
    def logical_unit_id(self, fd: int) -> str:
        return self.delegate.logical_unit_id(fd)
