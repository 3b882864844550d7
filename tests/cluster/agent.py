# SPDX-License-Identifier: MIT
"""A client "VM" of the cluster tests: one process, one initiator, talking the helper
protocol to the daemons.

Run as ``python agent.py -name guest=NAME``: the daemons' ``initiator-rule=vm-name`` reads
``-name guest=NAME`` from this process's command line (as from QEMU's), so the process is
initiator ``vm:NAME`` on every daemon it connects to, whichever host that daemon stands for.

It reads one JSON request per line on stdin and writes one JSON answer per line on stdout:

``{"do": "connect", "socket": PATH}``
    connect to a daemon (the connection every later command uses); ``{"ok": true}``.
``{"do": "command", "lu": PATH, "cdb": HEX, "data": HEX}``
    send one command with the file *lu* attached; the answer is the
    :class:`~qompr.testing.checker.Operation` as JSON (``status`` null if the connection
    broke: it is then closed, and the next ``connect`` makes a new one).
``{"do": "run", ...}``
    random commands for a bounded time (see :func:`run`); ``{"ops": [...], ...}``.
``{"do": "close"}``
    close the connection.

Timestamps are ``time.monotonic()``: CLOCK_MONOTONIC, one clock for every process here.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
from typing import Any

from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.testing import PeerClosedError
from qompr.testing import pr_out_command
from qompr.testing import recv_exact
from qompr.testing.checker import Operation
from qompr.testing.checker import Workload

#: How long one command may take before the connection counts as broken (well above the
#: store's timeout: a daemon answers by then, or it is gone).
COMMAND_TIMEOUT = 30.0
#: Acknowledged commands after the fault that show service resumed.
_RESUMED = 3
_REPLY_HEADER = 104


class Agent:
    """The client state: one connection at a time, the LU files opened once."""

    def __init__(self, initiator: str) -> None:
        self.initiator = initiator
        self.sock: socket.socket | None = None
        self.fds: dict[str, int] = {}

    def connect(self, path: str, timeout: float = COMMAND_TIMEOUT) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            recv_exact(sock, 4)  # the helper's features
            sock.sendall(bytes(4))  # none
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fd(self, lu: str) -> int:
        fd = self.fds.get(lu)
        if fd is None:
            fd = self.fds[lu] = os.open(lu, os.O_RDWR)
        return fd

    def command(self, lu: str, cdb: bytes, data: bytes) -> Operation:
        """Send one command; an Operation without status if the connection broke."""
        fd = self.fd(lu)
        head = cdb.ljust(16, b"\0")
        invoked = time.monotonic()
        if self.sock is None:
            return Operation(self.initiator, lu, cdb, data, invoked, None)
        try:
            socket.send_fds(self.sock, [head + data], [fd])
            reply = recv_exact(self.sock, _REPLY_HEADER)
            status = int.from_bytes(reply[0:4], "big", signed=True)
            size = int.from_bytes(reply[4:8], "big", signed=True)
            data_in = recv_exact(self.sock, size) if size > 0 else b""
        except (OSError, PeerClosedError):  # reset, timeout, or closed mid-reply
            self.close()
            return Operation(self.initiator, lu, cdb, data, invoked, None)
        answered = time.monotonic()
        return Operation(
            self.initiator, lu, cdb, data, invoked, answered, status, reply[8:], data_in
        )


def run(agent: Agent, req: dict[str, Any]) -> dict[str, Any]:
    """Random commands (:class:`~qompr.testing.checker.Workload`) for ``seconds``.

    ``sockets``: the daemons, the agent's own first: after a broken connection it reconnects
    to the first that accepts, in that order (as a multipath-like client would; the same
    ``vm:NAME`` wherever it lands).  ``lus``: the logical units, picked at random per
    command.  ``ledger``: a logical unit where, every ``ledger_every`` commands, the agent
    in turn registers a growing key (REGISTER AND IGNORE EXISTING KEY, nobody else touches
    its registration there; a lost acknowledgement is plain to count) and reads the
    registrations (READ FULL STATUS).  ``resume_file``: a file the test creates once a
    fault is over; the run then goes on past ``seconds`` until a few commands sent after it
    appeared were acknowledged (at most ``resume_seconds`` more).
    """
    rng = random.Random(req["seed"])
    workload = Workload(agent.initiator, tuple(req["peers"]))
    sockets: list[str] = req["sockets"]
    lus: list[str] = req["lus"]
    ledger: str | None = req.get("ledger")
    ledger_every = int(req.get("ledger_every", 4))
    ledger_base = int(req.get("ledger_base", 1)) << 32
    ledger_seq = 0
    ops: list[dict[str, Any]] = []
    connects_failed = 0
    end = time.monotonic() + float(req["seconds"])
    # After a fault: go on past the end until a few commands were acknowledged after the
    # fault was over (the test creates resume_file then), within a hard bound.
    resume_file: str | None = req.get("resume_file")
    hard_end = end + float(req.get("resume_seconds", 60))
    resumed = 0 if resume_file else _RESUMED
    count = 0
    over = False  # the fault is over (checked before sending, so the command is after it)
    while (now := time.monotonic()) < end or (resumed < _RESUMED and now < hard_end):
        if resume_file and not over:
            over = os.path.exists(resume_file)
        if agent.sock is None:
            for path in sockets:
                try:
                    agent.connect(path)
                    break
                except OSError:
                    connects_failed += 1
            else:
                time.sleep(0.02)  # every daemon down: poll again (bounded by the run's end)
                continue
        count += 1
        if ledger is not None and count % ledger_every == 0:
            # Registrations and reads in turn: a read soon after each registration pins the
            # order the checker has to find (PR OUT answers carry no data).
            if count // ledger_every % 2:
                ledger_seq += 1
                cdb, data = _ledger_register(ledger_base | ledger_seq)
            else:
                cdb, data = PrInCdb(PrInAction.READ_FULL_STATUS, 4096).to_bytes(), b""
            op = agent.command(ledger, cdb, data)
        else:
            cdb, data = workload.command(rng)
            op = agent.command(rng.choice(lus), cdb, data)
        ops.append(op.to_json())
        if over and op.acknowledged:
            resumed += 1
    return {"ops": ops, "connects_failed": connects_failed}


def _ledger_register(key: int) -> tuple[bytes, bytes]:
    return pr_out_command(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=key)


def main(argv: list[str]) -> int:
    name = argv[argv.index("-name") + 1].removeprefix("guest=")
    agent = Agent(f"vm:{name}")
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        do = req["do"]
        answer: dict[str, Any]
        try:
            if do == "connect":
                agent.connect(req["socket"], float(req.get("timeout", COMMAND_TIMEOUT)))
                answer = {"ok": True}
            elif do == "command":
                op = agent.command(req["lu"], bytes.fromhex(req["cdb"]), bytes.fromhex(req["data"]))
                answer = op.to_json()
            elif do == "run":
                answer = run(agent, req)
            elif do == "close":
                agent.close()
                answer = {"ok": True}
            else:
                answer = {"error": f"unknown request {do!r}"}
        except OSError as exc:
            answer = {"error": str(exc)}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
