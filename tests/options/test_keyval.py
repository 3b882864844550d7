# SPDX-License-Identifier: MIT
"""util/keyval.c's grammar, as qemu-storage-daemon / qemu-img read --object."""

from __future__ import annotations

from typing import Any

import pytest

from qompr.errors import OptionError
from qompr.options import keyval_parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pr-manager-helper,id=a", {"qom-type": "pr-manager-helper", "id": "a"}),
        ("t,path=/a,,b", {"qom-type": "t", "path": "/a,b"}),
        ("t,path=/x,", {"qom-type": "t", "path": "/x"}),
        ("t,id=a,id=b", {"qom-type": "t", "id": "b"}),  # last wins
        ("t,x=", {"qom-type": "t", "x": ""}),
        ("t,a.b=1,a.c=2", {"qom-type": "t", "a": {"b": "1", "c": "2"}}),
        ("t,l.0=x,l.1=y", {"qom-type": "t", "l": ["x", "y"]}),
        ("qom-type=t,id=a", {"qom-type": "t", "id": "a"}),
        ("", {}),
        ("__com.example_x=1", {"__com.example_x": "1"}),
    ],
)
def test_parses(text: str, expected: dict[str, Any]) -> None:
    result = keyval_parse(text)
    assert result.qdict == expected
    assert not result.help


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t,foo", "Expected '=' after parameter 'foo'"),
        ("t,1a=1", "Invalid parameter '1a'"),
        ("t,=x", "Invalid parameter ''"),
        (",id=a", "Invalid parameter ''"),
        ("t,a b=1", "Invalid parameter 'a b'"),
        ("t,a.=1", "Invalid parameter 'a.'"),
        ("t,a=1,a.b=2", "Parameters 'a.*' used inconsistently"),
        ("t,a.b=2,a=1", "Parameters 'a.*' used inconsistently"),
        ("t,l.0=x,l.2=y", "Parameter 'l.1' missing"),
        ("t,l.0=x,l.y=y", "Parameters 'l.*' used inconsistently"),
        ("t," + "k" * 128 + "=1", "Parameter '" + "k" * 128 + "' is too long"),
        ("t,a." + "k" * 128 + "=1", "Parameter fragment '" + "k" * 128 + "' is too long"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(OptionError) as exc:
        keyval_parse(text)
    assert exc.value.message == message


@pytest.mark.parametrize("text", ["help", "?", "t,help", "t,?", "t,id=a,help", "t,help,id=a"])
def test_help_anywhere(text: str) -> None:
    assert keyval_parse(text).help


def test_help_is_not_a_prefix_match() -> None:
    with pytest.raises(OptionError, match="Expected '=' after parameter 'helpme'"):
        keyval_parse("t,helpme")
    assert keyval_parse("t,help=1").qdict == {"qom-type": "t", "help": "1"}
