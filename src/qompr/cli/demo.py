# SPDX-License-Identifier: MIT
"""``qompr demo``: the main job on an embedded default, with no hardware and no services.

It builds objects from ``-object`` strings as QEMU would, shows them through the QMP-shaped
introspection, and formats them back into strings real QEMU accepts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from qompr.managers import query_pr_managers
from qompr.options import process
from qompr.options import to_json_string
from qompr.options import to_keyval
from qompr.plugins import new_tree

__all__ = ["DEFAULT_OBJECTS", "run_demo"]

#: The embedded default: what a VM manager passes to QEMU for a shared disk's helper.
DEFAULT_OBJECTS = (
    "pr-manager-helper,id=helper0,path=/run/qemu-pr-helper.sock",
    '{"qom-type": "pr-manager-helper", "id": "helper1", "path": "/run/vm-a/pr-helper.sock"}',
)


def run_demo(args: argparse.Namespace) -> int:
    tree = new_tree(args.plugin_manager)
    specs = args.objects or list(DEFAULT_OBJECTS)
    objects = process(tree, specs, complete=False)
    assert isinstance(objects, list)
    report: dict[str, Any] = {"objects": []}
    for spec, obj in zip(specs, objects, strict=True):
        report["objects"].append(
            {
                "spec": spec,
                "path": obj.canonical_path,
                "qom-list": tree.qom_list(obj.canonical_path),
                "properties": {
                    p["name"]: tree.qom_get(obj.canonical_path, p["name"])
                    for p in tree.qom_list(obj.canonical_path)
                },
                "key=value": to_keyval(obj),
                "json": to_json_string(obj),
            }
        )
    report["query-pr-managers"] = query_pr_managers(tree)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    for entry in report["objects"]:
        print(f"-object {entry['spec']}")
        print(f"  created {entry['path']}")
        for name, value in entry["properties"].items():
            print(f"    {name} = {json.dumps(value, ensure_ascii=False)}")
        print(f"  as key=value: {entry['key=value']}")
        print(f"  as JSON:      {entry['json']}")
    print("query-pr-managers (not connected: objects are not completed in the demo):")
    print(f"  {json.dumps(report['query-pr-managers'])}")
    return 0


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run the main job on the embedded default")
    demo.add_argument("--json", action="store_true")
    demo.add_argument("objects", nargs="*", metavar="SPEC", help="-object strings to use")
    demo.set_defaults(func=run_demo)
