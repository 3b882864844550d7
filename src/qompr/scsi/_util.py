# SPDX-License-Identifier: MIT
"""Small helpers shared by the codecs: range validators and enum-or-int converters."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import attrs

from qompr.scsi._constants import PrInAction
from qompr.scsi._constants import PrOutAction
from qompr.scsi._constants import PrScope
from qompr.scsi._constants import PrType

__all__ = [
    "as_pr_in_action",
    "as_pr_out_action",
    "as_pr_scope",
    "as_pr_type",
    "as_pr_type_or_none",
    "enum_or_int",
    "is_bool",
    "uint",
    "uint_range",
    "within",
]

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


def within(mask: int) -> Validator:
    """A validator for a non-negative int that sets no bit outside *mask*."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
        if value < 0 or value & ~mask:
            raise ValueError(f"{attribute.name} {value:#x} sets bits outside {mask:#x}")

    return check


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


# Named converters (mypy's attrs plugin accepts only named functions as converters).


def as_pr_in_action(value: int) -> PrInAction | int:
    """:class:`PrInAction` for a known value, else the int."""
    return enum_or_int(PrInAction)(value)


def as_pr_out_action(value: int) -> PrOutAction | int:
    """:class:`PrOutAction` for a known value, else the int."""
    return enum_or_int(PrOutAction)(value)


def as_pr_scope(value: int) -> PrScope | int:
    """:class:`PrScope` for a known value, else the int."""
    return enum_or_int(PrScope)(value)


def as_pr_type(value: int) -> PrType | int:
    """:class:`PrType` for a known value, else the int."""
    return enum_or_int(PrType)(value)


def as_pr_type_or_none(value: int | None) -> PrType | int | None:
    """``None`` stays ``None``; otherwise as :func:`as_pr_type`."""
    return None if value is None else as_pr_type(value)


def is_bool(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A validator accepting only :class:`bool` (not 0/1)."""
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool, not {type(value).__name__}")
