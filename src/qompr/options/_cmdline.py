# SPDX-License-Identifier: MIT
"""Process ``-object`` options the way a QEMU program's command line does.

``qemu-system-x86_64`` (:attr:`Syntax.QEMU_SYSTEM`) parses and checks *every* ``-object``
first, in order, and creates the objects afterwards; errors found while parsing carry the
option as their location (``-object ARG: ...``), errors found while creating do not.  QEMU's
tools (:attr:`Syntax.KEYVAL`) create each object as soon as its option is read, and every
error carries the location.  A string that starts with ``{`` is JSON in both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from qompr.errors import HelpRequestError
from qompr.errors import OptionError
from qompr.errors import QomprError
from qompr.options._keyval import keyval_parse
from qompr.qom import Flavour
from qompr.qom import Object
from qompr.qom import ObjectOptions
from qompr.qom import ObjectTree
from qompr.qom import TypeRegistry
from qompr.qom import argument_text
from qompr.qom import visit_object_options

if TYPE_CHECKING:
    from qompr.options._qemuopts import QemuOptsList

__all__ = [
    "CommandLineRun",
    "HelpText",
    "ObjectCommandLine",
    "Syntax",
    "create_objects",
    "format_error",
    "format_warning",
    "run_command_line",
    "type_help",
    "types_help",
]


def format_error(exc: QomprError, prog: str) -> str:
    """An error as QEMU's ``error_report`` prints it: ``PROG: [LOCATION: ]MESSAGE``, then
    the hint on its own line(s); with the final newline."""
    where = f"{exc.location}: " if exc.location else ""
    text = f"{prog}: {where}{exc.message}\n"
    if exc.hint:
        text += exc.hint.rstrip("\n") + "\n"
    return text


def format_warning(located: str, hint: str, prog: str) -> str:
    """A warning as QEMU's ``warn_report`` + ``error_printf`` print it."""
    return f"{prog}: {located}\n{hint}\n"


class Syntax(enum.Enum):
    """Which program's ``-object`` rules apply to key=value strings."""

    #: ``qemu-system-x86_64 -object``: QemuOpts, short-form booleans, ``Duplicate ID``.
    QEMU_SYSTEM = "qemu-system"
    #: qemu-storage-daemon / qemu-img / qemu-nbd ``--object``: strict keyval.
    KEYVAL = "keyval"


@attrs.frozen
class HelpText:
    """A help request's answer: QEMU prints it on stdout and exits 0."""

    text: str


def types_help(types: TypeRegistry) -> str:
    """``-object help``: the creatable types, sorted."""
    lines = ["List of user creatable objects:"]
    lines += [f"  {name}" for name in types.creatable_types()]
    return "\n".join(lines) + "\n"


def type_help(types: TypeRegistry, name: str) -> str | None:
    """``-object TYPE,help``: the settable properties, or ``None`` for an unknown type.

    Each line is ``  name=<type>``, padded to column 24 before `` - description`` and
    `` (default: JSON)`` when either exists; lines sorted (``object_property_help``).
    """
    import json

    info = types.lookup(name)
    if info is None:
        return None
    lines = []
    for prop in info.cls.__qom_properties__.values():
        if not prop.settable:
            continue
        line = f"  {prop.name}=<{prop.type_name}>"
        has_default = prop.has_default and prop.default is not None
        if prop.description or has_default:
            line = line.ljust(24) + " - "
        if prop.description:
            line += prop.description
        if has_default:
            line += f" (default: {json.dumps(prop.to_json(prop.default))})"
        lines.append(line)
    lines.sort()
    if not lines:
        return f"There are no options for {name}.\n"
    return f"{name} options:\n" + "\n".join(lines) + "\n"


class ObjectCommandLine:
    """The ``-object`` options of one command line, processed into one tree.

    :param tree: where the objects go.
    :param syntax: whose rules apply to key=value strings.
    :param warn: called with each warning line pair ``(located message, hint)`` as it
        happens, so callers can print warnings and errors in QEMU's order.
    :param option: the option name used in locations.
    """

    def __init__(
        self,
        tree: ObjectTree,
        syntax: Syntax = Syntax.QEMU_SYSTEM,
        *,
        warn: Callable[[str, str], None] | None = None,
        option: str = "-object",
    ) -> None:
        self.tree = tree
        self.syntax = syntax
        self.option = option
        self._warn = warn
        self._opts_list: QemuOptsList | None = None  # Syntax.QEMU_SYSTEM's, made on first use
        self.pending: list[ObjectOptions] = []
        self.created: list[Object] = []

    def _located(self, exc: QomprError, arg: str) -> QomprError:
        exc.location = f"{self.option} {arg}"
        return exc

    def parse(self, arg: str, *, complete: bool = True) -> HelpText | None:
        """Read one option.  Returns help text when the option asks for help (QEMU prints it
        and exits 0: process no further options).  With :attr:`Syntax.KEYVAL` the object is
        created at once (``complete`` as for :meth:`create_all`).

        :raises QomprError: with ``location`` set for parse errors.
        """
        arg = argument_text(arg)  # what QEMU would see; the location shows it too
        try:
            if arg.startswith("{"):
                options = self._parse_json(arg)
            elif self.syntax is Syntax.QEMU_SYSTEM:
                result = self._parse_qemuopts(arg)
                if isinstance(result, HelpText):
                    return result
                options = result
            else:
                result = self._parse_keyval(arg)
                if isinstance(result, HelpText):
                    return result
                options = result
            if self.syntax is Syntax.KEYVAL:
                self.created.append(self.tree.add_options(options, complete=complete))
            else:
                self.pending.append(options)
        except QomprError as exc:
            raise self._located(exc, arg) from None
        return None

    # The JSON and QemuOpts parsers load with the first string that needs them: a keyval spec
    # (qompr persist --object) builds neither's attrs classes.
    def _parse_json(self, arg: str) -> ObjectOptions:
        from qompr.options._json import json_loads

        value = json_loads(arg)
        if not isinstance(value, dict):
            raise OptionError("Invalid parameter type for 'null', expected: object")
        return visit_object_options(self.tree.types, value, Flavour.JSON)

    def _parse_qemuopts(self, arg: str) -> ObjectOptions | HelpText:
        from qompr.options._qemuopts import QemuOptsList
        from qompr.options._qemuopts import is_help_option

        if self._opts_list is None:
            self._opts_list = QemuOptsList("object", "qom-type")
        opts = self._opts_list.parse(arg)
        if self._warn is not None:
            for message, hint in opts.warnings:
                self._warn(f"{self.option} {arg}: warning: {message}", hint)
        qom_type = opts.get("qom-type")
        if qom_type is None:
            raise OptionError("Parameter 'qom-type' is missing")
        # user_creatable_print_help: "help"/"?" as the type lists the types; a help item
        # prints the type's options when the type exists, and is ignored when it does not.
        if is_help_option(qom_type):
            return HelpText(types_help(self.tree.types))
        if opts.has_help():
            text = type_help(self.tree.types, qom_type)
            if text is not None:
                return HelpText(text)
        return visit_object_options(self.tree.types, opts.to_dict(), Flavour.QEMU_SYSTEM)

    def _parse_keyval(self, arg: str) -> ObjectOptions | HelpText:
        parsed = keyval_parse(arg, "qom-type")
        if parsed.help:
            qom_type = parsed.qdict.get("qom-type")
            text = type_help(self.tree.types, qom_type) if isinstance(qom_type, str) else None
            return HelpText(text if text is not None else types_help(self.tree.types))
        return visit_object_options(self.tree.types, parsed.qdict, Flavour.KEYVAL)

    def create_all(self, *, complete: bool = True) -> list[Object]:
        """Create the parsed objects in order (qemu-system's ``object_create_early/late``).

        :param complete: ``False`` leaves every object un-completed (no connections).
        :raises QomprError: without location, as QEMU reports creation errors.
        """
        while self.pending:
            options = self.pending.pop(0)
            self.created.append(self.tree.add_options(options, complete=complete))
        return list(self.created)


@attrs.frozen
class CommandLineRun:
    """What a QEMU program prints for its ``-object`` options, and what it created.

    :param exit_status: 0 for success or a help request, 1 for an error.
    :param stdout: help text, if help was asked for.
    :param stderr: warnings and the error, exactly as QEMU's ``error_report`` prints them.
    :param objects: the created objects (empty after an error or help).
    """

    exit_status: int
    stdout: str
    stderr: str
    objects: tuple[Object, ...] = ()


def run_command_line(
    tree: ObjectTree,
    args: list[str],
    syntax: Syntax = Syntax.QEMU_SYSTEM,
    *,
    prog: str,
    option: str = "-object",
    complete: bool = True,
) -> CommandLineRun:
    """Process a command line's ``-object`` options as the program *prog* would, collecting
    its output instead of raising: what ``qompr object check`` prints and the corpus replays
    compare with the real QEMU programs."""
    stderr: list[str] = []
    cmdline = ObjectCommandLine(
        tree, syntax, option=option, warn=lambda m, h: stderr.append(format_warning(m, h, prog))
    )
    try:
        for arg in args:
            answer = cmdline.parse(arg, complete=complete)
            if answer is not None:
                return CommandLineRun(0, answer.text, "".join(stderr))
        objects = cmdline.create_all(complete=complete)
    except QomprError as exc:
        stderr.append(format_error(exc, prog))
        return CommandLineRun(1, "", "".join(stderr))
    return CommandLineRun(0, "", "".join(stderr), tuple(objects))


def process(
    tree: ObjectTree,
    args: list[str],
    syntax: Syntax = Syntax.QEMU_SYSTEM,
    *,
    complete: bool = True,
    warn: Callable[[str, str], None] | None = None,
) -> HelpText | list[Object]:
    """Process a whole command line's ``-object`` options as a QEMU program does: the help
    text when an option asks for help (QEMU prints it and exits 0), else the objects.

    Programs that take ``-object`` from their users want this; code that creates known
    objects wants :func:`create_objects`.
    """
    cmdline = ObjectCommandLine(tree, syntax, warn=warn)
    for arg in args:
        answer = cmdline.parse(arg, complete=complete)
        if answer is not None:
            return answer
    return cmdline.create_all(complete=complete)


def create_objects(
    tree: ObjectTree,
    args: list[str],
    syntax: Syntax = Syntax.QEMU_SYSTEM,
    *,
    complete: bool = True,
    warn: Callable[[str, str], None] | None = None,
) -> list[Object]:
    """Create the objects of ``-object`` options, in order, as :func:`process` does.

    :raises HelpRequestError: an option asks for help; the exception holds the text.
    :raises QomprError: what QEMU would report, located as QEMU locates it.
    """
    answer = process(tree, args, syntax, complete=complete, warn=warn)
    if isinstance(answer, HelpText):
        raise HelpRequestError(answer.text)
    return answer
