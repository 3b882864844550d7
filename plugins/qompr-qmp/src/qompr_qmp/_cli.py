# SPDX-License-Identifier: MIT
"""``qompr qmp list|watch|add|del``: the plugin's subcommands."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import QomprError
from qompr.options import format_error

if TYPE_CHECKING:
    from qompr_qmp._bridge import QmpBridge

__all__ = ["register"]

PROG = "qompr"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``qmp`` command and its actions to the ``qompr`` parser."""
    qmp = subparsers.add_parser(
        "qmp", help="list, watch, add and delete a running QEMU's pr-managers over QMP"
    )
    actions = qmp.add_subparsers(dest="qmp_command", metavar="ACTION", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help)
        parser.add_argument(
            "--qmp",
            required=True,
            metavar="SOCKET",
            help="QEMU's QMP unix socket (-qmp unix:SOCKET,server=on,wait=off)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long to wait for QEMU's QMP greeting (default 10)",
        )
        return parser

    lst = action("list", help="query-pr-managers: each pr-manager and whether it is connected")
    lst.add_argument("--json", action="store_true", help="print QEMU's answer as JSON")
    lst.set_defaults(func=cmd_list)

    watch = action("watch", help="print PR_MANAGER_STATUS_CHANGED events until interrupted")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.set_defaults(func=cmd_watch)

    add = action("add", help="object-add a pr-manager-helper")
    add.add_argument("--id", required=True, help="the new object's id")
    add.add_argument("--path", required=True, help="the helper's socket")
    add.set_defaults(func=cmd_add)

    delete = action("del", help="object-del an object")
    delete.add_argument("--id", required=True, help="the object's id")
    delete.set_defaults(func=cmd_del)


def _fail(exc: QomprError) -> int:
    sys.stderr.write(format_error(exc, PROG))
    return 1


def _bridge(args: argparse.Namespace) -> QmpBridge:
    from qompr_qmp._bridge import QmpBridge

    return QmpBridge(args.qmp, timeout=args.timeout)


def cmd_list(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with _bridge(args) as bridge:
            await bridge.connect()
            return await bridge.query_pr_managers()

    try:
        managers = asyncio.run(run())
    except QomprError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(managers, indent=2))
    else:
        for entry in managers:
            print(f"{entry['id']} {'connected' if entry['connected'] else 'disconnected'}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _bridge(args) as bridge:
            await bridge.connect()
            await bridge.object_add_pr_helper(args.id, args.path)

    try:
        asyncio.run(run())
    except QomprError as exc:
        return _fail(exc)
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _bridge(args) as bridge:
            await bridge.connect()
            await bridge.object_del(args.id)

    try:
        asyncio.run(run())
    except QomprError as exc:
        return _fail(exc)
    return 0


async def _watch(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _bridge(args) as bridge:
        await bridge.connect()
        sys.stderr.write(f"{PROG}: watching {args.qmp}\n")
        sys.stderr.flush()

        async def printer() -> None:
            async for status in bridge.events():
                if args.json:
                    line = json.dumps(status.to_json())
                else:
                    line = f"{status.id} {'connected' if status.connected else 'disconnected'}"
                print(line, flush=True)

        tasks = {asyncio.ensure_future(printer()), asyncio.ensure_future(stop.wait())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # a QmpError from the printer


def cmd_watch(args: argparse.Namespace) -> int:
    """Events until SIGINT/SIGTERM (status 0) or until QEMU closes QMP (status 0)."""
    try:
        asyncio.run(_watch(args))
    except QomprError as exc:
        return _fail(exc)
    return 0
