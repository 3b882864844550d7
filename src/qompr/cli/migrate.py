# SPDX-License-Identifier: MIT
"""``qompr migrate ...``: the live-migration handover for shell-scripted set-ups
(``docs/migration.md``), the same steps as :class:`qompr.embed.Migration`:

* ``qompr migrate query CONTROL [--pid N] [--vm NAME] [--lu LU] [--initiator NAME] [--json]``:
  what a helper tracked (``query-pr-tracking`` on its control socket);
* ``qompr migrate handover --helper SOCKET --device PATH (--key KEY [--type TYPE] |
  --from-control CONTROL [--pid N] [--vm NAME] [--lu LU]) [--json]``: at the switch-over,
  the destination (its helper, this command's own fd of the disk) takes over the guest's
  registration and reservation; the source's registration goes;
* ``qompr migrate rollback --helper SOCKET --device PATH --key KEY [--type TYPE] [--json]``:
  the migration failed after the handover: the same through the *source* helper.

``--as-initiator NAME [--as-target-port N]`` (handover, rollback) speaks as that initiator
through an emulated backend, where each QEMU is its own (qompr's protocol extension; granted
to root and ``--allow-naming-uid`` users).

The device is opened by this command, with the privileges of whoever runs it (the VM
manager's script), never by the helper; its fd travels with each command, as QEMU's does.
The exit status is 0 on success, 1 on an error (the message on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import QomprError

if TYPE_CHECKING:
    from qompr.embed import HandoverResult
    from qompr.embed import TrackedReservation

__all__ = ["add_parser", "parse_key", "parse_type"]

#: TYPE names accepted by --type (sg_persist's short names, SPC-4's abbreviations).
_TYPES = {
    "none": 0,
    "we": 1,
    "ea": 3,
    "we_ro": 5,
    "ea_ro": 6,
    "we_ar": 7,
    "ea_ar": 8,
}


def parse_key(text: str) -> int:
    """A reservation key: ``0x...`` hexadecimal or decimal, 1 to 2**64-1."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid reservation key '{text}'") from None
    if not 0 < value < 1 << 64:
        raise argparse.ArgumentTypeError(f"invalid reservation key '{text}'")
    return value


def parse_type(text: str) -> int:
    """A reservation type: 0 (none), 1, 3, 5, 6, 7, 8 or a name (``we_ro``...)."""
    named = _TYPES.get(text.lower().replace("-", "_"))
    if named is not None:
        return named
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if value not in _TYPES.values():
        raise argparse.ArgumentTypeError(
            f"invalid reservation type '{text}' (0, 1, 3, 5, 6, 7, 8 or {', '.join(_TYPES)})"
        )
    return value


def add_parser(sub: Any) -> None:
    """Add ``qompr migrate`` and its actions to the ``qompr`` subparsers *sub*."""
    mig = sub.add_parser(
        "migrate", help="hand a VM's SCSI reservation over at a live migration's switch-over"
    )
    actions = mig.add_subparsers(dest="migrate_command", metavar="ACTION", required=True)

    query = actions.add_parser("query", help="what a helper tracked (query-pr-tracking)")
    query.add_argument("control", metavar="CONTROL", help="the helper's --control socket")
    _filters(query)
    query.add_argument("--json", action="store_true", help="print JSON")
    query.set_defaults(func=run_query)

    hand = actions.add_parser(
        "handover", help="the destination takes over the guest's registration and reservation"
    )
    _path(hand, "the destination helper's socket")
    hand.add_argument("--key", type=parse_key, help="the guest's reservation key")
    hand.add_argument(
        "--type", type=parse_type, default=None, help="the type it holds (default: none)"
    )
    hand.add_argument(
        "--from-control",
        metavar="CONTROL",
        help="learn key and type from this (source) helper's tracking instead",
    )
    _filters(hand)
    hand.add_argument("--json", action="store_true", help="print the result as JSON")
    hand.set_defaults(func=run_handover)

    back = actions.add_parser(
        "rollback", help="the migration failed: the source gets registration and reservation back"
    )
    _path(back, "the source helper's socket")
    back.add_argument("--key", type=parse_key, required=True, help="the guest's reservation key")
    back.add_argument("--type", type=parse_type, default=0, help="the type it held")
    back.add_argument("--json", action="store_true", help="print the result as JSON")
    back.set_defaults(func=run_rollback)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, help="only this client process")
    parser.add_argument("--vm", metavar="NAME", help="only clients with this -name")
    parser.add_argument("--lu", metavar="LU", help="only this logical unit")
    parser.add_argument("--initiator", metavar="NAME", help="only this initiator")


def _path(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--helper", metavar="SOCKET", required=True, help=what)
    parser.add_argument(
        "--device", metavar="PATH", required=True, help="the disk, as this host sees it"
    )
    parser.add_argument(
        "--as-initiator",
        metavar="NAME",
        help="speak as this initiator (an emulated backend's name of the QEMU, e.g. "
        "pid:4242; qompr-pr-helper grants it to root and --allow-naming-uid users)",
    )
    parser.add_argument(
        "--as-target-port", metavar="N", type=int, help="with --as-initiator: its target port"
    )


def _tracked_json(entry: TrackedReservation) -> dict[str, Any]:
    return {
        "pid": entry.pid,
        "uid": entry.uid,
        "vm": entry.vm,
        "initiator": entry.initiator,
        "target-port": entry.target_port,
        "lu": entry.lu,
        "key": f"0x{entry.key:x}",
        "type": entry.type,
        "updated": entry.updated,
        "connected": entry.connected,
        "stale": entry.stale,
    }


def run_query(args: argparse.Namespace) -> int:
    """``qompr migrate query``."""
    from qompr.embed import query_tracking

    entries = query_tracking(
        args.control, pid=args.pid, vm=args.vm, lu=args.lu, initiator=args.initiator
    )
    if args.json:
        print(json.dumps([_tracked_json(e) for e in entries], indent=2))
        return 0
    for e in entries:
        state = "connected" if e.connected else "gone"
        extra = " STALE" if e.stale else ""
        who = f" initiator={e.initiator}" if e.initiator else ""
        print(
            f"pid={e.pid} vm={e.vm or '-'}{who} lu={e.lu} key=0x{e.key:x} type={e.type} "
            f"({state}){extra}"
        )
    return 0


def _print_result(result: HandoverResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        return
    print(
        f"key 0x{result.key:x}: {result.method}, type {result.type}, "
        f"{result.seconds * 1000:.2f} ms ({' '.join(result.steps)})"
    )
    if result.type_mismatch is not None:
        print(f"note: the target held type {result.type}, not {result.type_mismatch}")


def _take_over(args: argparse.Namespace, key: int, pr_type: int) -> HandoverResult:
    from qompr.embed import close_path
    from qompr.embed import helper_path
    from qompr.embed import take_over

    device = args.device
    try:
        fd = os.open(device, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise QomprError(f"Could not open '{device}': {exc.strerror}") from None
    try:
        path = helper_path(
            args.helper, fd, initiator=args.as_initiator, target_port=args.as_target_port
        )
        try:
            return take_over(path, key, pr_type)
        finally:
            close_path(path)
    finally:
        os.close(fd)


def run_handover(args: argparse.Namespace) -> int:
    """``qompr migrate handover``."""
    key, pr_type = args.key, args.type
    if args.from_control is not None:
        from qompr.embed import query_tracking

        entries = [
            e
            for e in query_tracking(
                args.from_control, pid=args.pid, vm=args.vm, lu=args.lu, initiator=args.initiator
            )
            if e.key and not e.stale
        ]
        if len(entries) != 1:
            raise QomprError(
                f"{len(entries)} tracked registrations match on '{args.from_control}' "
                "(need exactly one: narrow with --pid, --vm, --lu)"
            )
        key = entries[0].key if key is None else key
        pr_type = entries[0].type if pr_type is None else pr_type
    if key is None:
        raise QomprError("qompr migrate handover: --key or --from-control is needed")
    _print_result(_take_over(args, key, pr_type or 0), args.json)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    """``qompr migrate rollback``."""
    _print_result(_take_over(args, args.key, args.type), args.json)
    return 0
