# SPDX-License-Identifier: MIT
"""util/qemu-option.c's rules for the accept-any ``object`` list."""

from __future__ import annotations

import pytest

from qompr.errors import OptionError
from qompr.options import QemuOptsList


def test_implied_type_escapes_and_last_value_wins() -> None:
    opts = QemuOptsList().parse("pr-manager-helper,id=h,path=/a,,b,path=/c,")
    assert opts.id == "h"
    assert opts.get("qom-type") == "pr-manager-helper"
    assert opts.get("path") == "/c"
    assert opts.to_dict() == {"id": "h", "qom-type": "pr-manager-helper", "path": "/c"}
    assert opts.warnings == ()


def test_first_id_wins_and_is_checked_before_anything() -> None:
    opts = QemuOptsList().parse("t,id=first,id=second")
    assert opts.id == "first"
    with pytest.raises(OptionError) as exc:
        QemuOptsList().parse("t,id=1x,id=ok")
    assert exc.value.message == "Parameter 'id' expects an identifier"
    assert exc.value.hint is not None and exc.value.hint.startswith("Identifiers consist")


def test_duplicate_id_across_options_of_one_list() -> None:
    lst = QemuOptsList()
    lst.parse("t,id=a")
    with pytest.raises(OptionError, match="^Duplicate ID 'a' for object$"):
        lst.parse("u,id=a")
    lst.parse("u,id=b")  # a failed parse does not poison the list


def test_short_form_booleans_warn() -> None:
    opts = QemuOptsList().parse("t,id=a,foo,nobar")
    assert opts.get("foo") == "on" and opts.get("bar") == "off"
    assert opts.warnings == (
        ("short-form boolean option 'foo' deprecated", "Please use foo=on instead"),
        ("short-form boolean option 'nobar' deprecated", "Please use bar=off instead"),
    )


def test_help_items_do_not_warn_and_are_detected() -> None:
    for text in ("t,help", "t,?", "t,id=a,help=yes"):
        opts = QemuOptsList().parse(text)
        assert opts.has_help() and opts.warnings == ()
    assert not QemuOptsList().parse("help").has_help()  # the *type* is "help"
    assert QemuOptsList().parse("help").get("qom-type") == "help"


def test_implied_key_only_for_first_item() -> None:
    opts = QemuOptsList().parse("id=a,pr-manager-helper")
    assert opts.get("qom-type") is None
    assert opts.get("pr-manager-helper") == "on"
