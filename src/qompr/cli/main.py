# SPDX-License-Identifier: MIT
"""``qompr``: inspect types and plugins, and check ``-object`` strings as QEMU would.

Every command takes ``--json``.  Errors go to stderr as ``qompr: LOCATION: MESSAGE`` (QEMU's
``error_report`` with our program name) and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import pluggy

from qompr.cli import demo
from qompr.cli import doctor
from qompr.cli import emulated
from qompr.cli import persist
from qompr.cli import supervise
from qompr.errors import QomprError
from qompr.options import Syntax
from qompr.options import format_error
from qompr.options import run_command_line
from qompr.options import to_json
from qompr.options import to_keyval
from qompr.options import type_help
from qompr.options import types_help
from qompr.plugins import describe_plugins
from qompr.plugins import get_plugin_manager
from qompr.plugins import new_tree

__all__ = ["build_parser", "main"]

PROG = "qompr"


def report(exc: QomprError) -> None:
    """Print an error as QEMU's ``error_report`` does: located message, then the hint."""
    sys.stderr.write(format_error(exc, PROG))


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def cmd_object_check(args: argparse.Namespace) -> int:
    pm: pluggy.PluginManager = args.plugin_manager
    run = run_command_line(
        new_tree(pm), list(args.specs), Syntax(args.syntax), prog=PROG, complete=False
    )
    sys.stderr.write(run.stderr)
    sys.stdout.write(run.stdout)
    if run.exit_status or run.stdout:
        return run.exit_status
    if args.json:
        _dump([to_json(obj) for obj in run.objects])
    else:
        for obj in run.objects:
            print(to_keyval(obj))
    return 0


def cmd_object_help(args: argparse.Namespace) -> int:
    pm: pluggy.PluginManager = args.plugin_manager
    tree = new_tree(pm)
    if args.type is None:
        if args.json:
            _dump(tree.types.creatable_types())
        else:
            sys.stdout.write(types_help(tree.types))
        return 0
    text = type_help(tree.types, args.type)
    if text is None:
        report(QomprError(f"invalid object type: {args.type}"))
        return 1
    if args.json:
        _dump(tree.qom_list_properties(args.type))
    else:
        sys.stdout.write(text)
    return 0


def cmd_types(args: argparse.Namespace) -> int:
    pm: pluggy.PluginManager = args.plugin_manager
    tree = new_tree(pm)
    types = tree.qom_list_types(args.implements, args.abstract)
    if args.json:
        _dump(types)
    else:
        for entry in types:
            flags = " (abstract)" if entry.get("abstract") else ""
            parent = f" <- {entry['parent']}" if "parent" in entry else ""
            print(f"{entry['name']}{parent}{flags}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    pm: pluggy.PluginManager = args.plugin_manager
    plugins = describe_plugins(pm)
    if args.json:
        _dump(plugins)
    else:
        for entry in plugins:
            origin = (
                "built-in"
                if entry["builtin"]
                else f"{entry.get('distribution', '?')} {entry.get('version', '')}".strip()
            )
            print(f"{entry['name']} [{origin}]: {', '.join(entry['hooks'])}")
    return 0


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    """The argument parser, with the plugins' subcommands added."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="SCSI persistent-reservation managers, QEMU style."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    obj = sub.add_parser("object", help="check -object strings and show object help")
    obj_sub = obj.add_subparsers(dest="object_command", metavar="ACTION", required=True)
    check = obj_sub.add_parser(
        "check",
        help="process -object SPECs as qemu-system-x86_64 would, without completing them",
    )
    check.add_argument("--json", action="store_true", help="print the objects as JSON")
    check.add_argument(
        "--syntax",
        choices=[s.value for s in Syntax],
        default=Syntax.QEMU_SYSTEM.value,
        help="key=value rules: qemu-system (QemuOpts, the default) or keyval (QEMU's tools)",
    )
    check.add_argument("specs", nargs="+", metavar="SPEC", help="an -object argument")
    check.set_defaults(func=cmd_object_check)

    ohelp = obj_sub.add_parser("help", help="list creatable types, or one type's options")
    ohelp.add_argument("type", nargs="?", metavar="TYPE")
    ohelp.add_argument("--json", action="store_true")
    ohelp.set_defaults(func=cmd_object_help)

    types = sub.add_parser("types", help="list QOM types (qom-list-types)")
    types.add_argument("--implements", metavar="TYPE", help="only types that are TYPE")
    types.add_argument("--abstract", action="store_true", help="include abstract types")
    types.add_argument("--json", action="store_true")
    types.set_defaults(func=cmd_types)

    plugins = sub.add_parser("plugins", help="list loaded plugins and their hooks")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    demo.add_parser(sub)
    doctor.add_parser(sub)
    emulated.add_parser(sub)
    supervise.add_parser(sub)
    persist.add_parser(sub)
    pm.hook.qompr_register_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qompr`` console script."""
    try:
        pm = get_plugin_manager()
    except QomprError as exc:
        report(exc)
        return 1
    parser = build_parser(pm)
    args = parser.parse_args(argv)
    args.plugin_manager = pm
    try:
        return int(args.func(args))
    except QomprError as exc:
        report(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
