# SPDX-License-Identifier: MIT
"""Small helpers shared by the codecs: range validators and enum-or-int converters."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import attrs

__all__ = ["enum_or_int", "uint", "uint_range"]

E = TypeVar("E", bound=enum.IntEnum)

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def uint_range(low: int, high: int) -> Validator:
    """A validator accepting an :class:`int` (not a :class:`bool`) with ``low <= v <= high``.

    :param low: the smallest value allowed.
    :param high: the largest value allowed.
    """

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be in {low:#x}..{high:#x}, not {value:#x}")

    return check


def uint(bits: int) -> Validator:
    """A validator for an unsigned integer field that is *bits* wide."""
    return uint_range(0, (1 << bits) - 1)


def enum_or_int(cls: type[E]) -> Callable[[int], E | int]:
    """A converter: the member of *cls* for a known value, else the plain :class:`int`.

    Reserved or obsolete wire values stay representable, so the decoder can hand them to the
    engine, which decides which sense to answer with.
    """

    def convert(value: int) -> E | int:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            return value

    return convert

