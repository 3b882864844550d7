# SPDX-License-Identifier: MIT
"""The declared manager contract: defaults, pr-manager-emulated's answers, delegation, and
that nothing in src/ finds a manager's abilities by duck typing."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.errors import ObjectError
from qompr.linux.caps import Capability
from qompr.managers import ClientIdentity
from qompr.managers import DelegatingPRManager
from qompr.managers import PRManager
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

SRC = Path(__file__).resolve().parents[2] / "src" / "qompr"
REGISTER = bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0])


class Plain(PRManager, qom_type="test-plain"):
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        return ScsiResult.good()


class Privileged(Plain, qom_type="test-privileged"):
    def required_capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.CAP_SYS_ADMIN})


class Wrapper(DelegatingPRManager, qom_type="test-wrapper"):
    pass


@pytest.fixture
def tree() -> ObjectTree:
    tree = qompr.new_tree(load_entrypoints=False)
    for cls in (Plain, Privileged, Wrapper):
        tree.types.register(cls)
    return tree


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "lu", os.O_RDWR | os.O_CREAT)
    try:
        yield fd
    finally:
        os.close(fd)


def test_the_defaults_describe_a_real_device(tree: ObjectTree, fd: int) -> None:
    manager = tree.object_add("test-plain", "p")
    assert isinstance(manager, PRManager)
    assert manager.default_nexus is None
    assert manager.nexus_for_client(ClientIdentity(1, 2, 3, initiator="x")) is None
    assert manager.cannot_block(fd) is False
    assert manager.required_capabilities() == frozenset()
    assert manager.test_unit_ready(fd) == ScsiResult.check(SenseCode.INVALID_OPCODE)
    with manager.batch():  # nothing to share: a context that does nothing
        assert manager.execute(fd, REGISTER, bytes(24)).ok


def test_emulated_names_clients_by_rule_or_by_the_name_they_gave(tree: ObjectTree, fd: int) -> None:
    emu = tree.object_add("pr-manager-emulated", "e", target_ports=2)
    assert isinstance(emu, PRManagerEmulated)
    assert emu.nexus_for_client(ClientIdentity(77, 0, 0)) == Nexus("pid:77")
    assert emu.nexus_for_client(ClientIdentity(77, 0, 0, target_port=2)) == Nexus("pid:77", 2)
    named = ClientIdentity(77, 0, 0, initiator="node-a", target_port=2)
    assert emu.nexus_for_client(named) == Nexus("node-a", 2)
    assert emu.cannot_block(fd)  # state in memory


def test_emulated_test_unit_ready_reports_and_clears_a_unit_attention(
    tree: ObjectTree, fd: int
) -> None:
    emu = tree.object_add("pr-manager-emulated", "e")
    assert isinstance(emu, PRManagerEmulated)
    a, b = Nexus("a"), Nexus("b")
    for nexus, key in ((a, 0xA), (b, 0xB)):
        params = bytes(8) + key.to_bytes(8, "big") + bytes(8)
        assert emu.execute(fd, REGISTER, params, nexus=nexus).ok
    clear = bytes([0x5F, 3, 0, 0, 0, 0, 0, 0, 24, 0])
    assert emu.execute(fd, clear, (0xA).to_bytes(8, "big") + bytes(16), nexus=a).ok
    # CLEAR tells the other registrant with RESERVATIONS PREEMPTED (2A/03), once.
    assert emu.test_unit_ready(fd, nexus=b) == ScsiResult.check(SenseCode.RESERVATIONS_PREEMPTED)
    assert emu.test_unit_ready(fd, nexus=b).status == ScsiStatus.GOOD
    assert emu.test_unit_ready(fd, nexus=a).status == ScsiStatus.GOOD


def test_a_delegate_answers_the_contract_as_its_target(tree: ObjectTree, fd: int) -> None:
    emu = tree.object_add("pr-manager-emulated", "e", initiator="me")
    wrapper = tree.object_add("test-wrapper", "w", target="e")
    assert isinstance(emu, PRManagerEmulated) and isinstance(wrapper, Wrapper)
    assert wrapper.default_nexus == emu.default_nexus == Nexus("me")
    client = ClientIdentity(5, 0, 0)
    assert wrapper.nexus_for_client(client) == emu.nexus_for_client(client) == Nexus("pid:5")
    assert wrapper.cannot_block(fd)
    emu.abort_handler = lambda nexuses: None
    assert not wrapper.cannot_block(fd)
    assert wrapper.test_unit_ready(fd).status == ScsiStatus.GOOD
    params = bytes(8) + (0xA).to_bytes(8, "big") + bytes(8)
    assert wrapper.execute(fd, REGISTER, params).ok
    assert emu.snapshot(fd).registrations[0][0] == Nexus("me")  # executed by the target
    tree.object_add("test-privileged", "p")
    privileged = tree.object_add("test-wrapper", "w2", target="p")
    assert isinstance(privileged, Wrapper)
    assert privileged.required_capabilities() == {Capability.CAP_SYS_ADMIN}


def test_a_batch_through_a_delegate_shares_one_look_at_a_state_file(
    tree: ObjectTree, fd: int, tmp_path: Path
) -> None:
    # batch(): commands that had all arrived when it began.  pr-manager-emulated on an SQLite
    # file then reads once whether another process committed; the wrapper passes it on.
    state = str(tmp_path / "pr.db")
    tree.object_add("pr-manager-emulated", "e", state=state)
    other = tree.object_add("pr-manager-emulated", "o", state=state, initiator="other")
    wrapper = tree.object_add("test-wrapper", "w", target="e")
    assert isinstance(wrapper, Wrapper) and isinstance(other, PRManagerEmulated)
    read_keys = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0])

    def keys() -> int:
        result = wrapper.execute(fd, read_keys)
        assert result.ok
        return int.from_bytes(result.data[4:8], "big") // 8

    def register(key: int, nexus: str) -> None:
        params = bytes(8) + key.to_bytes(8, "big") + bytes(8)
        assert other.execute(fd, REGISTER, params, nexus=Nexus(nexus)).ok

    register(0xA, "a")
    with wrapper.batch():
        assert keys() == 1  # the commit before the batch is seen
        register(0xB, "b")
        assert keys() == 1  # one look for the batch
    assert keys() == 2
    memory = tree.object_add("pr-manager-emulated", "m")
    assert isinstance(memory, PRManagerEmulated)
    with memory.batch():  # one process: nothing to share
        assert memory.execute(fd, REGISTER, bytes(8) + bytes([0] * 7 + [1]) + bytes(8)).ok
        assert int.from_bytes(memory.execute(fd, read_keys).data[4:8], "big") == 8


def test_a_delegate_needs_a_target(tree: ObjectTree) -> None:
    with pytest.raises(ObjectError, match="Parameter 'target' is missing"):
        tree.object_add("test-wrapper", "w")
    assert tree.find_object("w") is None


# -- no duck typing ----------------------------------------------------------------------------

#: The only getattr/hasattr calls src/ may make, and why: none asks a manager what it can do.
ALLOWED = {
    # QOM's class machinery reads its own class attributes while a class is being defined.
    ("qom/_object.py", "getattr(cls, '__qom_properties__', {})"),
    ("qom/_object.py", "getattr(cls, '__qom_info__', None)"),
    # Statistics count the worker threads the executor started (not a manager ability).
    ("daemon/_server.py", "getattr(self._executor, '_threads', ())"),
}


def _duck_typing(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "hasattr"):
                yield ast.unparse(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if "inspect" in names or module == "inspect":
                yield "import inspect"


def test_nothing_in_src_finds_abilities_by_getattr_or_inspect() -> None:
    found = {
        (str(path.relative_to(SRC)), call)
        for path in SRC.rglob("*.py")
        for call in _duck_typing(path)
    }
    assert found <= ALLOWED, sorted(found - ALLOWED)
