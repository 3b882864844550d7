# SPDX-License-Identifier: MIT
"""qompr.testing.postgres: a real throw-away cluster that keeps what was committed across a
crash, serves fresh databases, and stops and starts on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qompr.testing.postgres import PostgresCluster
from qompr.testing.postgres import PostgresUnavailableError
from qompr.testing.postgres import find_postgres_bindir


def test_the_session_cluster_is_durable(postgres_cluster: PostgresCluster) -> None:
    settings = postgres_cluster.psql(
        "SELECT setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit') "
        "ORDER BY name"
    )
    assert settings.split() == ["on", "on"]
    assert postgres_cluster.uri().startswith(
        f"postgresql://qompr@127.0.0.1:{postgres_cluster.port}/"
    )


def test_a_fresh_database_per_test(postgres_cluster: PostgresCluster, postgres_uri: str) -> None:
    name = postgres_uri.rsplit("/", 1)[1]
    assert postgres_cluster.psql("SELECT count(*) FROM pg_class WHERE relname = 'x'", name) == "0\n"
    postgres_cluster.psql("CREATE TABLE x (v int)", name)
    assert name in postgres_cluster.psql("SELECT datname FROM pg_database")


def test_what_was_committed_survives_a_crash() -> None:
    with PostgresCluster.create() as pg:
        pg.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
        pg.restart(mode="immediate")
        assert pg.psql("SELECT v FROM t") == "42\n"
        pg.stop(mode="immediate")
        assert not pg.running
        with pytest.raises(PostgresUnavailableError):
            pg.psql("SELECT 1")
        pg.start()
        assert pg.running
        base = pg.base
        if os.geteuid() == 0:
            assert base.joinpath("data").stat().st_uid != 0  # PostgreSQL refuses root
    assert not base.exists()


def test_missing_server_programs_are_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QOMPR_PG_BINDIR", str(tmp_path))
    assert find_postgres_bindir() is None
    with pytest.raises(PostgresUnavailableError, match="not installed") as info:
        PostgresCluster.create()
    assert "QOMPR_PG_BINDIR" in (info.value.hint or "")
