# SPDX-License-Identifier: MIT
"""``qompr``: inspect types and plugins, and check ``-object`` strings as QEMU would.

Every command takes ``--json``.  Errors go to stderr as ``qompr: LOCATION: MESSAGE`` (QEMU's
``error_report`` with our program name) and exit with status 1.

Start-up costs what the chosen command needs, no more: each built-in command's module is
imported only when that command runs (``qompr --help`` lists them from the table below), the
sg3_utils-style commands parse their own arguments without argparse, and plugins (the
``qompr`` entry points) are loaded only for the commands that use them, or to find a command
that is not built in.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import QomprError

if TYPE_CHECKING:
    import argparse

    import pluggy

__all__ = ["build_parser", "main"]

PROG = "qompr"


def get_plugin_manager() -> pluggy.PluginManager:
    """qompr's plugin manager (:func:`qompr.plugins.get_plugin_manager`), loaded when a
    command needs it."""
    from qompr import plugins

    return plugins.get_plugin_manager()


def report(exc: QomprError) -> None:
    """Print an error as QEMU's ``error_report`` does: located message, then the hint."""
    from qompr.options import format_error

    sys.stderr.write(format_error(exc, PROG))


def _dump(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2, ensure_ascii=False))


def cmd_object_check(args: argparse.Namespace) -> int:
    from qompr.options import Syntax
    from qompr.options import run_command_line
    from qompr.options import to_json
    from qompr.options import to_keyval
    from qompr.plugins import new_tree

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
    from qompr.options import type_help
    from qompr.options import types_help
    from qompr.plugins import new_tree

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
    from qompr.plugins import new_tree

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
    from qompr.plugins import describe_plugins

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


def _add_object(sub: Any) -> None:
    from qompr.options import Syntax

    obj = sub.add_parser("object", help=COMMANDS["object"].help)
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


def _add_types(sub: Any) -> None:
    types = sub.add_parser("types", help=COMMANDS["types"].help)
    types.add_argument("--implements", metavar="TYPE", help="only types that are TYPE")
    types.add_argument("--abstract", action="store_true", help="include abstract types")
    types.add_argument("--json", action="store_true")
    types.set_defaults(func=cmd_types)


def _add_plugins(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help=COMMANDS["plugins"].help)
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)


def _add_from(module: str) -> Callable[[Any], None]:
    """The function adding a command whose parser its own module adds (``add_parser``),
    imported only when the command's full parser is wanted."""

    def add(sub: Any) -> None:
        add_parser: Callable[[Any], None] = importlib.import_module(module).add_parser
        add_parser(sub)

    return add


def _run_turs(argv: Sequence[str]) -> int:
    from qompr.cli import turs

    return turs.run(argv, plugin_manager=get_plugin_manager)


def _run_persist(argv: Sequence[str]) -> int:
    from qompr.cli import persist

    return persist.run(argv, plugin_manager=get_plugin_manager)


class Command:
    """A built-in command: its one-line help, the function adding its full parser, whether
    it uses plugins, and for the commands that parse their own arguments (as the C programs
    they reproduce do) the function running them."""

    def __init__(
        self,
        help: str,
        add: Callable[[Any], None],
        *,
        plugins: bool = False,
        run: Callable[[Sequence[str]], int] | None = None,
    ) -> None:
        self.help = help
        self.add = add
        self.plugins = plugins
        self.run = run


#: The built-in commands, in the order ``qompr --help`` lists them.
COMMANDS: dict[str, Command] = {
    "object": Command("check -object strings and show object help", _add_object, plugins=True),
    "types": Command("list QOM types (qom-list-types)", _add_types, plugins=True),
    "plugins": Command("list loaded plugins and their hooks", _add_plugins, plugins=True),
    "demo": Command(
        "run the main job on the embedded default", _add_from("qompr.cli.demo"), plugins=True
    ),
    "doctor": Command("check the host's multipath set-up for PR", _add_from("qompr.cli.doctor")),
    "emulated": Command(
        "look at and administer pr-manager-emulated state", _add_from("qompr.cli.emulated")
    ),
    "supervise": Command(
        "run qompr-pr-helper on a socket this process keeps, restarting it when it exits",
        _add_from("qompr.cli.supervise"),
    ),
    "persist": Command(
        "sg_persist's PERSISTENT RESERVE IN/OUT command, through any manager",
        _add_from("qompr.cli.persist"),
        run=_run_persist,
    ),
    "validate": Command(
        "check that a guest cluster's persistent reservations work on this path",
        _add_from("qompr.cli.validate"),
    ),
    "turs": Command(
        "sg_turs's TEST UNIT READY, through any manager", _add_from("qompr.cli.turs"), run=_run_turs
    ),
    "migrate": Command(
        "hand a VM's SCSI reservation over at a live migration's switch-over",
        _add_from("qompr.cli.migrate"),
    ),
}


def build_parser(
    pm: pluggy.PluginManager | None = None, *, full: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The argument parser.

    :param pm: add the plugins' subcommands from it (``None``: built-in commands only).
    :param full: the built-in commands whose own arguments are added (``None``: all);
        the others are listed with their help only.
    """
    import argparse

    from qompr import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SCSI persistent-reservation managers, QEMU style.",
        epilog="Plugins may add commands (qompr plugins lists the installed plugins).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        if full is None or name in full:
            command.add(sub)
        else:
            sub.add_parser(name, help=command.help, add_help=False)
    if pm is not None:
        pm.hook.qompr_register_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qompr`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    name = args_list[0] if args_list else ""
    command = COMMANDS.get(name)
    try:
        if command is not None and command.run is not None:
            return command.run(args_list[1:])
        builtin = command is not None or name.startswith("-") or not name
        pm = None
        if not builtin or (command is not None and command.plugins):
            pm = get_plugin_manager()
        parser = build_parser(pm, full=[name] if command is not None else [])
        args = parser.parse_args(args_list)
        args.plugin_manager = pm
        return int(args.func(args))
    except QomprError as exc:
        report(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
