# SPDX-License-Identifier: MIT
"""``qompr demo``: the main job on an embedded default, with no hardware and no services.

It builds the managers from ``-object`` strings as QEMU would, then plays a two-node
cluster's fencing round on ``pr-manager-emulated``: both nodes register, node A reserves,
node B is refused, B preempts A (fencing it), and A learns it was preempted from a unit
attention, as it would from a real LIO target.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

import attrs

from qompr.managers import PRManager
from qompr.managers import query_pr_managers
from qompr.options import process
from qompr.options import to_keyval
from qompr.plugins import new_tree
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ScsiResult
from qompr.scsi import decode_pr_in_data

__all__ = ["DEFAULT_OBJECTS", "add_parser", "run_demo"]

#: The embedded default: the emulated engine the round trip runs on, and the helper object a
#: VM manager would pass to QEMU (shown, not connected: no helper runs in the demo).
DEFAULT_OBJECTS = (
    "pr-manager-emulated,id=emu0",
    '{"qom-type": "pr-manager-helper", "id": "pr-helper0", "path": "/run/qemu-pr-helper.sock"}',
)
KEY_A, KEY_B = 0xA, 0xB


@attrs.frozen
class Step:
    """One command of the round and what came back."""

    node: str
    command: str
    result: ScsiResult
    shows: str

    def to_json(self) -> dict[str, Any]:
        sense = self.result.sense_code
        return {
            "node": self.node,
            "command": self.command,
            "status": self.result.status.name,
            "sense": str(sense.name) if sense is not None else None,
            "shows": self.shows,
        }


def _pr_out(action: PrOutAction, key: int, sa_key: int = 0, type_: int = 0) -> tuple[bytes, bytes]:
    data = PrOutParameters(reservation_key=key, sa_key=sa_key).to_bytes()
    cdb = PrOutCdb(action, PrScope.LU_SCOPE, type_, len(data)).to_bytes()
    return cdb, data


def _describe(action: PrInAction, result: ScsiResult) -> str:
    if not result.ok:
        code = result.sense_code
        return f"CHECK CONDITION {code.name if code is not None else ''}".strip()
    data = decode_pr_in_data(action, result.data)
    if isinstance(data, ReadKeysData):
        keys = ", ".join(hex(k) for k in data.keys) or "none"
        return f"generation {data.generation}, keys {keys}"
    if isinstance(data, ReadReservationData):
        if data.type is None:
            return f"generation {data.generation}, no reservation"
        return (
            f"generation {data.generation}, held by key {data.reservation_key:#x},"
            f" type {PrType(data.type).description}"
        )
    return str(data)


def fencing_round(manager: PRManager, fd: int) -> list[Step]:
    """Play the two-node fencing round on *manager* (any pr-manager that takes a nexus)."""
    a, b = Nexus("node-a"), Nexus("node-b")
    steps: list[Step] = []

    def out(node: Nexus, label: str, action: PrOutAction, key: int, **kw: int) -> None:
        cdb, data = _pr_out(action, key, kw.get("sa_key", 0), kw.get("type_", 0))
        result = manager.execute(fd, cdb, data, nexus=node)
        steps.append(Step(node.initiator, label, result, result.status.name))

    def read(node: Nexus, action: PrInAction) -> None:
        result = manager.execute(fd, PrInCdb(action, 8192).to_bytes(), nexus=node)
        steps.append(Step(node.initiator, action.name, result, _describe(action, result)))

    we = PrType.WRITE_EXCLUSIVE
    out(a, "REGISTER key 0xa", PrOutAction.REGISTER, 0, sa_key=KEY_A)
    out(b, "REGISTER key 0xb", PrOutAction.REGISTER, 0, sa_key=KEY_B)
    out(a, "RESERVE Write Exclusive", PrOutAction.RESERVE, KEY_A, type_=we)
    read(b, PrInAction.READ_KEYS)
    read(b, PrInAction.READ_RESERVATION)
    out(b, "RESERVE Write Exclusive", PrOutAction.RESERVE, KEY_B, type_=we)
    out(b, "PREEMPT key 0xa (fence node-a)", PrOutAction.PREEMPT, KEY_B, sa_key=KEY_A, type_=we)
    read(b, PrInAction.READ_RESERVATION)
    read(a, PrInAction.READ_KEYS)  # node-a's next command reports the preemption
    read(a, PrInAction.READ_KEYS)
    return steps


def run_demo(args: argparse.Namespace) -> int:
    tree = new_tree(args.plugin_manager)
    objects = process(tree, list(DEFAULT_OBJECTS), complete=False)
    assert isinstance(objects, list)
    emulated = tree.find_object("emu0")
    assert isinstance(emulated, PRManager)
    tree.complete(emulated)  # the helper object stays un-completed: no helper runs here
    with tempfile.NamedTemporaryFile(prefix="qompr-demo-lu-") as lu:
        fd = os.open(lu.name, os.O_RDWR)
        try:
            steps = fencing_round(emulated, fd)
        finally:
            os.close(fd)
    report: dict[str, Any] = {
        "objects": [to_keyval(obj) for obj in objects],
        "steps": [step.to_json() for step in steps],
        "query-pr-managers": query_pr_managers(tree),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("objects (as -object strings):")
    for text in report["objects"]:
        print(f"  {text}")
    print("\na two-node fencing round on pr-manager-emulated (answers as Linux LIO would):")
    for step in steps:
        print(f"  {step.node:7} {step.command:32} -> {step.shows}")
    print(f"\nquery-pr-managers: {json.dumps(report['query-pr-managers'])}")
    return 0


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run the main job on the embedded default")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=run_demo)
