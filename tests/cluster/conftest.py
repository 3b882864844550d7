# SPDX-License-Identifier: MIT
"""The stores a cluster of daemons shares: an SQLite file (several daemons of one host) and
PostgreSQL (daemons of any hosts; the suite's throw-away cluster, a fresh database each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import qompr
from qompr.options import create_objects
from qompr.testing.postgres import PostgresCluster

#: The stores every cluster test runs on.
STORES = ("sqlite", "postgresql")


@attrs.frozen
class SharedStore:
    """A store for a cluster: its ``state`` value and the backend properties that go with it.

    :param postgres: the PostgreSQL cluster behind it (faults restart it), if any.
    """

    kind: str
    state: str
    extra: str = ""
    postgres: PostgresCluster | None = None


def _create_schema(uri: str) -> None:
    """Create the store's tables once, before the daemons start: they are not given
    ``create-schema=on`` (no silent DDL in a privileged daemon), an administrator's
    ``qompr emulated schema --apply`` stands for this."""
    tree = qompr.new_tree(load_entrypoints=False)
    spec = f"pr-manager-emulated,id=setup,state={uri},lu-id=path,create-schema=on"
    (manager,) = create_objects(tree, [spec])
    manager.unparent()


def _store(request: pytest.FixtureRequest, kind: str, directory: Path) -> SharedStore:
    if kind == "sqlite":
        # state-sync=normal: survives a killed process (what these tests do), not a power loss.
        return SharedStore(kind, str(directory / "pr.db"), "state-sync=normal,lu-id=path")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    if not cluster.running:
        cluster.start()  # an earlier test left it down
    uri = cluster.create_database()
    _create_schema(uri)
    # A shared store refuses host-local inode identities.
    return SharedStore(kind, uri, "lu-id=path", cluster)


@pytest.fixture(params=STORES)
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    """A fresh shared store (one test's)."""
    store = _store(request, request.param, tmp_path)
    yield store
    if store.postgres is not None and store.postgres.running:
        store.postgres.drop_database(store.state.rsplit("/", 1)[1])
