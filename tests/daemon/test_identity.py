# SPDX-License-Identifier: MIT
"""Named initiators and TEST UNIT READY through qompr-pr-helper (qompr's protocol extension).

Who may name itself (root, ``--allow-naming-uid``), what a named client's commands carry
into the backend (:meth:`~qompr.managers.PRManager.nexus_for_client`), and the fate of
hostile messages on a real socket (the connection closes, the daemon keeps serving, no
descriptor stays behind).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.errors import ConnectError
from qompr.managers import ClientIdentity
from qompr.managers import PRManager
from qompr.managers import PRManagerHelper
from qompr.managers.emulated import PRManagerEmulated
from qompr.protocol import Feature
from qompr.protocol import Identify
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import InProcessServer
from qompr.testing import connected
from qompr.testing import is_closed
from qompr.testing import pr_in
from qompr.testing import pr_out_command
from qompr.testing import recv_exact
from qompr.testing import request
from qompr.transport.sync import HelperClient

NAMING = int(Feature.QOMPR_NAMING)
TUR = int(Feature.QOMPR_TEST_UNIT_READY)
NOBODY = 65534


class Recorder(PRManager, qom_type="test-identity-recorder"):
    """Records the ClientIdentity the server asks about and the nexus of each command."""

    def instance_init(self) -> None:
        super().instance_init()
        self.clients: list[ClientIdentity] = []
        self.nexuses: list[Nexus | None] = []

    def nexus_for_client(self, client: ClientIdentity) -> Nexus | None:
        self.clients.append(client)
        name = client.initiator or f"pid:{client.pid}"
        return Nexus(name, client.target_port or 1)

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        self.nexuses.append(nexus)
        return ScsiResult.good(bytes(8))

    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        self.nexuses.append(nexus)
        return ScsiResult.check(SenseCode.RESET)


def recorder(tree: ObjectTree) -> Recorder:
    rec = tree.object_add("test-identity-recorder", "rec")
    assert isinstance(rec, Recorder)
    return rec


@pytest.fixture
def tree() -> Iterator[ObjectTree]:
    tree = qompr.new_tree(load_entrypoints=False)
    tree.types.register(Recorder)
    yield tree
    for obj in reversed(tree.user_objects()):
        if obj.id is not None:
            tree.object_del(obj.id)


@pytest.fixture
def lu(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def helper(
    tree: ObjectTree,
    oid: str,
    path: str,
    *,
    initiator: str | None = None,
    target_port: int | None = None,
    test_unit_ready: bool = False,
) -> PRManagerHelper:
    obj = tree.object_add("pr-manager-helper", oid, path=path, complete=False)
    assert isinstance(obj, PRManagerHelper)
    obj.use_extension(initiator=initiator, target_port=target_port, test_unit_ready=test_unit_ready)
    tree.complete(obj)
    return obj


def raw_identify(sock: socket.socket, requested: int) -> int:
    """Ask for *requested* on a fresh raw connection; the granted word."""
    assert recv_exact(sock, 4) == bytes(4)  # announces nothing, like qemu-pr-helper
    sock.sendall(struct.pack(">I", requested))
    return int(struct.unpack(">I", recv_exact(sock, 4))[0])


# -- what a named client is ---------------------------------------------------------------------


def test_named_connections_are_one_initiator_across_connections(tree: ObjectTree, lu: int) -> None:
    emu = tree.object_add("pr-manager-emulated", "emu", target_ports=2)
    assert isinstance(emu, PRManagerEmulated)
    with InProcessServer.serving(emu) as srv:
        first = helper(tree, "a", srv.path, initiator="node1")
        register = pr_out_command(0, sark=0xA)
        assert first.execute(lu, *register).status == ScsiStatus.GOOD
        tree.object_del("a")  # the connection goes away, as a one-shot sg_persist's
        again = helper(tree, "b", srv.path, initiator="node1")
        reserve = pr_out_command(1, rk=0xA, pr_type=5)
        assert again.execute(lu, *reserve).status == ScsiStatus.GOOD
        # Unnamed, this process is another initiator: not a registrant, so in conflict.
        plain = tree.object_add("pr-manager-helper", "c", path=srv.path)
        assert isinstance(plain, PRManagerHelper)
        assert plain.execute(lu, *reserve).status == ScsiStatus.RESERVATION_CONFLICT
        # And through another target port, node1 is another I_T nexus.
        other_port = helper(tree, "d", srv.path, initiator="node1", target_port=2)
        assert other_port.execute(lu, *reserve).status == ScsiStatus.RESERVATION_CONFLICT


def test_identity_reaches_nexus_for_client_with_credentials(tree: ObjectTree, lu: int) -> None:
    rec = recorder(tree)
    with InProcessServer.serving(rec) as srv:
        named = helper(tree, "a", srv.path, initiator="iqn.2026-12.org.example:n1", target_port=3)
        named.execute(lu, pr_in()[:10])
        me = ClientIdentity(os.getpid(), os.geteuid(), os.getegid())
        assert rec.clients[-2:] == [
            me,  # at accept, from the credentials
            ClientIdentity(
                me.pid, me.uid, me.gid, initiator="iqn.2026-12.org.example:n1", target_port=3
            ),
        ]
        assert rec.nexuses == [Nexus("iqn.2026-12.org.example:n1", 3)]


def test_test_unit_ready_goes_to_the_backend_on_the_named_nexus(tree: ObjectTree, lu: int) -> None:
    rec = recorder(tree)
    with InProcessServer.serving(rec) as srv:
        named = helper(tree, "a", srv.path, initiator="node1", test_unit_ready=True)
        result = named.test_unit_ready(lu)
        assert (result.status, result.sense_code) == (ScsiStatus.CHECK_CONDITION, SenseCode.RESET)
        assert rec.nexuses == [Nexus("node1")]
        # Without use_extension, the manager does not send it (QEMU's protocol has no TUR).
        plain = tree.object_add("pr-manager-helper", "p", path=srv.path)
        assert isinstance(plain, PRManagerHelper)
        assert plain.test_unit_ready(lu).sense_code == SenseCode.INVALID_OPCODE
        assert len(rec.nexuses) == 1


def test_asyncio_connections_name_themselves_too(tree: ObjectTree, lu: int) -> None:
    rec = recorder(tree)
    with InProcessServer.serving(rec) as srv:
        named = helper(tree, "a", srv.path, initiator="node7", target_port=2)

        async def both() -> None:
            await asyncio.gather(*(named.execute_async(lu, pr_in()[:10]) for _ in range(3)))

        asyncio.run(both())
        assert rec.nexuses == [Nexus("node7", 2)] * 3


def test_sgio_backend_refuses_a_name_it_cannot_honour() -> None:
    with InProcessServer() as srv:
        with pytest.raises(ConnectError) as caught:
            HelperClient.connect(srv.path, timeout=5, identify=Identify("node1"))
        assert caught.value.message == (
            f"'{srv.path}': the helper cannot name initiator 'node1': its backend does not"
            " emulate initiators (a device knows its own)"
        )
        # TEST UNIT READY alone is fine: the device answers it.
        client = HelperClient.connect(srv.path, timeout=5, features=Feature.QOMPR_TEST_UNIT_READY)
        client.close()


def test_use_extension_checks_its_arguments(tree: ObjectTree) -> None:
    obj = tree.object_add("pr-manager-helper", "h", path="/nonexistent", complete=False)
    assert isinstance(obj, PRManagerHelper)
    from qompr.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="together with an initiator"):
        obj.use_extension(target_port=2)
    with pytest.raises(LocalProtocolError, match="printable"):
        obj.use_extension(initiator="node 1")
    assert obj.extension == Feature.NONE
    obj.use_extension(initiator="n", test_unit_ready=True)
    assert obj.extension == Feature.QOMPR_NAMING | Feature.QOMPR_TEST_UNIT_READY


# -- who may name itself ----------------------------------------------------------------------


def test_root_is_granted_both_bits_qemu_sees_nothing(tree: ObjectTree) -> None:
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: the root rule needs a root client")
    rec = recorder(tree)
    with InProcessServer.serving(rec) as srv:
        with connected(srv.path, handshake=False) as sock:
            assert raw_identify(sock, NAMING | TUR) == NAMING | TUR
        with connected(srv.path) as sock, open("/dev/null", "rb") as null:
            # QEMU's handshake: four zero bytes each way, and no grant word follows.
            status, _, data = request(sock, pr_in(8), null.fileno())
            assert (status, data) == (0, bytes(8))


_NOBODY_CLIENT = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
assert s.recv(4) == bytes(4)
s.sendall(struct.pack(">I", int(sys.argv[2])))
word = s.recv(4)
print(struct.unpack(">I", word)[0] if len(word) == 4 else "closed")
"""


def _as_nobody(path: str, requested: int) -> str:
    return subprocess.run(
        ["/usr/bin/python3", "-I", "-c", _NOBODY_CLIENT, path, str(requested)],
        user=NOBODY,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize(("listed", "granted"), [((), TUR), ((NOBODY,), NAMING | TUR)])
def test_other_uids_name_themselves_only_when_listed(
    tree: ObjectTree, listed: tuple[int, ...], granted: int, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        pytest.skip("NOT ROOT or no /usr/bin/python3: cannot run a client as nobody")
    rec = recorder(tree)
    with InProcessServer.serving(rec, allow_naming_uids=listed) as srv:
        os.chmod(os.path.dirname(srv.path), 0o755)
        os.chmod(srv.path, 0o777)
        with caplog.at_level("INFO", logger="qompr.daemon"):
            assert _as_nobody(srv.path, NAMING | TUR) == str(granted)
    refused = f"uid {NOBODY} may not name its initiator (not root, not --allow-naming-uid)"
    assert (refused in caplog.messages) == (granted == TUR)


def test_client_reports_a_refused_name_clearly(tmp_path: Path) -> None:
    """A helper that grants less than asked (as for a uid not listed): a clear error."""
    path = str(tmp_path / "refusing.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def refuse() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(bytes(4))
            recv_exact(conn, 4)
            conn.sendall(struct.pack(">I", 0))  # nothing granted
            conn.recv(1)

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    with pytest.raises(ConnectError) as caught:
        HelperClient.connect(path, timeout=5, identify=Identify("node1"))
    assert caught.value.message == (
        f"Failed to negotiate with '{path}': the helper does not let uid {os.geteuid()} name"
        " its initiator (qompr-pr-helper --allow-naming-uid)"
    )
    thread.join(5)
    listener.close()


# -- hostile messages on a real socket ------------------------------------------------------------


def _identify_header(length: int, flags: int = 0) -> bytes:
    header = bytearray(16)
    header[0] = 0xC1
    header[1] = flags
    header[7:9] = length.to_bytes(2, "big")
    return bytes(header)


HOSTILE = {
    "unasked": (0, Identify("node1").to_bytes()),
    "not-granted-bit": (TUR, Identify("node1").to_bytes()),
    "oversized": (NAMING, _identify_header(0xFFFF) + b"x" * 64),
    "zero-length": (NAMING, _identify_header(0)),
    "reserved-flags": (NAMING, _identify_header(5, flags=0x80) + b"node1"),
    "control-bytes": (NAMING, _identify_header(5) + b"no\nde"),
    "twice": (NAMING, Identify("a").to_bytes() + Identify("b").to_bytes()),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_identify_closes_and_the_daemon_serves_on(
    tree: ObjectTree, case: str, lu: int
) -> None:
    requested, payload = HOSTILE[case]
    rec = recorder(tree)
    with InProcessServer.serving(rec) as srv:
        with connected(srv.path, handshake=False) as sock:
            assert recv_exact(sock, 4) == bytes(4)
            sock.sendall(struct.pack(">I", requested))
            if requested:
                assert len(recv_exact(sock, 4)) == 4
            socket.send_fds(sock, [payload], [lu]) if case == "unasked" else sock.sendall(payload)
            if case == "twice":  # the first is answered, the second closes
                assert recv_exact(sock, 104)[:8] == bytes(8)
            assert is_closed(sock, timeout=10)
        # The daemon still serves, and holds nothing of the dead connection.
        with connected(srv.path) as sock:
            assert request(sock, pr_in(8), lu)[0] == 0
        deadline = time.monotonic() + 10
        while srv.server.statistics().connections_open and time.monotonic() < deadline:
            time.sleep(0.02)  # the loop closes its side once it sees the hang-up
        stats = srv.server.statistics()
        assert (stats.connections_open, stats.protocol_errors) == (0, 1)
        assert all(nexus is None or nexus.initiator != "b" for nexus in rec.nexuses)


def test_truncated_identify_is_closed_by_the_stall_clock(tree: ObjectTree) -> None:
    rec = recorder(tree)
    with InProcessServer.serving(rec, stall_timeout=0.3) as srv:
        with connected(srv.path, handshake=False) as sock:
            assert raw_identify(sock, NAMING) == NAMING
            sock.sendall(Identify("node1").to_bytes()[:20])
            assert is_closed(sock, timeout=10)
        assert srv.server.statistics().connections_stalled == 1


def test_allow_naming_uid_option_and_help() -> None:
    from qompr.daemon._options import Exit
    from qompr.daemon._options import parse_args

    opts = parse_args(
        ["qompr-pr-helper", "--allow-naming-uid=1000,1001", "--allow-naming-uid", "7"]
    )
    assert opts.allow_naming_uids == [1000, 1001, 7]
    assert parse_args(["qompr-pr-helper"]).allow_naming_uids == []
    with pytest.raises(Exit) as caught:
        parse_args(["qompr-pr-helper", "--allow-naming-uid=qemu"])
    assert caught.value.err == "qompr-pr-helper: invalid uid 'qemu'\n"
    with pytest.raises(Exit) as caught:
        parse_args(["qompr-pr-helper", "--help"])
    assert "--allow-naming-uid=UID[,UID...]" in caught.value.out
