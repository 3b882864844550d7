# SPDX-License-Identifier: MIT
"""Embed qompr in a VM manager: a managed helper, QEMU's arguments, QEMU, and its status.

What a VM manager does for a VM with a shared disk, without libvirt:

1. start a managed ``qompr-pr-helper`` for the VM on a socket the supervisor keeps (here with
   the emulated backend, so no disk and no root are needed);
2. generate QEMU's ``-object`` for it, with libvirt's id ``pr-helper0``;
3. start QEMU (``-machine none`` here: no guest) and ask ``query-pr-managers``;
4. kill the helper, as a crash would: the supervisor starts a new one on the same socket, and a
   manager added now connects at once.

Run: ``python examples/embed_vm_manager.py`` (needs qemu-system-x86_64).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import qompr
from qompr.embed import HelperSupervisor
from qompr.embed import managed_alias
from qompr.embed import object_args
from qompr.managers import PRManager


def qmp(argv: list[str], *commands: dict[str, Any]) -> list[Any]:
    """Start QEMU with QMP on stdio, run *commands*, quit; the replies in order."""
    lines = [{"execute": "qmp_capabilities"}, *commands, {"execute": "quit"}]
    proc = subprocess.run(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
         *argv, "-qmp", "stdio"],
        input="".join(json.dumps(c) + "\n" for c in lines),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    answers = [r.get("return", r.get("error")) for r in replies if "return" in r or "error" in r]
    return answers[1 : 1 + len(commands)]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="qompr-vm-") as run_dir:
        socket_path = os.path.join(run_dir, "pr-helper0.sock")
        supervisor = HelperSupervisor(
            socket_path,
            pidfile=os.path.join(run_dir, "pr-helper0.pid"),
            helper_args=["--backend", "pr-manager-emulated,id=emu0", "--keep-privileges"],
        )
        with supervisor:
            if not supervisor.wait_ready(30):
                print("the helper did not start", file=sys.stderr)
                return 1
            print(f"managed helper pid {supervisor.pid} on {socket_path}")

            tree = qompr.new_tree(load_entrypoints=False)
            manager = tree.object_add(
                "pr-manager-helper", managed_alias(), path=socket_path, complete=False
            )
            assert isinstance(manager, PRManager)
            argv = object_args(manager)
            print("QEMU arguments:", " ".join(argv))
            (status,) = qmp(argv, {"execute": "query-pr-managers"})
            print("query-pr-managers:", json.dumps(status))

            crashed = supervisor.pid
            assert crashed is not None
            os.kill(crashed, signal.SIGKILL)
            while supervisor.pid in (None, crashed):
                time.sleep(0.05)
            print(f"helper {crashed} killed; supervisor restarted it as {supervisor.pid}")
            added = {
                "execute": "object-add",
                "arguments": {"qom-type": "pr-manager-helper", "id": "pr-helper1",
                              "path": socket_path},
            }  # fmt: skip
            _, status = qmp(argv, added, {"execute": "query-pr-managers"})
            print("after the restart, query-pr-managers:", json.dumps(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
