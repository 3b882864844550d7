# SPDX-License-Identifier: MIT
"""What ``qompr persist`` and ``qompr turs`` reproduce of sg3_utils' library (libsgutils2).

sg3_utils' programs share one library for reading numbers, dumping bytes, naming sense data
and exit statuses, and judging what a SCSI pass-through answered.  Our sg3_utils-compatible
commands share this package the same way, one module per concern:

* :mod:`~qompr.cli.sglib.numbers`: numbers as sg3_utils reads them (``sscanf("%x")``,
  ``sg_get_num``);
* :mod:`~qompr.cli.sglib.hexdump`: byte dumps as sg3_utils prints them;
* :mod:`~qompr.cli.sglib.texts`: exit statuses, sense and device-type texts;
* :mod:`~qompr.cli.sglib.passthrough`: one command's answer judged as ``sg_cmds_process_resp``
  does, and the ``SG_IO`` call as sg3_utils' Linux pass-through issues it.

The code is written anew; the user-visible strings (exit-status texts, sense-key names and
the ASC/ASCQ wordings, themselves from T10's list) are sg3_utils' own, reproduced so the
output matches.  sg3_utils is BSD-licensed, (c) Douglas Gilbert.
"""

from __future__ import annotations

import sys

from qompr import __version__

__all__ = ["device_operand", "err", "out", "says_version"]


def out(text: str) -> None:
    """Write *text* to stdout (the current ``sys.stdout``, so redirection is honoured)."""
    sys.stdout.write(text)


def err(text: str) -> None:
    """Write *text* to stderr (the current ``sys.stderr``)."""
    sys.stderr.write(text)


def device_operand(device: str | None, operands: list[str]) -> tuple[str | None, bool]:
    """sg3_utils' operands after the options: the first names the device unless an option
    did; each one more is reported on stderr.

    :returns: the device, and whether operands were left over (a syntax error).
    """
    if operands and device is None:
        device = operands.pop(0)
    for extra in operands:
        err(f"Unexpected extra argument: {extra}\n")
    return device, bool(operands)


def says_version(verbose: bool, version_given: bool, text: str) -> bool:
    """sg3_utils' ``-V``: *text* and qompr's version on stderr (``-vV`` is a debug build's).

    :returns: whether ``-V`` was given (the program then exits with status 0).
    """
    if verbose and version_given:
        err("Not in DEBUG mode, so '-vV' has no special action\n")
    if version_given:
        err(f"{text} (qompr {__version__})\n")
    return version_given
