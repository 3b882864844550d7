# SPDX-License-Identifier: MIT
"""Replay every recorded real-QEMU ``-object`` case against qompr.

For each case qompr processes the same ``-object`` arguments the way ``qemu-system-x86_64``
does (parse and check all, then create and complete in order, connecting to the same fake
helper sockets), and must give the same exit status, the same stdout and stderr byte for byte
(with ``qemu-system-x86_64`` as the program name), and the same ``qom-list``/``qom-get``
results for the objects it created.

Two deliberate differences are checked separately, not skipped:

* ``-object help`` lists the creatable types: QEMU has dozens qompr does not have, and qompr
  has PR managers QEMU does not.  The header and format must agree, and so must the list
  restricted to the types both know.
* A few cases name QEMU types unrelated to persistent reservations (``iothread``,
  ``secret``, ``isa-serial``, and ``memory-backend-epc``, ``pef-guest``, ``s390-pv-guest``
  from QEMU's ``ObjectType`` enum).  qompr does not implement them, so it must refuse them as
  unknown types (QEMU prints their help or fails later for its own reasons).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.options import Syntax
from tests._support import placeholders
from tests._support.replay import Replay

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "qemu-7.2-object.json"
PROG = "qemu-system-x86_64"


DATA: dict[str, Any] = json.loads(CORPUS.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DATA["cases"]
#: QEMU types outside qompr's scope that QEMU's QAPI enum knows (see module docstring).
FOREIGN_TYPES = {
    "memory-backend-epc", "pef-guest", "s390-pv-guest", "iothread", "secret", "isa-serial"
}  # fmt: skip


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Path, list[tuple[str, str]]]]:
    with placeholders.environment() as tmp:
        yield tmp, placeholders.substitutions(tmp)


def test_corpus_is_from_qemu_7_2() -> None:
    assert DATA["qemu_version"].startswith("QEMU emulator version 7.2")
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_replay(
    case: dict[str, Any],
    env: tuple[Path, list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp, subs = env
    monkeypatch.chdir(tmp)  # QEMU ran with its working directory in @TMP@
    args = [placeholders.expand(a, subs) for a in case["args"]]
    ours = Replay.run(args, Syntax.QEMU_SYSTEM, prog=PROG)
    ours["stderr"] = placeholders.unexpand(ours["stderr"], subs)
    ours["objects"] = placeholders.unexpand_json(ours["objects"], subs)

    foreign = {a.split(",")[0] for a in case["args"]} & FOREIGN_TYPES
    if foreign:
        (name,) = foreign
        assert ours["exit_status"] == 1
        assert f"Parameter 'qom-type' does not accept value '{name}'" in ours["stderr"]
        return

    Replay.assert_same(ours, case)
