# SPDX-License-Identifier: MIT
"""pr-manager-emulated on a real PostgreSQL: opening (schema, lu-id), faults (a server that
stops, crashes or freezes: retryable answers within the timeout, nothing acknowledged lost,
service back by itself), and stores from plugins."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.errors import ObjectError
from qompr.errors import QomprError
from qompr.managers.emulated import MemoryStore
from qompr.managers.emulated import PRManagerEmulated
from qompr.managers.emulated import StateFileError
from qompr.managers.emulated import Store
from qompr.managers.emulated import StoreOptions
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.testing.postgres import PostgresCluster

from .harness import pr_in
from .harness import pr_out

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")

from qompr.managers.emulated._postgres import apply_schema  # noqa: E402
from qompr.managers.emulated._postgres import redact  # noqa: E402
from qompr.managers.emulated._postgres import schema_sql  # noqa: E402

RETRYABLE = SenseCode.LUN_COMM_FAILURE  # ABORTED COMMAND 0Bh / 08h / 00h


def manager(tree: ObjectTree, state: str, obj_id: str = "pg", **props: Any) -> PRManagerEmulated:
    props.setdefault("lu_id", "path")
    obj = tree.object_add("pr-manager-emulated", obj_id, state=state, **props)
    assert isinstance(obj, PRManagerEmulated)
    return obj


@pytest.fixture
def image(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "disk.img", os.O_RDWR | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


@pytest.fixture(scope="module")
def fault_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own, for tests that stop, crash or freeze it."""
    with PostgresCluster.create() as cluster:
        apply_schema(cluster.uri())
        yield cluster


@pytest.fixture
def private_cluster(fault_cluster: PostgresCluster) -> PostgresCluster:
    """:func:`fault_cluster`, up (an earlier test may have left it down)."""
    if not fault_cluster.running:
        fault_cluster.start()
    return fault_cluster


def command(m: PRManagerEmulated, fd: int, nexus: Nexus, cmd: tuple[bytes, bytes]) -> ScsiResult:
    return m.run(fd, cmd[0], cmd[1], nexus=nexus)


# -- opening -----------------------------------------------------------------------------


def test_no_schema_no_silent_ddl(tree: ObjectTree, postgres_uri: str) -> None:
    with pytest.raises(StateFileError, match="has no qompr schema") as info:
        manager(tree, postgres_uri)
    assert "qompr emulated schema --apply" in (info.value.hint or "")
    m = manager(tree, postgres_uri, create_schema=True)
    assert m.engine is not None
    tree.object_del("pg")
    manager(tree, postgres_uri)  # the schema is there now


def test_schema_text_is_versioned_and_idempotent(postgres_uri: str) -> None:
    text = schema_sql()
    assert "CREATE TABLE IF NOT EXISTS qompr.lu" in text
    assert "'schema_version', '1'" in text
    apply_schema(postgres_uri)
    apply_schema(postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        conn.execute("UPDATE qompr.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateFileError, match="schema version 99"):
        apply_schema(postgres_uri)


def test_a_shared_store_refuses_host_local_names(tree: ObjectTree, pg_state_uri: str) -> None:
    with pytest.raises(ObjectError, match="cannot be .inode. with a shared PR state") as info:
        manager(tree, pg_state_uri, lu_id="inode")
    assert "lu-id=path" in (info.value.hint or "")
    with pytest.raises(StateFileError, match="start=power-cycle"):
        manager(tree, pg_state_uri, start="power-cycle")
    # lu-name names one logical unit for every host: allowed with any lu-id.
    assert manager(tree, pg_state_uri, lu_id="inode", lu_name="shared0").logical_unit(-1)


def test_unreachable_database_at_start_is_an_error(tree: ObjectTree) -> None:
    with pytest.raises(StateFileError, match="Could not open PR state database") as info:
        manager(tree, "postgresql://qompr:secret@127.0.0.1:1/none", timeout=2000)
    assert "secret" not in str(info.value)
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_two_managers_share_one_logical_unit_by_path(
    tree: ObjectTree, pg_state_uri: str, tmp_path: Path
) -> None:
    """Two "hosts" open the same image through different paths (a symlink): one LU."""
    (tmp_path / "disk.img").touch()
    (tmp_path / "alias.img").symlink_to(tmp_path / "disk.img")
    one = manager(tree, pg_state_uri, "one", initiator_rule="vm-name")
    two = manager(tree, pg_state_uri, "two", initiator_rule="vm-name")
    fd1 = os.open(tmp_path / "disk.img", os.O_RDWR)
    fd2 = os.open(tmp_path / "alias.img", os.O_RDWR)
    try:
        assert one.logical_unit(fd1) == two.logical_unit(fd2) == f"path:{tmp_path}/disk.img"
        a, b = Nexus("vm:a"), Nexus("vm:b")
        assert command(one, fd1, a, pr_out(PrOutAction.REGISTER, sark=1)).ok
        assert command(one, fd1, a, pr_out(PrOutAction.RESERVE, rk=1, pr_type=3)).ok
        assert command(two, fd2, b, pr_out(PrOutAction.REGISTER, sark=2)).ok
        assert (
            command(two, fd2, b, pr_out(PrOutAction.RESERVE, rk=2, pr_type=3))
            == ScsiResult.conflict()
        )
        assert command(two, fd2, b, pr_out(PrOutAction.PREEMPT, rk=2, sark=1, pr_type=3)).ok
        # a's next command, on the other manager, reports the preemption once.
        keys = one.run(fd1, pr_in(PrInAction.READ_KEYS), nexus=a)
        assert keys.sense_code == SenseCode.REGISTRATIONS_PREEMPTED
        assert one.snapshot(fd1) == two.snapshot(fd2)
        two.power_cycle(fd2)
        assert one.unit_attentions(fd1, b) == (qompr.managers.emulated.POWER_ON_OCCURRED,)
    finally:
        os.close(fd1)
        os.close(fd2)


# -- faults ------------------------------------------------------------------------------


def _timed(m: PRManagerEmulated, fd: int, nexus: Nexus, cmd: tuple[bytes, bytes]) -> float:
    start = time.monotonic()
    result = command(m, fd, nexus, cmd)
    took = time.monotonic() - start
    assert result.sense_code == RETRYABLE, result
    return took


def test_a_stopped_database_gives_retryable_answers_then_service_resumes(
    tree: ObjectTree, private_cluster: PostgresCluster, image: int
) -> None:
    m = manager(tree, private_cluster.uri(), timeout=1500)
    a = Nexus("vm:a")
    assert command(m, image, a, pr_out(PrOutAction.REGISTER, sark=1)).ok
    private_cluster.stop(mode="fast")
    # Every command, PR OUT and PR IN alike, is answered in time with the retryable sense.
    for cmd in (pr_out(PrOutAction.REGISTER, rk=1, sark=2), (pr_in(PrInAction.READ_KEYS), b"")):
        assert _timed(m, image, a, cmd) < 1.5 + 1.0
    private_cluster.start()
    deadline = time.monotonic() + 30
    while not command(m, image, a, pr_out(PrOutAction.REGISTER, rk=1, sark=2)).ok:
        assert time.monotonic() < deadline, "service did not resume"
    assert m.snapshot(image).keys == (2,)


def test_a_frozen_database_is_answered_within_the_timeout(
    tree: ObjectTree, private_cluster: PostgresCluster, image: int
) -> None:
    """A server that accepts bytes but never answers (SIGSTOP): no command hangs."""
    m = manager(tree, private_cluster.uri(), timeout=1000)
    a = Nexus("vm:a")
    assert command(m, image, a, pr_out(PrOutAction.REGISTER, sark=1)).ok
    pids = _server_pids(private_cluster)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for cmd in (
            pr_out(PrOutAction.REGISTER, rk=1, sark=2),
            (pr_in(PrInAction.READ_KEYS), b""),
            pr_out(PrOutAction.RESERVE, rk=1, pr_type=1),
        ):
            assert _timed(m, image, a, cmd) < 1.0 + 1.0
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while not command(m, image, a, pr_out(PrOutAction.RESERVE, rk=1, pr_type=1)).ok:
        assert time.monotonic() < deadline, "service did not resume"
    snap = m.snapshot(image)
    # A command answered with the retryable sense while its commit could not happen applied
    # nothing: the key is still 1 (the REGISTER to 2 above was not applied).
    assert snap.keys == (1,)
    assert snap.reservation is not None


def _server_pids(cluster: PostgresCluster) -> list[int]:
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


def test_a_crash_loses_nothing_acknowledged(
    tree: ObjectTree, private_cluster: PostgresCluster, image: int
) -> None:
    """Four threads register one new initiator each per command while the server crashes
    and recovers (``pg_ctl restart -m immediate``): every answer is GOOD or the retryable
    sense, and every GOOD registration is there afterwards."""
    m = manager(tree, private_cluster.uri(), timeout=2000, max_registrations=0)
    good: list[int] = []
    other: list[ScsiResult] = []
    retried = 0
    stop = threading.Event()
    lock = threading.Lock()

    def client(base: int) -> None:
        nonlocal retried
        for n in range(base, base + 100_000):
            if stop.is_set():
                return
            result = command(m, image, Nexus(f"vm:{n}"), pr_out(PrOutAction.REGISTER, sark=n))
            with lock:
                if result.ok:
                    good.append(n)
                elif result.sense_code == RETRYABLE:
                    retried += 1
                else:
                    other.append(result)

    threads = [threading.Thread(target=client, args=(i * 1_000_000 + 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(good) >= 20)
        private_cluster.restart(mode="immediate")
        before = len(good)
        _wait_for(lambda: len(good) >= before + 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert other == []
    kept = set(m.snapshot(image).keys)
    assert set(good) <= kept
    # Registrations answered with the retryable sense may or may not be there (a commit in
    # flight when the server died); nothing else is.
    assert len(kept - set(good)) <= retried


def _wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- stores from plugins -----------------------------------------------------------------


def test_a_plugin_serves_another_scheme(tree: ObjectTree) -> None:
    opened: list[tuple[str, StoreOptions]] = []

    class Plugin:
        @qompr.hookimpl
        def qompr_emulated_store(self, uri: str, options: StoreOptions) -> Store | None:
            if not uri.startswith("mem://"):
                return None
            opened.append((uri, options))
            return MemoryStore()

    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin())
    hooked = ObjectTree(tree.types, hook=pm.hook)
    m = hooked.object_add("pr-manager-emulated", "p", state="mem://x", timeout=1234)
    assert isinstance(m, PRManagerEmulated)
    assert opened == [("mem://x", StoreOptions(timeout=1.234))]
    assert m.run(-1, pr_in(PrInAction.READ_KEYS), nexus=Nexus("A")).ok is False  # no fd
    with pytest.raises(QomprError, match="'etcd://...' is not supported"):
        hooked.object_add("pr-manager-emulated", "q", state="etcd://cluster/x")


# -- through qompr-pr-helper ---------------------------------------------------------------


def test_two_helper_daemons_share_one_state(pg_state_uri: str, tmp_path: Path) -> None:
    """The documented command line, twice ("two hosts"): a reservation made through one
    daemon is seen, and released, through the other."""
    from qompr.testing import HelperProcess
    from qompr.testing import connected
    from qompr.testing import request

    image = tmp_path / "shared.img"
    image.write_bytes(bytes(4096))
    backend = f"pr-manager-emulated,id=e,state={pg_state_uri},lu-id=path"
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    fd = os.open(image, os.O_RDWR)
    try:
        with (
            HelperProcess.qompr("--backend", backend, workdir=str(one_dir)) as one,
            HelperProcess.qompr("--backend", backend, workdir=str(two_dir)) as two,
            connected(one.path) as first,
            connected(two.path) as second,
        ):
            cdb, data = pr_out(PrOutAction.REGISTER, sark=0x1111)
            assert request(first, cdb.ljust(16, b"\0"), fd, data)[0] == 0
            cdb, data = pr_out(PrOutAction.RESERVE, rk=0x1111, pr_type=3)
            assert request(first, cdb.ljust(16, b"\0"), fd, data)[0] == 0
            status, _, keys = request(second, pr_in(PrInAction.READ_KEYS).ljust(16, b"\0"), fd)
            assert status == 0
            assert keys[:16] == bytes.fromhex("00000001 00000008 0000000000001111")
            status, _, res = request(
                second, pr_in(PrInAction.READ_RESERVATION).ljust(16, b"\0"), fd
            )
            assert status == 0
            assert res[:24] == bytes.fromhex(
                "00000001 00000010 0000000000001111 00000000 0003 0000"
            )
            # The same client process is the same initiator through either daemon: it holds
            # the reservation there too, and releases it there.
            cdb, data = pr_out(PrOutAction.RELEASE, rk=0x1111, pr_type=3)
            assert request(second, cdb.ljust(16, b"\0"), fd, data)[0] == 0
            status, _, res = request(first, pr_in(PrInAction.READ_RESERVATION).ljust(16, b"\0"), fd)
            assert (status, res[4:8]) == (0, bytes(4))
    finally:
        os.close(fd)


def test_a_lost_commit_is_looked_up_by_its_token(pg_state_uri: str) -> None:
    """After a connection lost during COMMIT the store tells committed from not committed
    by the tokens the row keeps, and says "unknown" past them."""
    from qompr.managers.emulated import open_store
    from qompr.managers.emulated._postgres import PostgresStore
    from qompr.managers.emulated._postgres import _Job

    store = open_store(pg_state_uri, StoreOptions(timeout=10.0))
    assert isinstance(store, PostgresStore)
    lu = f"tokens-{time.time_ns()}"
    try:
        for key in range(1, 41):
            result = command_on(
                store, lu, Nexus(f"vm:{key}"), pr_out(PrOutAction.REGISTER, sark=key)
            )
            assert result.ok
        with psycopg.connect(pg_state_uri) as conn:
            row = conn.execute(
                "SELECT version, state->'recent' FROM qompr.lu WHERE name = %s", (lu,)
            ).fetchone()
        assert row is not None
        version, recent = row
        assert version == 40 and len(recent) == 32
        deadline = time.monotonic() + 10

        def job(txn: tuple[str, int] | None) -> _Job:
            return _Job(lu, deadline, txn=txn)

        assert store._resolve(job((recent[0], version)), deadline) is True
        assert store._resolve(job((recent[31], version - 31)), deadline) is True
        assert store._resolve(job(("lost", version + 1)), deadline) is False
        assert store._resolve(job(("lost", version - 32)), deadline) is None
        assert store._resolve(job(None), deadline) is True  # wrote nothing
    finally:
        store.close()


def command_on(store: Store, lu: str, nexus: Nexus, cmd: tuple[bytes, bytes]) -> ScsiResult:
    from qompr.managers.emulated import Engine

    outcome = store.transact(lu, lambda state: Engine().execute(state, nexus, cmd[0], cmd[1]))
    assert outcome.result is not None
    return outcome.result


def test_a_corrupt_document_is_a_target_failure_not_a_dead_worker(
    tree: ObjectTree, pg_state_uri: str, image: int
) -> None:
    m = manager(tree, pg_state_uri, initiator_rule="vm-name")
    a = Nexus("vm:a")
    assert command(m, image, a, pr_out(PrOutAction.REGISTER, sark=1)).ok
    lu = m.logical_unit(image)
    with psycopg.connect(pg_state_uri, autocommit=True) as conn:
        good = conn.execute("SELECT state FROM qompr.lu WHERE name = %s", (lu,)).fetchone()
        conn.execute(
            "UPDATE qompr.lu SET state = '{\"v\": 99}', version = version + 1 WHERE name = %s",
            (lu,),
        )
        # More failing commands than workers: none of them may cost a worker.
        for _ in range(6):
            answer = command(m, image, a, pr_out(PrOutAction.REGISTER, rk=1, sark=2))
            assert answer.sense_code == SenseCode.TARGET_FAILURE
        assert good is not None
        conn.execute(
            "UPDATE qompr.lu SET state = %s, version = version + 1 WHERE name = %s",
            (psycopg.types.json.Jsonb(good[0]), lu),
        )
    assert command(m, image, a, pr_out(PrOutAction.REGISTER, rk=1, sark=2)).ok
    assert m.snapshot(image).keys == (2,)


def test_reads_arriving_during_a_select_wait_for_the_next_one_together(
    pg_state_uri: str,
) -> None:
    """One SELECT in flight per logical unit: reads that arrive meanwhile share the next
    SELECT (bench/cluster.py: more reads per round trip), and none is answered by a SELECT
    that began before it arrived (it would miss a write acknowledged before then)."""
    from qompr.managers.emulated import open_store
    from qompr.managers.emulated._postgres import PostgresStore

    store = open_store(pg_state_uri, StoreOptions(timeout=10.0))
    assert isinstance(store, PostgresStore)
    lu = f"reads-{time.time_ns()}"
    first = Nexus("vm:first")
    assert command_on(store, lu, first, pr_out(PrOutAction.REGISTER, sark=1)).ok
    real_read = store._read
    selects: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def read(conn: Any, name: str) -> Any:
        selects.append(name)
        state = real_read(conn, name)
        if len(selects) == 1:  # the first SELECT has read; its answer is held back
            entered.set()
            assert release.wait(10)
        return state

    store._read = read  # type: ignore[method-assign,assignment]
    seen: dict[str, int] = {}

    def snapshot(who: str) -> None:
        seen[who] = len(store.snapshot(lu).registrations)

    try:
        early = threading.Thread(target=snapshot, args=("early",))
        early.start()
        assert entered.wait(10)
        # Acknowledged while the early SELECT is in flight (a write is not a read: it goes
        # on), so every read arriving from now on must see two registrations.
        second = Nexus("vm:second")
        assert command_on(store, lu, second, pr_out(PrOutAction.REGISTER, sark=2)).ok
        late = [threading.Thread(target=snapshot, args=(f"late{i}",)) for i in range(5)]
        for thread in late:
            thread.start()
        time.sleep(0.3)  # free workers there are (four): none may start another SELECT
        assert selects == [lu]
        release.set()
        for thread in (early, *late):
            thread.join(10)
        assert len(selects) == 2  # the five late reads shared one SELECT
        assert seen == {"early": 1, **{f"late{i}": 2 for i in range(5)}}
    finally:
        release.set()
        store.close()
