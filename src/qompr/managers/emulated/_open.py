# SPDX-License-Identifier: MIT
"""Which store a ``state`` value means: nothing (memory), a file path (SQLite), a
``postgresql://`` URI (PostgreSQL, psycopg imported only then), or another ``SCHEME://`` URI
that a plugin's ``qompr_emulated_store`` hook opens."""

from __future__ import annotations

import re
from typing import Any
from typing import Final

from qompr.managers.emulated._store import MemoryStore
from qompr.managers.emulated._store import StateFileError
from qompr.managers.emulated._store import Store
from qompr.managers.emulated._store import StoreOptions

__all__ = ["is_postgres_uri", "is_uri", "open_store", "redact"]

_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES: Final = frozenset({"postgresql", "postgres"})


def is_uri(state: str) -> bool:
    """Whether *state* is a ``SCHEME://`` URI rather than a file path."""
    return _SCHEME.match(state) is not None


def is_postgres_uri(state: str) -> bool:
    """Whether *state* is a URI the PostgreSQL store serves (``postgresql://``, ``postgres://``)."""
    match = _SCHEME.match(state)
    return match is not None and match.group(1).lower() in _POSTGRES


def redact(uri: str) -> str:
    """*uri* without its password, for messages and logs."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", uri)


def open_store(state: str, options: StoreOptions, hook: Any = None) -> Store:
    """Open the store *state* names (see the module docstring).

    :param hook: the plugin manager's hook relay (``PluginManager.hook``), asked for other
        schemes; ``None``: no plugins.
    :raises StateFileError: if it cannot be opened, or no store serves its scheme.
    """
    if not state:
        return MemoryStore()
    match = _SCHEME.match(state)
    if match is None:
        # Imported here: a store in memory needs neither the SQLite store nor sqlite3.
        from qompr.managers.emulated._sqlite import SqliteStore

        return SqliteStore(
            state,
            synchronous=options.synchronous,
            power_on=options.power_on,
            join=options.join,
            timeout=options.timeout,
        )
    scheme = match.group(1).lower()
    if scheme in _POSTGRES:
        try:
            from qompr.managers.emulated._postgres import PostgresStore
        except ImportError as exc:
            raise StateFileError(
                f"PR state store '{scheme}://...' needs psycopg 3: {exc}",
                hint="Install it with: pip install 'qompr[postgresql]' (and libpq)",
            ) from exc
        return PostgresStore(
            state,
            timeout=options.timeout,
            create_schema=options.create_schema,
            power_on=options.power_on,
        )
    if hook is not None:
        store: Store | None = hook.qompr_emulated_store(uri=state, options=options)
        if store is not None:
            return store
    raise StateFileError(
        f"PR state store '{scheme}://...' is not supported",
        hint="States are a file path or a postgresql:// URI; a plugin implementing "
        "qompr_emulated_store can serve other schemes",
    )
