# SPDX-License-Identifier: MIT
"""A PostgreSQL database with qompr's schema, for the emulated stores' tests."""

from __future__ import annotations

import pytest

from qompr.testing.postgres import PostgresCluster


@pytest.fixture(scope="session")
def pg_state_uri(postgres_cluster: PostgresCluster) -> str:
    """A database of the session cluster with qompr's schema applied, shared by the tests
    that use it (each uses its own logical unit names)."""
    pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")
    from qompr.managers.emulated._postgres import apply_schema

    if not postgres_cluster.running:
        postgres_cluster.start()
    uri = postgres_cluster.create_database("emulated_state")
    apply_schema(uri)
    return uri
