# SPDX-License-Identifier: MIT
"""The stores a cluster of daemons shares: an SQLite file (several daemons of one host) and
PostgreSQL (daemons of any hosts; the suite's throw-away cluster, a fresh database each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import qompr
from qompr.errors import QomprError
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


def _probe(state: str, extra: str) -> None:
    """Skip, saying why, when this branch's pr-manager-emulated cannot open *state*."""
    tree = qompr.new_tree(load_entrypoints=False)
    spec = f"pr-manager-emulated,id=probe,state={state}" + (f",{extra}" if extra else "")
    try:
        (manager,) = create_objects(tree, [spec])
    except QomprError as exc:
        pytest.skip(f"pr-manager-emulated cannot use {state}: {exc.render()}")
    manager.unparent()


def _store(request: pytest.FixtureRequest, kind: str, directory: Path) -> SharedStore:
    if kind == "sqlite":
        # state-sync=normal: survives a killed process (what these tests do), not a power loss.
        return SharedStore(kind, str(directory / "pr.db"), "state-sync=normal")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    if not cluster.running:
        cluster.start()  # an earlier test left it down
    uri = cluster.create_database()
    # A shared store refuses host-local inode identities; the fresh database needs the schema.
    extra = "lu-id=path,create-schema=on"
    _probe(uri, extra)
    return SharedStore(kind, uri, extra, cluster)


@pytest.fixture(params=STORES)
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    """A fresh shared store (one test's)."""
    store = _store(request, request.param, tmp_path)
    yield store
    if store.postgres is not None and store.postgres.running:
        store.postgres.drop_database(store.state.rsplit("/", 1)[1])
