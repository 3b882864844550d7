# SPDX-License-Identifier: MIT
"""``getopt_long`` as glibc does it, with glibc's error texts.

qemu-pr-helper parses its command line with ``getopt_long``; a drop-in replacement must
accept the same spellings (``-k/path``, ``-vvd``, ``--sock=/path`` abbreviations, options
after operands) and print the same complaints (``invalid option -- 'Z'``).  Python's
:mod:`getopt` words its errors differently and drops the value in ``unrecognized option``.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence

__all__ = ["GetoptError", "getopt_long"]


class GetoptError(Exception):
    """A command-line error, worded as glibc prints it (without the ``argv[0]: `` prefix)."""


def getopt_long(
    args: Sequence[str],
    shortopts: str,
    longopts: Mapping[str, bool],
    operands: list[str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Parse *args* (without ``argv[0]``) in GNU order: options may follow operands.

    Options come out one at a time, so a caller acts on ``-V`` before a later bad option is
    even looked at, as with getopt(3) in a loop.

    :param shortopts: as for getopt(3): letters, ``:`` after those with an argument.
    :param longopts: long option name -> whether it takes a (required) argument.
    :param operands: if given, non-option arguments are appended to it.
    :returns: an iterator of ``(option, value)``, options spelt ``-k`` / ``--socket``.
    :raises GetoptError: when the iteration reaches a bad option.
    """
    with_arg = {c for c, nxt in zip(shortopts, shortopts[1:] + " ", strict=True) if nxt == ":"}
    letters = {c for c in shortopts if c != ":"}
    rest: list[str] = [] if operands is None else operands
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg.startswith("--"):
            body = arg[2:]
            name, eq, value = body.partition("=")
            if name in longopts:
                full = name
            else:
                matches = [n for n in longopts if n.startswith(name)]
                if not matches:
                    raise GetoptError(f"unrecognized option '{arg}'")
                if len(matches) > 1:
                    possible = " ".join(f"'--{m}'" for m in matches)
                    raise GetoptError(f"option '--{name}' is ambiguous; possibilities: {possible}")
                full = matches[0]
            if longopts[full]:
                if not eq:
                    if i >= len(args):
                        raise GetoptError(f"option '--{full}' requires an argument")
                    value = args[i]
                    i += 1
                yield f"--{full}", value
            else:
                if eq:
                    raise GetoptError(f"option '--{full}' doesn't allow an argument")
                yield f"--{full}", ""
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                if letter not in letters:
                    raise GetoptError(f"invalid option -- '{letter}'")
                if letter in with_arg:
                    if j < len(arg):
                        value = arg[j:]
                    elif i < len(args):
                        value = args[i]
                        i += 1
                    else:
                        raise GetoptError(f"option requires an argument -- '{letter}'")
                    yield f"-{letter}", value
                    break
                yield f"-{letter}", ""
            continue
        rest.append(arg)
