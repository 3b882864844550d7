# SPDX-License-Identifier: MIT
"""``pr-manager-forward``: log each PR command, then let another manager execute it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from qompr import hookimpl
from qompr.errors import ObjectError
from qompr.managers import PRManager
from qompr.qom import LinkProperty
from qompr.qom import Object
from qompr.qom import StringProperty
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult

__all__ = ["PRManagerForward"]

logger = logging.getLogger("qompr_forward")


class PRManagerForward(PRManager, qom_type="pr-manager-forward"):
    """Forwards to ``target`` and records every command."""

    target = LinkProperty(
        "pr-manager", mandatory=True, description="the manager that executes the commands"
    )
    log = StringProperty(description="append one line per command to this file")

    def instance_init(self) -> None:
        self._log_lock = threading.Lock()
        self.commands = 0

    def complete(self) -> None:
        if self.target is None:
            raise ObjectError("Parameter 'target' is missing")
        if self.target is self:
            raise ObjectError("pr-manager-forward cannot forward to itself")

    def _target(self) -> PRManager:
        target = self.target
        assert isinstance(target, PRManager)
        return target

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        result = self._target().execute(fd, cdb, data, nexus=nexus)
        line = f"{self.id} cdb={bytes(cdb).hex()} status=0x{result.status:02x}"
        if result.sense:
            line += f" sense-key=0x{result.sense[2] & 0x0F:x}" if len(result.sense) > 2 else ""
        with self._log_lock:
            self.commands += 1
            if self.log:
                with open(self.log, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        logger.info("%s", line)
        return result

    def is_connected(self) -> bool:
        return self._target().is_connected()


@hookimpl
def qompr_register_types(register: Callable[[type[Object]], Any]) -> None:
    register(PRManagerForward)
