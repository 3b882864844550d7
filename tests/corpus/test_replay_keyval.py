# SPDX-License-Identifier: MIT
"""Replay every recorded real ``qemu-storage-daemon --object`` case against qompr's keyval flavour.

For each case qompr reads the same ``--object`` arguments the way qemu-storage-daemon does
(:attr:`Syntax.KEYVAL`: each option parsed with the strict keyval grammar, or as JSON, and its
object created and completed at once, connecting to the same fake helper sockets), and must
give the same exit status, the same stdout and stderr byte for byte (with
``qemu-storage-daemon`` as the program name and ``--object`` as the option), and the same
``qom-list``/``qom-get`` results for the objects it created.

Two deliberate differences are checked separately, not skipped:

* ``--object help`` (and help for a type that does not exist) lists the creatable types:
  qemu-storage-daemon has a dozen qompr does not have (``iothread``, ``secret``, ``authz-*``,
  ``tls-*`` ...), and qompr has PR managers it does not have.  The header and format must
  agree, and so must the list restricted to the types both know.
* A few cases name QEMU types unrelated to persistent reservations that qemu-storage-daemon
  knows (``iothread``, ``secret``, ``memory-backend-epc``, ... see :data:`FOREIGN_TYPES`).
  qompr does not implement them, so it must treat them as unknown types: refuse them with
  ``Parameter 'qom-type' does not accept value ...``, or, when the option asks for help,
  list the types as qemu-storage-daemon does for any unknown type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.errors import QomprError
from qompr.options import Syntax
from qompr.options import keyval_parse
from tests._support import placeholders
from tests._support.replay import Replay
from tests.corpus import generate_qsd

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "qsd-7.2-object.json"
PROG = "qemu-storage-daemon"
OPTION = "--object"


DATA: dict[str, Any] = json.loads(CORPUS.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DATA["cases"]
#: QEMU types outside qompr's scope that these cases name (see module docstring).
#: ``isa-serial`` is not one: qemu-storage-daemon has no devices, so it refuses it (and lists
#: the types for ``isa-serial,help``) exactly as qompr does, and those cases compare as usual.
FOREIGN_TYPES = {"memory-backend-epc", "pef-guest", "s390-pv-guest", "iothread", "secret"}
TYPE_LIST_HEADER = "List of user creatable objects:\n"


#: Cases where qompr still disagrees with qemu-storage-daemon, for reasons outside the keyval


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Path, list[tuple[str, str]]]]:
    with placeholders.environment() as tmp:
        yield tmp, placeholders.substitutions(tmp)


def _foreign_type(case: dict[str, Any]) -> str | None:
    """The foreign type named as the implied ``qom-type`` of an option that QSD reached
    (no earlier option is the location of its error)."""
    for i, arg in enumerate(case["args"]):
        if any(case["stderr"].startswith(f"{PROG}: {OPTION} {a}: ") for a in case["args"][:i]):
            return None
        name = str(arg).split(",")[0]
        if not arg.startswith("{") and name in FOREIGN_TYPES:
            return name
    return None


def _asks_help(arg: str) -> bool:
    try:
        return keyval_parse(arg).help
    except QomprError:
        return False


def test_corpus_is_from_qsd_7_2() -> None:
    assert DATA["qemu_version"].startswith("qemu-storage-daemon version 7.2")
    assert DATA["command"][:2] == [PROG, OPTION]
    assert len(CASES) >= 150


def test_corpus_matches_the_case_list() -> None:
    """The recorded cases are generate_qsd.py's, in order, and every run went cleanly."""
    assert [(c["name"], c["args"]) for c in CASES] == [
        (c.full_name, list(c.args)) for c in generate_qsd.CASES
    ]
    for case in CASES:
        assert not case["timed_out"], case["name"]
        assert "qmp_error" not in case, case["name"]
        assert case["stayed_running"] == (case["objects"] is not None)
        if case["stayed_running"]:
            assert case["exit_status"] == 0 and case["stderr"] == ""


def test_corpus_covers_keyval_and_creation() -> None:
    """Enough of each kind of outcome to mean something."""
    keyval = [c for c in CASES if c["group"].startswith("keyval-")]
    assert len(keyval) >= 100
    created = [c for c in CASES if c["stayed_running"]]
    assert len(created) >= 30
    assert any(len(c["objects"]) == 3 for c in created)
    helps = [c for c in CASES if c["stdout"].startswith(TYPE_LIST_HEADER)]
    assert len(helps) >= 10
    # Every error QSD prints carries the option as its location.
    for case in CASES:
        if case["exit_status"] == 1:
            assert case["stderr"].startswith(f"{PROG}: {OPTION} "), case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_replay(
    case: dict[str, Any],
    env: tuple[Path, list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp, subs = env
    monkeypatch.chdir(tmp)  # QSD ran with its working directory in @TMP@
    args = [placeholders.expand(a, subs) for a in case["args"]]
    ours = Replay.run(args, Syntax.KEYVAL, prog=PROG, option=OPTION)
    ours["stderr"] = placeholders.unexpand(ours["stderr"], subs)
    ours["objects"] = placeholders.unexpand_json(ours["objects"], subs)

    foreign = _foreign_type(case)
    if foreign is not None:
        first = next(a for a in case["args"] if a.split(",")[0] == foreign)
        if _asks_help(first):
            assert ours["exit_status"] == 0
            assert ours["stdout"].startswith(TYPE_LIST_HEADER)
        else:
            assert ours["exit_status"] == 1
            assert f"Parameter 'qom-type' does not accept value '{foreign}'" in ours["stderr"]
        return

    Replay.assert_same(ours, case)
