# SPDX-License-Identifier: MIT
"""Several ``qompr-pr-helper`` "hosts" sharing one state store, and client "VMs" for them.

* :class:`Cluster` starts N daemons with ``--backend pr-manager-emulated,...,state=URI``
  and ``initiator-rule=vm-name`` on sockets of their own, and can kill and restart one.
* :class:`AgentProcess` is one client process (``agent.py -name guest=NAME``), so one
  initiator ``vm:NAME`` on whichever daemon it talks to: the identity a VM keeps across
  hosts.  It sends commands with an LU file attached, or runs a random workload and
  returns its history (:class:`~qompr.testing.checker.Operation`).
* :class:`ClusterTarget` is a :class:`~qompr.testing.scenario.Target` whose initiators are
  agents spread over the daemons, recording every answer.

Waits are bounded (generous deadlines); nothing sleeps to synchronise.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import TransportID
from qompr.testing import HelperProcess
from qompr.testing.checker import Operation

AGENT = Path(__file__).with_name("agent.py")
#: Root keeps its privileges through the daemon's drop; another user needs the option.
KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
#: The longest an agent may take to answer a request beyond its own duration.
ANSWER_DEADLINE = 60.0


#: The store timeout of runs without faults: generous, so that a loaded machine never turns
#: a slow command into a retryable answer there.
CALM_TIMEOUT_MS = 30_000
#: The store timeout of runs with faults: an outage is answered (retryably) this soon.
FAULT_TIMEOUT_MS = 2_000


def backend(state: str, *, timeout_ms: int = CALM_TIMEOUT_MS, extra: str = "") -> str:
    """The ``--backend`` object every daemon of a cluster on *state* runs."""
    spec = f"pr-manager-emulated,id=emu,state={state},initiator-rule=vm-name,timeout={timeout_ms}"
    return spec + (f",{extra}" if extra else "")


class Cluster:
    """*count* daemons serving ``backend`` (each its own socket under *workdir*)."""

    def __init__(self, backend_spec: str, workdir: Path, count: int = 3) -> None:
        self.backend = backend_spec
        self.daemons: list[HelperProcess] = []
        for index in range(count):
            where = workdir / f"host{index}"
            where.mkdir(parents=True, exist_ok=True)
            self.daemons.append(
                HelperProcess.qompr(*KEEP, "--backend", backend_spec, workdir=str(where))
            )

    @property
    def sockets(self) -> list[str]:
        """The daemons' sockets, in order."""
        return [d.path for d in self.daemons]

    def start(self) -> Cluster:
        # Side by side: each start is mostly the interpreter's, and they do not depend on
        # each other.
        with concurrent.futures.ThreadPoolExecutor(len(self.daemons)) as pool:
            for future in [pool.submit(d.start, 30) for d in self.daemons]:
                future.result()
        return self

    def kill(self, index: int) -> None:
        """``kill -9`` daemon *index* and reap it."""
        self.daemons[index].stop(signal.SIGKILL)

    def restart(self, index: int) -> None:
        """Start daemon *index* again (as systemd's Restart= would)."""
        self.daemons[index].start(timeout=30)

    def stop(self) -> list[str]:
        """Stop every daemon; returns their stderr."""
        errors = []
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                errors.append(daemon.stop()[1])
        return errors

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for daemon in self.daemons:
            daemon.__exit__(exc_type, exc, tb)


class AgentError(AssertionError):
    """An agent answered with an error, or not in time."""


class AgentProcess:
    """A client process that is initiator ``vm:NAME`` (see ``agent.py``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.initiator = f"vm:{name}"
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT), "-name", f"guest={name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def transport_id(self) -> TransportID:
        """The TransportID the daemons give this initiator (READ FULL STATUS shows it)."""
        return Nexus(self.initiator).transport_id

    def send(self, request: Mapping[str, Any]) -> None:
        """Send one request; :meth:`receive` reads its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(dict(request)) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = ANSWER_DEADLINE) -> dict[str, Any]:
        """The answer to the last request, within *timeout* seconds."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AgentError(f"agent {self.name} did not answer in {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AgentError(f"agent {self.name} exited ({self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise AgentError(f"agent {self.name}: {answer['error']}")
        return answer

    def ask(self, request: Mapping[str, Any], timeout: float = ANSWER_DEADLINE) -> dict[str, Any]:
        self.send(request)
        return self.receive(timeout)

    def connect(self, path: str) -> None:
        self.ask({"do": "connect", "socket": path})

    def close_connection(self) -> None:
        self.ask({"do": "close"})

    def command(self, lu: str, cdb: bytes, data: bytes = b"") -> Operation:
        """One command on *lu* through the current connection."""
        raw = self.ask({"do": "command", "lu": lu, "cdb": cdb.hex(), "data": data.hex()})
        return Operation.from_json(raw)

    def result(self, lu: str, cdb: bytes, data: bytes = b"") -> ScsiResult:
        """:meth:`command`, as a result (the connection must not break)."""
        op = self.command(lu, cdb, data)
        if op.status is None:
            raise AgentError(f"agent {self.name}: the connection broke: {op}")
        return ScsiResult(ScsiStatus(op.status), op.sense, op.data_in)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Agents:
    """Several agents, closed together."""

    def __init__(self, names: Sequence[str]) -> None:
        self.by_name: dict[str, AgentProcess] = {}
        try:
            for name in names:
                self.by_name[name] = AgentProcess(name)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> AgentProcess:
        return self.by_name[name]

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    def close(self) -> None:
        for agent in self.by_name.values():
            agent.close()

    def __enter__(self) -> Agents:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_all(
    agents: Sequence[AgentProcess], requests: Sequence[Mapping[str, Any]], seconds: float
) -> list[dict[str, Any]]:
    """Start ``run`` on every agent at once and collect their answers."""
    for agent, request in zip(agents, requests, strict=True):
        agent.send(request)
    return [agent.receive(seconds + ANSWER_DEADLINE) for agent in agents]


class ClusterTarget:
    """A scenario :class:`~qompr.testing.scenario.Target`: initiator ``X`` is the agent
    named ``X`` (``vm:X``), on whichever daemon it is connected to; one LU file."""

    def __init__(self, agents: Mapping[str, AgentProcess], lu: str) -> None:
        self.agents = agents
        self.lu = lu
        self.results: list[ScsiResult] = []
        self._names = {agent.transport_id: name for name, agent in agents.items()}

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        assert port == 1, "vm-name initiators reach target port 1"
        result = self.agents[initiator].result(self.lu, cdb, data)
        self.results.append(result)
        return result

    def transport_id(self, initiator: str) -> TransportID:
        return self.agents[initiator].transport_id

    def rtpi(self, port: int, initiator: str) -> int:
        return port

    def initiator_of(self, tid: TransportID) -> str | None:
        return self._names.get(tid)


def lu_file(directory: Path, name: str, size: int = 4096) -> str:
    """A new logical unit file."""
    path = directory / name
    path.write_bytes(bytes(size))
    return str(path)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll *predicate* until true, at most *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)
