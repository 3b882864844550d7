# SPDX-License-Identifier: MIT
"""``getopt_long`` as glibc does it, with glibc's error texts.

Both of qompr's drop-in programs parse their command line as the C program they replace:
``qompr-pr-helper`` as qemu-pr-helper and ``qompr persist`` / ``qompr turs`` as sg3_utils'
``sg_persist`` / ``sg_turs``, all of which call glibc's ``getopt_long``.  So they accept the same
spellings (``-k/path``, ``-vvd``, ``--sock=/path`` and other unambiguous abbreviations, options
after operands) and print the same complaints (``invalid option -- 'Z'``).  Python's
:mod:`getopt` words its errors differently and drops the value in ``unrecognized option``.

Private to qompr: it sits below ``qompr.cli`` and ``qompr.daemon`` and imports nothing of
qompr, so that parsing a command line costs no start-up time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["GetoptError", "LongOption", "getopt_long"]


class GetoptError(Exception):
    """A command-line error, worded as glibc prints it (without the ``argv[0]: `` prefix)."""


class LongOption(NamedTuple):
    """One entry of a ``getopt_long`` table (glibc's ``struct option`` with ``flag`` NULL).

    :param name: the name after ``--``.
    :param has_arg: whether it takes a (required) argument.
    :param val: what the parser yields for it, e.g. ``"-d"`` for an alias of a short option;
        empty: ``"--NAME"``.  Entries with the same *has_arg* and *val* are one option under
        two names, which glibc does not count as an ambiguous abbreviation.
    """

    name: str
    has_arg: bool = False
    val: str = ""

    @property
    def yields(self) -> str:
        return self.val or f"--{self.name}"


def _table(longopts: Mapping[str, bool] | Sequence[LongOption]) -> tuple[LongOption, ...]:
    if isinstance(longopts, Mapping):
        return tuple(LongOption(name, has_arg) for name, has_arg in longopts.items())
    return tuple(longopts)


def _lookup(name: str, text: str, table: Sequence[LongOption]) -> LongOption | None:
    """glibc's ``process_long_option`` search: an exact name, else the first abbreviation.

    :param text: the argument after ``--``, for the message.
    :returns: the option, or ``None`` when no name starts with *name*.
    :raises GetoptError: for an ambiguous abbreviation.
    """
    for opt in table:
        if opt.name == name:
            return opt
    matches = [opt for opt in table if opt.name.startswith(name)]
    if not matches:
        return None
    first = matches[0]
    # glibc lists the first match and every later one that is not the same option as it.
    others = [
        opt for opt in matches[1:] if (opt.has_arg, opt.yields) != (first.has_arg, first.yields)
    ]
    if others:
        possible = " ".join(f"'--{opt.name}'" for opt in (first, *others))
        raise GetoptError(f"option '--{text}' is ambiguous; possibilities: {possible}")
    return first


def _long_option(
    arg: str, args: Sequence[str], i: int, tables: Sequence[Sequence[LongOption]]
) -> tuple[str, str, int]:
    """One ``--name[=value]`` (glibc's ``process_long_option``): the option, its value and
    the index of the next argument.

    :raises GetoptError: for a bad one (which glibc has consumed, with its argument).
    """
    text = arg[2:]
    name, eq, value = text.partition("=")
    found = None
    for table in tables:
        found = _lookup(name, text, table)
        if found is not None:
            break
    if found is None:
        raise GetoptError(f"unrecognized option '{arg}'")
    if not found.has_arg:
        if eq:
            raise GetoptError(f"option '--{found.name}' doesn't allow an argument")
        return found.yields, "", i
    if not eq:
        if i >= len(args):
            raise GetoptError(f"option '--{found.name}' requires an argument")
        value = args[i]
        i += 1
    return found.yields, value, i


def getopt_long(
    args: Sequence[str],
    shortopts: str,
    longopts: Mapping[str, bool] | Sequence[LongOption],
    operands: list[str] | None = None,
    *,
    extension: Sequence[LongOption] = (),
    report: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, str]]:
    """Parse *args* (without ``argv[0]``) as glibc's ``getopt_long`` does.

    In GNU order options may follow operands; with ``POSIXLY_CORRECT`` in the environment or
    *shortopts* starting with ``+``, the first operand ends the options, as in glibc.
    Options come out one at a time, so a caller acts on ``-V`` before a later bad option is
    even looked at, as with getopt(3) in a loop.

    :param shortopts: as for getopt(3): letters, ``:`` after those with an argument.
    :param longopts: the long options, in the order that decides which abbreviation glibc
        takes: a table of :class:`LongOption`, or name -> whether it takes an argument.
    :param operands: if given, non-option arguments are appended to it.
    :param extension: long options looked up only when a name matches none of *longopts*:
        a program's own options added to the table of the program it reproduces, so that
        every abbreviation the original accepts keeps its meaning.
    :param report: for programs that go on after a bad option, as getopt(3) lets them: called
        with each complaint, after which ``("?", "")`` comes out and parsing goes on where
        glibc's does.  Without it the first bad option raises.
    :returns: an iterator of ``(option, value)``: short options spelt ``-k``, long ones as
        their :attr:`LongOption.yields`; the value is ``""`` for an option without one.
    :raises GetoptError: when the iteration reaches a bad option (without *report*).
    """
    in_order = shortopts.startswith("+") or "POSIXLY_CORRECT" in os.environ
    shortopts = shortopts.removeprefix("+")
    with_arg = {c for i, c in enumerate(shortopts) if shortopts[i + 1 : i + 2] == ":"}
    letters = {c for c in shortopts if c != ":"}
    tables = (_table(longopts), tuple(extension))
    rest: list[str] = [] if operands is None else operands

    def bad(message: str) -> tuple[str, str]:
        if report is None:
            raise GetoptError(message)
        report(message)
        return "?", ""

    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            if in_order:
                rest.extend(args[i - 1 :])
                break
            rest.append(arg)
            continue
        if arg.startswith("--"):
            try:
                option, value, i = _long_option(arg, args, i, tables)
            except GetoptError as exc:
                yield bad(str(exc))
                continue
            yield option, value
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            j += 1
            if letter not in letters:
                yield bad(f"invalid option -- '{letter}'")
                continue
            if letter in with_arg:
                if j < len(arg):
                    value = arg[j:]
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    yield bad(f"option requires an argument -- '{letter}'")
                    break
                yield f"-{letter}", value
                break
            yield f"-{letter}", ""
