# SPDX-License-Identifier: MIT
"""Parse ``-object`` strings the way qemu-system-x86_64 does, and print what they make.

Run: ``python examples/object_strings.py 'pr-manager-helper,id=h0,path=/run/x.sock' ...``
(with no arguments it uses a few built-in strings, one of them wrong on purpose).
"""

from __future__ import annotations

import sys

import qompr
from qompr.errors import QomprError
from qompr.options import HelpText
from qompr.options import ObjectCommandLine
from qompr.options import format_error
from qompr.options import to_json_string
from qompr.options import to_keyval

SAMPLES = [
    "pr-manager-helper,id=helper0,path=/run/qemu-pr-helper.sock",
    '{"qom-type": "pr-manager-helper", "id": "helper1", "path": "/run/vm,1.sock"}',
    "pr-manager-helper,path=/run/missing-id.sock",
]


def show(spec: str) -> int:
    """Process one string in a fresh tree; print the object or QEMU's error."""
    tree = qompr.new_tree()
    cmdline = ObjectCommandLine(tree)
    try:
        answer = cmdline.parse(spec)
        if isinstance(answer, HelpText):
            print(answer.text, end="")
            return 0
        (obj,) = cmdline.create_all(complete=False)  # complete() would connect to the helper
    except QomprError as exc:
        print(format_error(exc, "example"), end="")
        return 1
    print(f"{obj.canonical_path}: {obj.typename}")
    path = obj.canonical_path
    for prop in tree.qom_list(path):
        print(f"  {prop['name']} ({prop['type']}) = {tree.qom_get(path, prop['name'])!r}")
    print(f"  key=value: {to_keyval(obj)}")
    print(f"  JSON:      {to_json_string(obj)}")
    return 0


def main(argv: list[str]) -> int:
    failures = sum(show(spec) for spec in (argv or SAMPLES))
    return 1 if failures and argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
