# SPDX-License-Identifier: MIT
"""Write a third-party persistent-reservation manager and use it through ``-object``.

A plugin is any object with ``@qompr.hookimpl`` functions; here it is registered in-process
(an installed package would announce it with an entry point in the group ``qompr``, as
``plugins/qompr-forward`` does).  The manager refuses every PR OUT while ``read-only`` is on,
and otherwise hands commands to another manager: a policy layer in a few lines.

Run: ``python examples/manager_plugin.py``
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import qompr
from qompr.managers import PR_OUT
from qompr.managers import PRManager
from qompr.options import process
from qompr.qom import BoolProperty
from qompr.qom import LinkProperty
from qompr.qom import Object
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode


class PRManagerGuard(PRManager, qom_type="pr-manager-guard"):
    """Refuses PR OUT while ``read-only`` is set; forwards everything else to ``backend``."""

    backend = LinkProperty("pr-manager", mandatory=True, description="who executes commands")
    read_only = BoolProperty(default=False, description="refuse every PERSISTENT RESERVE OUT")

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        if self.read_only and cdb[0] == PR_OUT:
            # An answer, not an exception: what a write-protected device says (SPC-4).
            return ScsiResult.check(SenseCode.WRITE_PROTECTED)
        backend = self.backend
        assert isinstance(backend, PRManager)
        return backend.execute(fd, cdb, data, nexus=nexus)


class GuardPlugin:
    @qompr.hookimpl
    def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
        register(PRManagerGuard)


def main() -> int:
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(GuardPlugin(), name="guard")
    tree = qompr.new_tree(pm)
    process(tree, ["pr-manager-emulated,id=emu0", "pr-manager-guard,id=guard0,backend=emu0"])
    guard = tree.find_object("guard0")
    assert isinstance(guard, PRManagerGuard)
    register = PrOutParameters(sa_key=0x1234).to_bytes()
    register_cdb = PrOutCdb(PrOutAction.REGISTER, 0, 0, len(register)).to_bytes()
    read_keys = PrInCdb(PrInAction.READ_KEYS, 256).to_bytes()
    with tempfile.NamedTemporaryFile() as lu:
        fd = os.open(lu.name, os.O_RDWR)
        try:
            print("REGISTER:", guard.execute(fd, register_cdb, register).status.name)
            tree.qom_set("/objects/guard0", "read-only", True)
            refused = guard.execute(fd, register_cdb, register)
            print("REGISTER while read-only:", refused.status.name, refused.sense_code)
            keys = guard.execute(fd, read_keys)
            print("READ KEYS:", keys.status.name, keys.data[8:16].hex())
        finally:
            os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
