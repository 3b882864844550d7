# SPDX-License-Identifier: MIT
"""Fixtures every test directory shares, and the suite's Hypothesis profile.  Helpers that
are not fixtures are ordinary modules in ``tests/_support`` (import them as
``tests._support.X``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

import qompr
from qompr.qom import ObjectTree
from qompr.testing.postgres import PostgresCluster
from qompr.testing.postgres import PostgresUnavailableError

# No per-example deadline and no "too slow" health check: both measure time, and on a busy
# shared machine (the 2-core CI box runs several suites at once) a 0.4 ms example can take
# 300 ms.  Behaviour is what the suite asserts; timing targets live in bench/.
settings.register_profile("qompr", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qompr")


@pytest.fixture(autouse=True)
def _qompr_logger_restored() -> Iterator[None]:
    """Put the ``qompr`` logger back as it was after each test.

    ``qompr-pr-helper``'s ``main()`` run in-process (tests/daemon/test_main.py,
    tests/options/test_hostile.py) sets it up as the daemon's: one handler on the stderr of
    that moment, a test's capture, and no propagation.  Left so, every later ``qompr.*``
    record went to that closed stream and logging printed "--- Logging error ---" with the
    record's traceback (an ``OSError: [Errno 9] Bad file descriptor`` a test logs on
    purpose) outside any failure, and ``caplog`` saw none of them."""
    log = logging.getLogger("qompr")
    handlers, level, propagate = log.handlers[:], log.level, log.propagate
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate


@pytest.fixture
def tree() -> ObjectTree:
    """A tree with qompr's built-in types and no third-party plugins."""
    return qompr.new_tree(load_entrypoints=False)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL cluster for the whole session (``fsync`` and
    ``synchronous_commit`` on; see :mod:`qompr.testing.postgres`).  A test that stops or
    crashes it starts it again before it ends; one that must not share it makes its own with
    :meth:`PostgresCluster.create`.  Skipped, with the reason, only when PostgreSQL's server
    is not installed."""
    try:
        cluster = PostgresCluster.create()
    except PostgresUnavailableError as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc.render()}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def postgres_uri(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A ``postgresql://`` URI of a fresh, empty database in :func:`postgres_cluster`,
    dropped after the test."""
    if not postgres_cluster.running:
        postgres_cluster.start()  # an earlier test left it down
    uri = postgres_cluster.create_database()
    yield uri
    if postgres_cluster.running:
        postgres_cluster.drop_database(uri.rsplit("/", 1)[1])
