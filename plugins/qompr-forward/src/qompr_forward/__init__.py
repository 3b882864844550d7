# SPDX-License-Identifier: MIT
"""``pr-manager-forward``: log each PR command, then let another manager execute it.

Built on :class:`qompr.managers.DelegatingPRManager`, which passes the target manager's whole
contract through: behind ``qompr-pr-helper`` each client is the initiator the target says it
is (``pr-manager-emulated`` names one per VM), not one initiator for all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from qompr import hookimpl
from qompr.managers import DelegatingPRManager
from qompr.qom import Object
from qompr.qom import StringProperty
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult

__all__ = ["PRManagerForward"]

logger = logging.getLogger("qompr_forward")


class PRManagerForward(DelegatingPRManager, qom_type="pr-manager-forward"):
    """Forwards to ``target`` and records every command."""

    log = StringProperty(description="append one line per command to this file")

    def instance_init(self) -> None:
        self._log_lock = threading.Lock()
        self.commands = 0

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        result = super().run(fd, cdb, data, nexus=nexus)
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


@hookimpl
def qompr_register_types(register: Callable[[type[Object]], Any]) -> None:
    register(PRManagerForward)
