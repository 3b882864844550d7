# SPDX-License-Identifier: MIT
"""``-object`` strings: QemuOpts, keyval and QEMU-JSON parsing, and formatting back."""

from typing import TYPE_CHECKING
from typing import Any

from qompr._lazy import load as _load
from qompr.options._cmdline import CommandLineRun as CommandLineRun
from qompr.options._cmdline import HelpText as HelpText
from qompr.options._cmdline import ObjectCommandLine as ObjectCommandLine
from qompr.options._cmdline import Syntax as Syntax
from qompr.options._cmdline import create_objects as create_objects
from qompr.options._cmdline import format_error as format_error
from qompr.options._cmdline import format_warning as format_warning
from qompr.options._cmdline import process as process
from qompr.options._cmdline import run_command_line as run_command_line
from qompr.options._cmdline import type_help as type_help
from qompr.options._cmdline import types_help as types_help
from qompr.options._format import escape_value as escape_value
from qompr.options._format import to_json as to_json
from qompr.options._format import to_json_string as to_json_string
from qompr.options._format import to_keyval as to_keyval
from qompr.options._keyval import KeyvalResult as KeyvalResult
from qompr.options._keyval import keyval_parse as keyval_parse

if TYPE_CHECKING:
    from qompr.options._json import json_loads as json_loads
    from qompr.options._qemuopts import QemuOpts as QemuOpts
    from qompr.options._qemuopts import QemuOptsList as QemuOptsList

__all__ = [
    "CommandLineRun",
    "HelpText",
    "KeyvalResult",
    "ObjectCommandLine",
    "QemuOpts",
    "QemuOptsList",
    "Syntax",
    "create_objects",
    "escape_value",
    "format_error",
    "format_warning",
    "json_loads",
    "keyval_parse",
    "process",
    "run_command_line",
    "to_json",
    "to_json_string",
    "to_keyval",
    "type_help",
    "types_help",
]

# The JSON and QemuOpts parsers load on first use (PEP 562): reading a keyval spec, as
# ``qompr persist --object`` does, needs neither.
_LAZY = {
    "json_loads": "qompr.options._json",
    "QemuOpts": "qompr.options._qemuopts",
    "QemuOptsList": "qompr.options._qemuopts",
}


def __getattr__(name: str) -> Any:
    return _load(__name__, _LAZY, name)
