# SPDX-License-Identifier: MIT
"""Replaying a recorded corpus case through qompr: ``tests/corpus/test_replay.py``
(qemu-system-x86_64) and ``test_replay_keyval.py`` (qemu-storage-daemon) share it."""

from __future__ import annotations

from typing import Any

import qompr
from qompr.options import Syntax
from qompr.options import run_command_line
from qompr.qom import ObjectTree

__all__ = ["Replay", "inspect_objects"]


def inspect_objects(tree: ObjectTree) -> list[dict[str, Any]]:
    """The user-created objects as the corpus generator records them through QMP
    (``qom-list`` then ``qom-get`` of each property, sorted by id and by name)."""
    objects = []
    for obj in sorted(tree.user_objects(), key=lambda o: str(o.id)):
        path = obj.canonical_path
        props = [
            {"name": p["name"], "type": p["type"], "value": tree.qom_get(path, p["name"])}
            for p in sorted(tree.qom_list(path), key=lambda p: str(p["name"]))
        ]
        objects.append({"id": obj.id, "type": obj.typename, "properties": props})
    return objects


class Replay:
    """The halves of a corpus replay that ``tests/corpus/test_replay.py`` (qemu-system) and
    ``test_replay_keyval.py`` (qemu-storage-daemon) share."""

    #: How QEMU's ``-object help`` starts.
    TYPE_LIST_HEADER = "List of user creatable objects:\n"

    @staticmethod
    def run(
        args: list[str], syntax: Syntax, *, prog: str, option: str = "-object"
    ) -> dict[str, Any]:
        """qompr's answer to a command line of these ``-object`` arguments, shaped like a
        recorded case: exit status, stdout, stderr and, if it stayed up, the objects."""
        tree = qompr.new_tree(load_entrypoints=False)
        try:
            run = run_command_line(tree, args, syntax, prog=prog, option=option)
            objects = inspect_objects(tree) if run.exit_status == 0 and not run.stdout else None
        finally:
            for obj in tree.user_objects():
                obj.unparent()  # close helper connections
        return {
            "exit_status": run.exit_status,
            "stdout": run.stdout,
            "stderr": run.stderr,
            "objects": objects,
        }

    @staticmethod
    def assert_same(ours: dict[str, Any], case: dict[str, Any]) -> None:
        """Same exit status, stderr, stdout and objects as the recorded case.  A type list
        (``help``) is compared on the types both programs know, in order."""
        assert ours["exit_status"] == case["exit_status"], ours["stderr"]
        assert ours["stderr"] == case["stderr"]
        header = Replay.TYPE_LIST_HEADER
        if case["stdout"].startswith(header):
            theirs_types = case["stdout"].splitlines()[1:]
            our_types = ours["stdout"].splitlines()[1:]
            assert ours["stdout"].startswith(header)
            assert our_types == sorted(our_types)
            assert all(line.startswith("  ") for line in our_types)
            assert [t for t in theirs_types if t in our_types] == [
                t for t in our_types if t in theirs_types
            ]
            assert "  pr-manager-helper" in our_types
        else:
            assert ours["stdout"] == case["stdout"]
        if case["exit_status"] == 0 and case["stayed_running"]:
            assert ours["objects"] == case["objects"]
