# SPDX-License-Identifier: MIT
"""The conformance scenarios with their initiators spread over three ``qompr-pr-helper``
"hosts" sharing one store: every answer must be the single-process engine's, byte for byte,
and LIO's (the scenarios' own expectations).

Initiator ``X`` of a scenario is the client process ``agent.py -name guest=X``, that is
``vm:X`` under ``initiator-rule=vm-name``, an identity that is the same on every daemon;
initiators A, B, C talk to three different daemons.  The scenarios that apply are those that
send only what the helper protocol carries (PERSISTENT RESERVE IN/OUT, through target port
1, with at most 8 KiB of data: QEMU refuses more itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.managers.emulated import PRManagerEmulated
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
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
_HELPER_DATA_SIZE = 8192


def _why_not(scenario: Scenario) -> str | None:
    if scenario.ports > 1:
        return "needs more than one target port (a vm-name initiator reaches port 1)"
    others = scenario.opcodes("lio") - _HELPER_OPCODES
    if others:
        return "sends commands the helper protocol does not carry"
    if any(int(step.params.get("alloc", 0)) > _HELPER_DATA_SIZE for step in scenario.steps("lio")):
        return "asks for more than 8 KiB of PR IN data (QEMU refuses it before the helper)"
    return None


ALL = [s for s in load_all() if "lio" in s.modes]
SCENARIOS = [s for s in ALL if _why_not(s) is None]
INITIATORS = sorted({name for s in SCENARIOS for name in s.initiators})


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


def _single_process(scenario: Scenario, lu: str) -> tuple[list[ScsiResult], list[bytes]]:
    """The scenario on one in-memory engine, with the cluster's initiator identities."""
    tree = qompr.new_tree(load_entrypoints=False)
    manager = tree.object_add("pr-manager-emulated", "single")
    assert isinstance(manager, PRManagerEmulated)
    tids = {name: Nexus(f"vm:{name}").transport_id for name in scenario.initiators}
    fd = os.open(lu, os.O_RDWR)
    try:
        target = _Recording(manager, fd, scenario.initiators, 1, transport_ids=tids)
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


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario_across_three_daemons(three_hosts: Cluster3, scenario: Scenario) -> None:
    lu = three_hosts.new_lu()
    target = ClusterTarget(three_hosts.agents.by_name, lu)
    steps = run(scenario, target, "lio")  # LIO's answers, per the scenario
    assert steps > 0
    single, cdbs = _single_process(scenario, three_hosts.new_lu())
    assert len(single) == len(target.results)
    for number, (cdb, ours, theirs) in enumerate(zip(cdbs, target.results, single, strict=True)):
        got = normalized(ours, cdb)
        want = normalized(theirs, cdb)
        assert got == want, f"step {number} ({cdb.hex()}): cluster {got}, single process {want}"
