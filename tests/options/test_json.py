# SPDX-License-Identifier: MIT
"""QEMU's JSON dialect."""

from __future__ import annotations

from typing import Any

import pytest

from qompr.errors import OptionError
from qompr.options import json_loads


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("{'a': 'b'}", {"a": "b"}),
        ("{'it\\'s': \"q\\\"\"}", {"it's": 'q"'}),
        ('{"u": "\\u0041\\n"}', {"u": "A\n"}),
        ('{"s": "\\ud83d\\ude00"}', {"s": "\U0001f600"}),
        (" [1, -2, 3.5, true, false, null] ", [1, -2, 3.5, True, False, None]),
        ('{"big": 18446744073709551615}', {"big": 2**64 - 1}),
        ('{"huge": 18446744073709551616}', {"huge": float(2**64)}),
        ("{}", {}),
    ],
)
def test_values(text: str, value: Any) -> None:
    assert json_loads(text) == value


@pytest.mark.parametrize(
    "text",
    ['{"a": 1', '{"a" 1}', "{a: 1}", '{"a": 1,}', '{"a": 1} x', '{"a": 1}{}', '{"a": tru}',
     '{"a": 1, "a": 2}', '{"a": "\\x"}', '{"a": "\\u00zz"}', '{"a": "x'],
)  # fmt: skip
def test_malformed_raises_option_error(text: str) -> None:
    with pytest.raises(OptionError):
        json_loads(text)
