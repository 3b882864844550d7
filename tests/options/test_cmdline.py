# SPDX-License-Identifier: MIT
"""Processing whole command lines, and formatting objects back."""

from __future__ import annotations

import pytest

from qompr.errors import HelpRequestError
from qompr.errors import OptionError
from qompr.errors import QomprError
from qompr.options import HelpText
from qompr.options import ObjectCommandLine
from qompr.options import Syntax
from qompr.options import create_objects
from qompr.options import json_loads
from qompr.options import process
from qompr.options import to_json
from qompr.options import to_json_string
from qompr.options import to_keyval
from qompr.qom import LifeState
from qompr.qom import ObjectTree


def _error(tree: ObjectTree, args: list[str], syntax: Syntax = Syntax.QEMU_SYSTEM) -> QomprError:
    with pytest.raises(QomprError) as exc:
        process(tree, args, syntax, complete=False)
    return exc.value


def test_qemu_system_errors_carry_location_only_while_parsing(tree: ObjectTree) -> None:
    err = _error(tree, ["pr-manager-helper,path=/x"])
    assert (err.location, err.message) == (
        "-object pr-manager-helper,path=/x", "Parameter 'id' is missing"
    )  # fmt: skip
    err = _error(tree, ['{"qom-type":"pr-manager-helper","id":"1a","path":"/x"}'])
    assert err.location is None  # the id is checked when the object is created
    assert err.message == "Parameter 'id' expects an identifier"


def test_parse_errors_beat_creation_errors_of_earlier_options(tree: ObjectTree) -> None:
    err = _error(tree, ['{"qom-type":"pr-manager-helper","id":"1a","path":"/x"}', "nope,id=b"])
    assert err.message == "Parameter 'qom-type' does not accept value 'nope'"
    assert err.location == "-object nope,id=b"


def test_duplicate_id_messages_depend_on_flavour(tree: ObjectTree) -> None:
    kv = "pr-manager-helper,id=a,path=/x"
    js = '{"qom-type":"pr-manager-helper","id":"a","path":"/x"}'
    assert _error(tree, [kv, kv]).message == "Duplicate ID 'a' for object"
    dup = "attempt to add duplicate property 'a' to object (type 'container')"
    assert _error(tree, [js, js]).message == dup
    assert _error(tree, [kv, js]).message == dup


def test_unexpected_key_text_depends_on_flavour(tree: ObjectTree) -> None:
    args = ["pr-manager-helper,id=a,path=/x,foo=1"]
    assert _error(tree, args).message == "Invalid parameter 'foo'"
    assert _error(tree, args, Syntax.KEYVAL).message == "Parameter 'foo' is unexpected"
    assert _error(tree, args, Syntax.KEYVAL).location == "-object " + args[0]


def test_help(tree: ObjectTree) -> None:
    answer = process(tree, ["help"])
    assert isinstance(answer, HelpText)
    assert answer.text.startswith("List of user creatable objects:\n")
    assert "  pr-manager-helper\n" in answer.text and "  pr-manager\n" not in answer.text
    assert process(tree, ["pr-manager-helper,help"]) == HelpText(
        "pr-manager-helper options:\n  path=<string>\n"
    )
    assert process(tree, ["pr-manager,?"]) == HelpText("There are no options for pr-manager.\n")
    # An unknown type with help is not help: the type error wins.
    assert (
        _error(tree, ["nope,help"]).message == "Parameter 'qom-type' does not accept value 'nope'"
    )
    # The keyval tools print the type list instead.
    answer = process(tree, ["nope,help"], Syntax.KEYVAL)
    assert isinstance(answer, HelpText) and answer.text.startswith("List of user")


def test_warnings_are_reported_in_order(tree: ObjectTree) -> None:
    seen: list[tuple[str, str]] = []
    cmdline = ObjectCommandLine(tree, warn=lambda m, h: seen.append((m, h)))
    with pytest.raises(QomprError, match="Invalid parameter 'foo'"):
        cmdline.parse("pr-manager-helper,id=a,path=/x,foo")
    assert seen == [
        (
            "-object pr-manager-helper,id=a,path=/x,foo: warning: short-form boolean option"
            " 'foo' deprecated",
            "Please use foo=on instead",
        )
    ]


@pytest.mark.parametrize("path", ["/run/x.sock", "/a,b,,c", "", "with space", "ünï"])
def test_format_round_trips(tree: ObjectTree, path: str) -> None:
    objs = process(
        tree, [f"pr-manager-helper,id=h0,path={path.replace(',', ',,')}"], complete=False
    )
    assert isinstance(objs, list)
    (obj,) = objs
    assert obj.life_state is LifeState.CREATED  # check mode never completes
    text = to_keyval(obj)
    assert to_json(obj) == {"qom-type": "pr-manager-helper", "id": "h0", "path": path}
    for again in (text, to_json_string(obj)):
        other = process(ObjectTree(tree.types), [again], complete=False)
        assert isinstance(other, list)
        assert to_json(other[0]) == to_json(obj)
    assert json_loads(to_json_string(obj)) == to_json(obj)


def test_create_objects_is_the_typed_common_case(tree: ObjectTree) -> None:
    objects = create_objects(tree, ["pr-manager-helper,id=h0,path=/x"], complete=False)
    assert [obj.id for obj in objects] == ["h0"]  # a list[Object], no HelpText to rule out
    with pytest.raises(HelpRequestError) as exc:
        create_objects(tree, ["pr-manager-helper,id=h1,path=/x", "pr-manager-helper,help"])
    assert exc.value.text == "pr-manager-helper options:\n  path=<string>\n"
    assert isinstance(exc.value, OptionError)
    assert tree.find_object("h1") is None  # help stops the command line before creation
    with pytest.raises(QomprError, match="Parameter 'id' is missing"):
        create_objects(tree, ["pr-manager-helper,path=/x"])
