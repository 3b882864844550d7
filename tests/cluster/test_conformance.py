# SPDX-License-Identifier: MIT
"""The conformance scenarios with their initiators spread over three ``qompr-pr-helper``
"hosts" sharing one store: every answer must be the single-process engine's, byte for byte,
and LIO's (the scenarios' own expectations).  Two kinds of global identities:

* **vm-name**: initiator ``X`` of a scenario is the client process ``agent.py -name
  guest=X``, that is ``vm:X`` under ``initiator-rule=vm-name``, the same on every daemon;
  initiators A, B, C talk to three different daemons.  The scenarios that apply send only
  what QEMU's helper protocol carries (PERSISTENT RESERVE IN/OUT, through target port 1, with
  at most 8 KiB of data: QEMU refuses more itself).
* **named initiators**: each (initiator, target port) is a ``pr-manager-helper`` of this
  process that names itself through qompr's protocol extension, which also carries TEST UNIT
  READY; so the scenarios with two target ports and unit attentions reported by TEST UNIT
  READY apply too.  Each (initiator, port) talks to its own daemon of the three.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.managers import PRManagerHelper
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import TransportID
from qompr.testing import ManagerTarget
from qompr.testing.checker import normalized
from qompr.testing.scenario import Scenario
from qompr.testing.scenario import load_all
from qompr.testing.scenario import run

from .conftest import STORES
from .conftest import SharedStore
from .conftest import _store
from .harness import Agents
from .harness import Cluster
from .harness import ClusterTarget
from .harness import backend
from .harness import lu_file

_HELPER_OPCODES = frozenset({0x5E, 0x5F})
#: qompr's protocol extension also carries TEST UNIT READY.
_EXTENSION_OPCODES = _HELPER_OPCODES | {0x00}
_HELPER_DATA_SIZE = 8192


def _why_not(scenario: Scenario, *, named: bool = False) -> str | None:
    if scenario.ports > 1 and not named:
        return "needs more than one target port (a vm-name initiator reaches port 1)"
    others = scenario.opcodes("lio") - (_EXTENSION_OPCODES if named else _HELPER_OPCODES)
    if others:
        return "sends commands the helper protocol does not carry"
    if any(int(step.params.get("alloc", 0)) > _HELPER_DATA_SIZE for step in scenario.steps("lio")):
        return "asks for more than 8 KiB of PR IN data (QEMU refuses it before the helper)"
    return None


ALL = [s for s in load_all() if "lio" in s.modes]
SCENARIOS = [s for s in ALL if _why_not(s) is None]
INITIATORS = sorted({name for s in SCENARIOS for name in s.initiators})
NAMED = [s for s in ALL if _why_not(s, named=True) is None]
NAMED_INITIATORS = sorted({name for s in NAMED for name in s.initiators})
NAMED_PORTS = sorted({s.ports for s in NAMED})


class Cluster3:
    """Three daemons on one store, and one agent per initiator name."""

    def __init__(self, cluster: Cluster, agents: Agents, directory: Path) -> None:
        self.cluster = cluster
        self.agents = agents
        self.directory = directory
        self.count = 0

    def new_lu(self) -> str:
        # Never deleted during the run: a file's inode must not come back as a new LU.
        self.count += 1
        return lu_file(self.directory, f"lu{self.count}")


@pytest.fixture(scope="module", params=STORES)
def three_hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster3]:
    directory = tmp_path_factory.mktemp("cluster")
    store: SharedStore = _store(request, request.param, directory)
    with (
        Cluster(backend(store.state, extra=store.extra), directory) as cluster,
        Agents(INITIATORS) as agents,
    ):
        for index, name in enumerate(INITIATORS):
            agents[name].connect(cluster.sockets[index % len(cluster.sockets)])
        yield Cluster3(cluster, agents, directory)


class _Recording(ManagerTarget):
    """A single-process target that keeps every CDB and answer."""

    results: list[ScsiResult]
    cdbs: list[bytes]

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes = b"") -> ScsiResult:
        result = super().command(initiator, port, cdb, data)
        self.cdbs.append(cdb)
        self.results.append(result)
        return result


def _single_process(
    scenario: Scenario, lu: str, tids: dict[str, TransportID] | None = None
) -> tuple[list[ScsiResult], list[bytes]]:
    """The scenario on one in-memory engine, with the cluster's initiator identities."""
    tree = qompr.new_tree(load_entrypoints=False)
    manager = tree.object_add("pr-manager-emulated", "single", target_ports=scenario.ports)
    assert isinstance(manager, PRManagerEmulated)
    if tids is None:
        tids = {name: Nexus(f"vm:{name}").transport_id for name in scenario.initiators}
    fd = os.open(lu, os.O_RDWR)
    try:
        target = _Recording(manager, fd, scenario.initiators, scenario.ports, transport_ids=tids)
        target.results, target.cdbs = [], []
        run(scenario, target, "lio")
        return target.results, target.cdbs
    finally:
        os.close(fd)
        manager.unparent()


def test_the_spread_is_real() -> None:
    assert {"A", "B", "C"} <= set(INITIATORS)
    assert [INITIATORS.index(n) % 3 for n in "ABC"] == [0, 1, 2]  # three daemons
    assert len(SCENARIOS) >= 50, [(s.id, _why_not(s)) for s in ALL]
    assert len(NAMED) >= 80 and NAMED_PORTS == [1, 2]


def _same_answers(cdbs: list[bytes], ours: list[ScsiResult], single: list[ScsiResult]) -> None:
    assert len(single) == len(ours)
    for number, (cdb, mine, theirs) in enumerate(zip(cdbs, ours, single, strict=True)):
        got = normalized(mine, cdb)
        want = normalized(theirs, cdb)
        assert got == want, f"step {number} ({cdb.hex()}): cluster {got}, single process {want}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario_across_three_daemons(three_hosts: Cluster3, scenario: Scenario) -> None:
    lu = three_hosts.new_lu()
    target = ClusterTarget(three_hosts.agents.by_name, lu)
    steps = run(scenario, target, "lio")  # LIO's answers, per the scenario
    assert steps > 0
    single, cdbs = _single_process(scenario, three_hosts.new_lu())
    _same_answers(cdbs, target.results, single)


# -- named initiators ---------------------------------------------------------------------


def _node(name: str) -> str:
    return f"node-{name.lower()}"


class NamedTarget:
    """A scenario target whose (initiator, port) pairs are named ``pr-manager-helper``
    clients of three daemons; one LU file."""

    def __init__(self, helpers: dict[tuple[str, int], PRManagerHelper], lu: str) -> None:
        self.helpers = helpers
        self.fd = os.open(lu, os.O_RDWR)
        self.results: list[ScsiResult] = []
        self._names = {Nexus(_node(n)).transport_id: n for n, _ in helpers}

    def command(self, initiator: str, port: int, cdb: bytes, data: bytes) -> ScsiResult:
        helper = self.helpers[(initiator, port)]
        if cdb[0] == 0x00:
            result = helper.test_unit_ready(self.fd)
        else:
            result = helper.execute(self.fd, cdb, data)
        self.results.append(result)
        return result

    def transport_id(self, initiator: str) -> TransportID:
        return Nexus(_node(initiator)).transport_id

    def rtpi(self, port: int, initiator: str) -> int:
        return port

    def initiator_of(self, tid: TransportID) -> str | None:
        return self._names.get(tid)

    def close(self) -> None:
        os.close(self.fd)


class NamedHosts:
    """Per number of target ports, three daemons with that many ports and one named client
    per (initiator, port), made when first needed and kept for the module."""

    def __init__(self, store: SharedStore, directory: Path, stack: contextlib.ExitStack) -> None:
        self.store = store
        self.directory = directory
        self.stack = stack
        self.tree: ObjectTree = qompr.new_tree(load_entrypoints=False)
        self.by_ports: dict[int, dict[tuple[str, int], PRManagerHelper]] = {}
        self.count = 0

    def helpers(self, ports: int) -> dict[tuple[str, int], PRManagerHelper]:
        made = self.by_ports.get(ports)
        if made is not None:
            return made
        extra = ",".join(filter(None, (self.store.extra, f"target-ports={ports}")))
        where = self.directory / f"{ports}port"
        cluster = self.stack.enter_context(Cluster(backend(self.store.state, extra=extra), where))
        made = self.by_ports[ports] = {}
        for index, name in enumerate(NAMED_INITIATORS):
            for port in range(1, ports + 1):
                path = cluster.sockets[(index + port - 1) % len(cluster.sockets)]
                helper = self.tree.object_add(
                    "pr-manager-helper", f"{name}-{port}-{ports}", path=path, complete=False
                )
                assert isinstance(helper, PRManagerHelper)
                self.stack.callback(helper.unparent)
                helper.use_extension(initiator=_node(name), target_port=port, test_unit_ready=True)
                self.tree.complete(helper)
                made[(name, port)] = helper
        return made

    def new_lu(self) -> str:
        self.count += 1
        return lu_file(self.directory, f"lu{self.count}")


@pytest.fixture(scope="module", params=STORES)
def named_hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NamedHosts]:
    directory = tmp_path_factory.mktemp("named")
    store: SharedStore = _store(request, request.param, directory)
    with contextlib.ExitStack() as stack:
        yield NamedHosts(store, directory, stack)


@pytest.mark.parametrize("scenario", NAMED, ids=[s.id for s in NAMED])
def test_scenario_across_three_daemons_with_named_initiators(
    named_hosts: NamedHosts, scenario: Scenario
) -> None:
    target = NamedTarget(named_hosts.helpers(scenario.ports), named_hosts.new_lu())
    try:
        assert run(scenario, target, "lio") > 0
    finally:
        target.close()
    tids = {name: Nexus(_node(name)).transport_id for name in scenario.initiators}
    single, cdbs = _single_process(scenario, named_hosts.new_lu(), tids)
    _same_answers(cdbs, target.results, single)
