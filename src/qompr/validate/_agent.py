# SPDX-License-Identifier: MIT
"""The process of one helper node (see :class:`qompr.validate.AgentNode`).

Started as ``python -m qompr.validate._agent -name guest=NAME`` so that a helper naming its
clients by VM name sees a VM called NAME, as it would see a QEMU started with ``-name``.  It
reads one JSON request per line on stdin and answers one JSON line on stdout:

* ``{"op": "open", "socket": S, "device": D, "timeout": T}``: connect a ``pr-manager-helper``
  to S (command timeout T seconds) and open D read-write; ``{"ok": true}`` or ``{"error": E}``;
  with ``"initiator": NAME`` the connection names its initiator (qompr's protocol extension,
  ``qompr-pr-helper`` only);
* ``{"op": "run", "cdb": HEX, "data": HEX}``: execute one command with the fd of D;
  ``{"status": N, "sense": HEX, "data": HEX}`` or ``{"error": E}``.

It ignores SIGINT (the validating process decides when to stop) and exits at end of input.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

__all__ = ["main"]


def _serve(lines: Any, out: Any) -> None:
    # Only what a pr-manager-helper needs: under emulation (the VM tests) every module
    # imported costs a noticeable part of a second.
    from qompr.errors import QomprError
    from qompr.managers import PRManager
    from qompr.managers import PRManagerHelper
    from qompr.qom import ObjectTree
    from qompr.qom import TypeRegistry

    manager: PRManager | None = None
    fd = -1
    for line in lines:
        request: dict[str, Any] = {}
        try:
            request = json.loads(line)
            if request["op"] == "open":
                types = TypeRegistry()
                types.register_all([PRManager, PRManagerHelper])
                tree = ObjectTree(types)
                made = tree.object_add(
                    "pr-manager-helper", "validate", path=request["socket"], complete=False
                )
                assert isinstance(made, PRManagerHelper)
                if request.get("initiator") is not None:
                    made.use_extension(initiator=str(request["initiator"]))
                tree.complete(made)
                made.command_timeout = float(request["timeout"])
                manager = made
                fd = os.open(request["device"], os.O_RDWR | os.O_NONBLOCK)
                reply: dict[str, Any] = {"ok": True}
            elif request["op"] == "run" and manager is not None:
                result = manager.execute(
                    fd, bytes.fromhex(request["cdb"]), bytes.fromhex(request["data"])
                )
                reply = {
                    "status": int(result.status),
                    "sense": result.sense.hex(),
                    "data": result.data.hex(),
                }
            else:
                reply = {"error": f"unexpected request {request.get('op')!r}"}
        except QomprError as exc:
            reply = {"error": exc.render()}
        except OSError as exc:
            reply = {"error": f"{request.get('device', '')}: {exc.strerror or exc}"}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"bad request: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
