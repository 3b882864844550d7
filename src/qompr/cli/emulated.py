# SPDX-License-Identifier: MIT
"""``qompr emulated ...``: look at and administer the state of ``pr-manager-emulated``.

* ``qompr emulated list STATE [--json]``: the logical units in the store, with counts;
* ``qompr emulated show STATE [--lu NAME] [--json]``: registrations, reservation, unit
  attentions;
* ``qompr emulated power-cycle STATE [--lu NAME]``: play a power cycle (every process
  sharing the state sees it at its next command; what APTPL keeps survives, every known
  I_T nexus gets UNIT ATTENTION 29h/01h).
* ``qompr emulated clear STATE --lu NAME``: an administrator's CLEAR of one logical unit
  (every registration and the reservation go, every registered I_T nexus gets UNIT
  ATTENTION 2Ah/03h RESERVATIONS PREEMPTED).
* ``qompr emulated schema URI [--apply]``: print, or apply, the SQL schema a database store
  needs.

STATE is what the manager's ``state`` property takes (an SQLite file, a ``postgresql://``
URI, a plugin's ``SCHEME://`` URI).  The store is opened for administration: no power cycle,
and it does not count as a user of the file.
The manager package is imported only when a command runs, so ``qompr --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import QomprError

if TYPE_CHECKING:
    from qompr.managers.emulated import StateSnapshot
    from qompr.managers.emulated import Store

__all__ = ["add_parser"]

_STATE = "the state: an SQLite file or a postgresql:// URI"


def _open(args: argparse.Namespace) -> Store:
    from qompr.managers.emulated import StoreOptions
    from qompr.managers.emulated import open_store
    from qompr.managers.emulated._open import is_uri

    state: str = args.state
    if not is_uri(state) and not os.path.exists(state):
        raise QomprError(f"PR state file '{state}' does not exist")
    pm = args.plugin_manager
    options = StoreOptions(timeout=args.timeout / 1000, join=False)
    return open_store(state, options, pm.hook if pm is not None else None)


def _known(store: Store, args: argparse.Namespace) -> None:
    if args.lu is not None and args.lu not in store.logical_units():
        raise QomprError(f"No logical unit '{args.lu}' in '{_shown(args.state)}'")


def _shown(state: str) -> str:
    from qompr.managers.emulated._open import redact

    return redact(state)


def _snapshot_json(name: str, snap: StateSnapshot) -> dict[str, Any]:
    res = snap.reservation
    return {
        "lu": name,
        "generation": snap.generation,
        "aptpl": snap.aptpl,
        "registrations": [
            {
                "initiator": nexus.initiator,
                "transport-id": nexus.transport_id.identifier,
                "target-port": nexus.target_port,
                "key": f"{reg.key:#x}",
                "all-tg-pt": reg.all_tg_pt,
                "aptpl": reg.aptpl,
            }
            for nexus, reg in snap.registrations
        ],
        "reservation": None
        if res is None
        else {
            "type": res.type.name,
            "scope": res.scope,
            "holder": res.holder.initiator,
            "holder-target-port": res.holder.target_port,
        },
        "spc2-reservation": None if snap.legacy_holder is None else snap.legacy_holder.initiator,
        "unit-attentions": [
            {
                "initiator": nexus.initiator,
                "target-port": nexus.target_port,
                "sense": [f"{c.key:x}/{c.asc:02x}/{c.ascq:02x}" for c in codes],
            }
            for nexus, codes in snap.unit_attentions
        ],
    }


def _print_show(entry: dict[str, Any]) -> None:
    print(f"{entry['lu']}: PRgeneration={entry['generation']:#x}, APTPL={int(entry['aptpl'])}")
    for reg in entry["registrations"]:
        flags = " all-tg-pt" if reg["all-tg-pt"] else ""
        print(f"  registered {reg['initiator']} port {reg['target-port']} key={reg['key']}{flags}")
    res = entry["reservation"]
    if res is None:
        print("  no reservation")
    else:
        print(
            f"  reservation {res['type']} held by {res['holder']} port {res['holder-target-port']}"
        )
    if entry["spc2-reservation"] is not None:
        print(f"  SPC-2 reservation held by {entry['spc2-reservation']}")
    for ua in entry["unit-attentions"]:
        print(
            f"  unit attention for {ua['initiator']} port {ua['target-port']}:"
            f" {' '.join(ua['sense'])}"
        )


def run_list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        rows: list[dict[str, Any]] = []
        for name in store.logical_units():
            snap = store.snapshot(name)
            rows.append(
                {
                    "lu": name,
                    "generation": snap.generation,
                    "registrations": len(snap.registrations),
                    "reserved": snap.reservation is not None,
                    "aptpl": snap.aptpl,
                }
            )
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        reserved = "reserved" if row["reserved"] else "not reserved"
        print(
            f"{row['lu']}: {row['registrations']} registrations, {reserved},"
            f" PRgeneration={row['generation']:#x}, APTPL={int(row['aptpl'])}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        _known(store, args)
        names = store.logical_units() if args.lu is None else [args.lu]
        entries = [_snapshot_json(name, store.snapshot(name)) for name in names]
    finally:
        store.close()
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for entry in entries:
            _print_show(entry)
    return 0


def run_power_cycle(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        _known(store, args)
        store.power_on(args.lu)
    finally:
        store.close()
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from qompr.managers.emulated._store import administrator_clear

    store = _open(args)
    try:
        _known(store, args)
        store.transact(args.lu, administrator_clear)
    finally:
        store.close()
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from qompr.managers.emulated._open import is_postgres_uri

    uri: str = args.uri
    if not is_postgres_uri(uri):
        raise QomprError(
            f"'{_shown(uri)}' is not a postgresql:// URI",
            hint="An SQLite state file makes its own tables; plugin stores document theirs",
        )
    try:
        from qompr.managers.emulated._postgres import apply_schema
        from qompr.managers.emulated._postgres import schema_sql
    except ImportError as exc:
        raise QomprError(
            f"The PostgreSQL store needs psycopg 3: {exc}",
            hint="Install it with: pip install 'qompr[postgresql]'",
        ) from exc
    if not args.apply:
        print(schema_sql(), end="")
        return 0
    apply_schema(uri, timeout=args.timeout / 1000)
    print(f"schema applied to {_shown(uri)}")
    return 0


def _common(parser: Any, state_help: str = _STATE) -> None:
    parser.add_argument("state", metavar="STATE", help=state_help)
    parser.add_argument(
        "--timeout",
        type=int,
        default=10000,
        metavar="MS",
        help="longest wait for the store, in milliseconds (default 10000)",
    )


def add_parser(sub: Any) -> None:
    """Add ``qompr emulated`` and its actions to the ``qompr`` subparsers *sub*."""
    emu = sub.add_parser("emulated", help="look at and administer pr-manager-emulated state")
    actions = emu.add_subparsers(dest="emulated_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list the logical units in a state store")
    _common(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="show registrations, reservation, unit attentions")
    _common(show)
    show.add_argument("--lu", metavar="NAME", help="only this logical unit")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    cycle = actions.add_parser(
        "power-cycle",
        help="play a power cycle (APTPL decides what survives; every known I_T nexus "
        "gets UNIT ATTENTION 29h/01h)",
    )
    _common(cycle)
    cycle.add_argument("--lu", metavar="NAME", help="only this logical unit (default: all)")
    cycle.set_defaults(func=run_power_cycle)

    clear = actions.add_parser(
        "clear",
        help="clear one logical unit as an administrator (registrations and reservation go; "
        "registered I_T nexuses get UNIT ATTENTION 2Ah/03h)",
    )
    _common(clear)
    clear.add_argument("--lu", metavar="NAME", required=True, help="the logical unit")
    clear.set_defaults(func=run_clear)

    schema = actions.add_parser(
        "schema", help="print (or --apply) the SQL schema of a PostgreSQL state database"
    )
    schema.add_argument("uri", metavar="URI", help="a postgresql:// connection URI")
    schema.add_argument("--apply", action="store_true", help="create the tables (idempotent)")
    schema.add_argument(
        "--timeout", type=int, default=30000, metavar="MS", help="longest wait (ms)"
    )
    schema.set_defaults(func=run_schema)
