# SPDX-License-Identifier: MIT
"""The transition tables, and the diagrams in docs/daemon.md generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from qompr.protocol import Role
from qompr.protocol import State
from qompr.protocol import state_diagram
from qompr.protocol._state import INITIAL_STATE
from qompr.protocol._state import TRANSITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "daemon.md"


@pytest.mark.parametrize("role", list(Role))
def test_every_state_of_a_role_is_reachable_and_can_end(role: Role) -> None:
    table = TRANSITIONS[role]
    reachable = {INITIAL_STATE[role]}
    changed = True
    while changed:
        changed = False
        for (state, _direction, _trigger), target in table.items():
            if state in reachable and target not in reachable:
                reachable.add(target)
                changed = True
    used = {s for s, _, _ in table} | set(table.values())
    assert used <= reachable
    assert State.CLOSED in reachable
    assert State.IDLE in reachable


def test_sends_and_receives_never_share_a_trigger_in_one_state() -> None:
    for table in TRANSITIONS.values():
        seen: dict[tuple[State, str], str] = {}
        for state, direction, trigger in table:
            key = (state, trigger)
            assert key not in seen or seen[key] == direction, key
            seen[key] = direction


@pytest.mark.parametrize("role", list(Role))
def test_docs_embed_the_generated_diagrams(role: Role) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"```mermaid\n{state_diagram(role)}```" in text, (
        f"docs/daemon.md is out of date; paste state_diagram(Role.{role.name}) into it"
    )
