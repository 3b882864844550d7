# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from qompr.qom import parse_bool
from qompr.qom import parse_int
from qompr.qom import parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("on", True), ("yes", True), ("true", True), ("y", True),
     ("off", False), ("no", False), ("false", False), ("n", False),
     ("ON", None), ("1", None), ("", None), ("True", None), ("of", None)],
)  # fmt: skip
def test_bool_words_are_exact(text: str, value: bool | None) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), ("-42", -42), ("+7", 7), ("0x1f", 31), ("0X1F", 31),
     ("010", 8), (" 5", 5), ("9223372036854775807", 2**63 - 1),
     ("-9223372036854775808", -(2**63)),
     ("9223372036854775808", None), ("", None), ("5 ", None), ("0x", None), ("08", None),
     ("1e3", None), ("abc", None), ("--1", None)],
)  # fmt: skip
def test_int_is_strtoll_base_0(text: str, value: int | None) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1024", 1024), ("1k", 1024), ("1K", 1024), ("2M", 2 << 20), ("1G", 1 << 30),
     ("1T", 1 << 40), ("1P", 1 << 50), ("1E", 1 << 60), ("12B", 12), ("1.5G", 3 << 29),
     ("1.k", 1024), ("0.5k", 512), ("0x10", 16), ("010", 10), (" 4k", 4096),
     ("+4", 4), ("16E", None), ("1.5", None), ("1.5B", None), ("0x10k", None),
     ("0x1.8", None), ("1e3", None), ("1.5e3k", None), ("-1", None), ("1kB", None),
     ("", None), ("k", None), ("18446744073709551615", 2**64 - 1),
     ("18446744073709551616", None), ("0.0001k", 0), ("0.0005k", 1)],
)  # fmt: skip
def test_size_follows_qemu_strtosz(text: str, value: int | None) -> None:
    assert parse_size(text) == value
