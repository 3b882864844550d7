# SPDX-License-Identifier: MIT
"""``qompr emulated ...``: look at and administer the state of ``pr-manager-emulated``.

* ``qompr emulated list STATE [--json]``: the logical units in the store, with counts;
* ``qompr emulated show STATE [--lu NAME] [--json]``: registrations, reservation, unit
  attentions;
* ``qompr emulated power-cycle STATE [--lu NAME]``: play a power cycle (every process
  sharing the state sees it at its next command; what APTPL keeps survives, every known
  I_T nexus gets UNIT ATTENTION 29h/01h).

STATE is what the manager's ``state`` property takes (an SQLite file).  The store is opened
for administration: no power cycle, and it does not count as a user of the file.
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


def _open(state: str) -> Store:
    from qompr.managers.emulated import SqliteStore

    if not os.path.exists(state):
        raise QomprError(f"PR state file '{state}' does not exist")
    return SqliteStore(state, join=False)


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
    store = _open(args.state)
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
    store = _open(args.state)
    try:
        names = store.logical_units()
        if args.lu is not None:
            if args.lu not in names:
                raise QomprError(f"No logical unit '{args.lu}' in '{args.state}'")
            names = [args.lu]
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
    store = _open(args.state)
    try:
        if args.lu is not None and args.lu not in store.logical_units():
            raise QomprError(f"No logical unit '{args.lu}' in '{args.state}'")
        store.power_on(args.lu)
    finally:
        store.close()
    return 0


def add_parser(sub: Any) -> None:
    """Add ``qompr emulated`` and its actions to the ``qompr`` subparsers *sub*."""
    emu = sub.add_parser("emulated", help="look at and administer pr-manager-emulated state")
    actions = emu.add_subparsers(dest="emulated_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list the logical units in a state store")
    listing.add_argument("state", metavar="STATE", help="the state (an SQLite file)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="show registrations, reservation, unit attentions")
    show.add_argument("state", metavar="STATE", help="the state (an SQLite file)")
    show.add_argument("--lu", metavar="NAME", help="only this logical unit")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    cycle = actions.add_parser(
        "power-cycle",
        help="play a power cycle (APTPL decides what survives; every known I_T nexus "
        "gets UNIT ATTENTION 29h/01h)",
    )
    cycle.add_argument("state", metavar="STATE", help="the state (an SQLite file)")
    cycle.add_argument("--lu", metavar="NAME", help="only this logical unit (default: all)")
    cycle.set_defaults(func=run_power_cycle)
