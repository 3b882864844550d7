# SPDX-License-Identifier: MIT
"""Hostile ``-object`` strings: answers, never Python exceptions (issue 16, defect 4).

What real QEMU 7.2 answers for strings a command line can carry is checked by the corpus
replays (groups ``hostile`` and ``keyval-hostile`` in ``tests/corpus``).  Here: that no depth
depends on Python's stack, what only the Python API can pass (lone surrogates, NUL), the
``--json`` form, and the three programs that read ``-object`` strings.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.cli.main import main as qompr_main
from qompr.daemon.main import main as helper_main
from qompr.errors import ObjectError
from qompr.errors import OptionError
from qompr.errors import QomprError
from qompr.managers import PRManagerHelper
from qompr.options import Syntax
from qompr.options import json_loads
from qompr.options import keyval_parse
from qompr.options import run_command_line
from qompr.options import to_json
from qompr.options import to_json_string
from qompr.options import to_keyval
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import parse_int
from qompr.qom import parse_size

HEAD = '{"qom-type":"pr-manager-helper","id":"a","path":'


def _depth() -> int:
    frame = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


@contextlib.contextmanager
def shallow_stack(frames: int = 80) -> Iterator[None]:
    """Allow only *frames* Python frames beyond the caller's: far fewer than the nesting the
    inputs below have, so a recursive parser fails here whatever the interpreter's limit."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def check(args: list[str], syntax: Syntax = Syntax.QEMU_SYSTEM, **kw: Any) -> tuple[int, str]:
    run = run_command_line(qompr.new_tree(), args, syntax, prog="p", complete=False, **kw)
    return run.exit_status, run.stderr


# -- depth never depends on Python's stack ----------------------------------------------------


@pytest.mark.parametrize("levels", [494, 1000, 1023])
def test_json_nesting_below_the_limit_is_parsed_without_recursion(levels: int) -> None:
    text = f"{HEAD}{'[' * levels}{']' * levels}}}"
    with shallow_stack():
        status, err = check([text])
        value = json_loads("[" * 1024 + "]" * 1024)
    assert (status, err) == (1, f"p: -object {text}: Invalid parameter type for 'path', "
                             "expected: string\n")  # fmt: skip
    for _ in range(1023):
        (value,) = value
    assert value == []


def test_json_nesting_in_objects_and_keys() -> None:
    deep = '{"a":' * 1000 + "1" + "}" * 1000
    with shallow_stack():
        assert json_loads(deep) is not None
        with pytest.raises(OptionError, match="key is not a string in object"):
            json_loads("{" + "[" * 1000 + "]" * 1000 + ":1}")
        with pytest.raises(OptionError, match="nesting depth limit exceeded"):
            json_loads("[" * 1025 + "]" * 1025)
        with pytest.raises(OptionError, match="premature EOI"):
            json_loads("[" * 1000)


@pytest.mark.parametrize("parts", [991, 20_000])
def test_keyval_keys_of_many_dotted_parts(parts: int) -> None:
    key = ".".join(["a"] * parts)
    with shallow_stack():
        status, err = check([f"pr-manager-helper,id=x,path=/p,{key}=1"], Syntax.KEYVAL)
        nested = keyval_parse(f"{'.'.join(['a'] + ['0'] * parts)}=1", None).qdict
        with pytest.raises(OptionError, match=r"^Parameter 'a(\.1)+\.0' missing$"):
            keyval_parse(f"{'.'.join(['a'] + ['1'] * parts)}=1", None)
    assert status == 1
    assert err.endswith(".a.a=1: Parameter 'a' is unexpected\n")
    value = nested["a"]
    for _ in range(parts):
        (value,) = value
    assert value == "1"


def test_keyval_many_parts_take_linear_time() -> None:
    # The key so far was sliced once per part (60,000 parts: 12 s); now only for an error.
    key = ".".join(["a"] * 60_000)
    with shallow_stack():
        inconsistent = f"{key}=1,{key[:60_001]}.0=1"
        with pytest.raises(OptionError, match=r"^Parameters '(a\.)+\*' used inconsistently$"):
            keyval_parse(inconsistent, None)


def test_a_deep_object_tree_is_walked_without_recursion() -> None:
    tree = ObjectTree()
    node = tree.objects
    for i in range(3000):
        child = tree.new_object("container")
        node.add_child(f"c{i}", child)
        node = child
    with shallow_stack():
        assert tree.resolve("c2999") is node


# -- numbers of any length ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("18446744073709551615", 2**64 - 1),
        ("-9223372036854775808", -(2**63)),
        ("-9223372036854775809", -9223372036854775809.0),
        ("9" * 21, float("9" * 21)),
        ("1" + "0" * 400, float("inf")),  # QEMU's strtod overflows to inf
        ("-1" + "0" * 5000, float("-inf")),
        ("1" + "0" * 5000, float("inf")),
    ],
)
def test_json_integers_beyond_64_bits_become_doubles(number: str, value: float) -> None:
    assert json_loads(number) == value


@pytest.mark.parametrize("digits", [400, 5000])
def test_huge_json_integers_are_type_errors(digits: int) -> None:
    # QEMU 7.2, iothread's int property poll-max-ns given 1 and 5,000 zeros: "Invalid
    # parameter type for 'poll-max-ns', expected: integer" (the same qobject visitor).
    spec = f'{{"qom-type":"pr-manager-emulated","id":"e","max-registrations":1{"0" * digits}}}'
    assert check([spec])[1].endswith(
        ": Invalid parameter type for 'max-registrations', expected: integer\n"
    )


@pytest.mark.parametrize(
    ("syntax", "expects"), [(Syntax.QEMU_SYSTEM, "an int64 value"), (Syntax.KEYVAL, "integer")]
)
def test_huge_key_value_integers_are_out_of_range(syntax: Syntax, expects: str) -> None:
    # QEMU 7.2: iothread,poll-max-ns=1 and 5,000 zeros: "Parameter 'poll-max-ns' expects an
    # int64 value" (qemu-system) / "expects integer" (qemu-storage-daemon).
    status, err = check([f"pr-manager-emulated,id=e,max-registrations=1{'0' * 5000}"], syntax)
    assert status == 1
    assert err.endswith(f"0: Parameter 'max-registrations' expects {expects}\n")


def test_int_and_size_parsers_take_any_length() -> None:
    assert parse_int("1" + "0" * 5000) is None
    assert parse_int("0x" + "f" * 5000) is None
    assert parse_int("0" * 5000 + "17") == 15  # a leading 0 is octal, and zeros cost nothing
    assert parse_int("-0" * 1) == 0
    assert parse_size("9" * 5000) is None
    assert parse_size("1." + "0" * 5000 + "1K") == 1024
    assert parse_size("1." + "5" * 5000 + "K") == parse_size("1." + "5" * 70 + "K") == 1593


# -- what only the Python API can pass ----------------------------------------------------


def test_argument_bytes() -> None:
    from qompr.qom import argument_bytes
    from qompr.qom import argument_text

    assert argument_bytes("a\udcffb") == b"a\xffb"
    assert argument_bytes("\ud800") == b"\xed\xa0\x80"
    assert argument_bytes("\udc00\udfff") == b"\xed\xb0\x80\xed\xbf\xbf"
    assert argument_bytes("a\0b") == b"a\xc0\x80b"
    assert argument_text("\ud800") == "\udced\udca0\udc80"
    for text in ("plain", "été", "\ud800x\udcff\0"):
        once = argument_text(text)
        assert argument_text(once) == once
        assert os.fsencode(once) == argument_bytes(text)


@pytest.mark.parametrize("syntax", list(Syntax))
@pytest.mark.parametrize(
    "spec",
    [
        HEAD + '"\ud800"}',
        HEAD + '"/p","\udbff":1}',
        "pr-manager-helper,id=a,path=/p,\ud800=1",
        "pr-manager-helper,id=a\ud800,path=/p",
        "\ud800,id=a",
    ],
)
def test_a_lone_surrogate_is_answered_as_its_bytes(syntax: Syntax, spec: str) -> None:
    """A lone surrogate has no UTF-8 form; it stands for its three bytes (ED A0 80 for
    U+D800), and the answer is QEMU's for those bytes (corpus cases ``hostile/*surrogate*``)."""
    as_bytes = spec.replace("\ud800", "\udced\udca0\udc80").replace("\udbff", "\udced\udcaf\udcbf")
    assert check([spec], syntax) == check([as_bytes], syntax)
    assert check([spec], syntax)[0] == 1


def test_a_lone_surrogate_in_json_is_invalid_utf8() -> None:
    assert check([HEAD + '"\ud800"}'])[1].endswith(
        ": JSON parse error, invalid UTF-8 sequence in string\n"
    )
    with pytest.raises(OptionError, match="invalid UTF-8 sequence in string"):
        json_loads('"\ud800"')


def test_a_lone_surrogate_or_nul_through_object_add(tmp_path: Path) -> None:
    tree = qompr.new_tree()
    helper = tree.object_add("pr-manager-helper", "h", path="/p\ud800\0", complete=False)
    assert tree.qom_get("/objects/h", "path") == "/p\udced\udca0\udc80\udcc0\udc80"
    with pytest.raises(ObjectError, match="cannot be written as JSON"):
        to_json(helper)
    assert to_keyval(helper) == "pr-manager-helper,id=h,path=/p\udced\udca0\udc80\udcc0\udc80"
    unknown: dict[str, Any] = {"\udbff": 1}
    with pytest.raises(OptionError, match=r"^Parameter '\udbff' is unexpected$"):
        tree.object_add("pr-manager-helper", "x", path="/p", complete=False, **unknown)
    assert isinstance(helper, PRManagerHelper)
    helper.path = "\ud800"  # a Python assignment goes through the same setter
    assert helper.path == "\udced\udca0\udc80"
    # A state file named with a NUL: the file QEMU's modified UTF-8 names (C0 80), no
    # "embedded null byte" from sqlite.
    tree.object_add("pr-manager-emulated", "e", state=str(tmp_path / "s\0t"))
    assert b"s\xc0\x80t" in os.listdir(os.fsencode(tmp_path))


def test_connecting_to_a_lone_surrogate_path() -> None:
    run = run_command_line(
        qompr.new_tree(), ["pr-manager-helper,id=a,path=/nonexistent/\ud800"], prog="p"
    )
    assert (run.exit_status, run.stderr) == (
        1,
        "p: Failed to connect to '/nonexistent/\udced\udca0\udc80': No such file or directory\n",
    )


# -- the JSON form of a string holding QEMU's NUL -----------------------------------------


def test_to_json_writes_qemus_nul_as_an_escape() -> None:
    tree = qompr.new_tree()
    spec = HEAD + '"/run/a\\u0000b"}'
    (obj,) = tree_objects(tree, [spec])
    assert obj.get_property("path") == "/run/a\udcc0\udc80b"  # C0 80, as QEMU holds it
    assert to_json(obj)["path"] == "/run/a\0b"
    text = to_json_string(obj)
    assert '"/run/a\\u0000b"' in text
    text.encode("utf-8")  # valid UTF-8 (the bytes C0 80 were printed before)
    # ... and QEMU (and qompr) read it back to the same object.
    (again,) = tree_objects(qompr.new_tree(), [text])
    assert again.get_property("path") == obj.get_property("path")


@pytest.mark.parametrize("raw", ["\udcff", "\udced\udca0\udc80", "\udcef\udcbf\udcbe"])
def test_to_json_refuses_bytes_qemus_json_cannot_carry(raw: str) -> None:
    (obj,) = tree_objects(qompr.new_tree(), [f"pr-manager-helper,id=a,path=/{raw}"])
    with pytest.raises(ObjectError, match="^Property 'path' of 'a' cannot be written as JSON"):
        to_json(obj)


def tree_objects(tree: ObjectTree, args: list[str]) -> tuple[Object, ...]:
    run = run_command_line(tree, args, prog="p", complete=False)
    assert run.exit_status == 0, run.stderr
    return run.objects


# -- the three programs that read -object strings ------------------------------------------

HOSTILE = [
    HEAD + "[" * 600 + "]" * 600 + "}",
    HEAD + "1" + "0" * 400 + "}",
    HEAD + "1" + "0" * 5000 + "}",
    "pr-manager-helper,id=a,path=/p," + ".".join(["a"] * 3000) + "=1",
]
ANSWERS = [
    "Invalid parameter type for 'path', expected: string",
    "Invalid parameter type for 'path', expected: string",
    "Invalid parameter type for 'path', expected: string",
    "Parameter 'a' is unexpected",
]
PROGRAMS: dict[str, Callable[[str], int]] = {
    "qompr object check": lambda spec: qompr_main(["object", "check", "--", spec]),
    "qompr object check --syntax=keyval": lambda spec: qompr_main(
        ["object", "check", "--syntax=keyval", "--", spec]
    ),
    "qompr-pr-helper --backend": lambda spec: helper_main(["qompr-pr-helper", "--backend", spec]),
    "qompr persist --object": lambda spec: qompr_main(["persist", "--object", spec, "-k", "/x"]),
}


@pytest.mark.parametrize("program", list(PROGRAMS))
@pytest.mark.parametrize(("spec", "answer"), list(zip(HOSTILE, ANSWERS, strict=True)))
def test_programs_answer_hostile_object_strings(
    program: str, spec: str, answer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if program == "qompr object check" and not spec.startswith("{"):
        answer = "Invalid parameter 'a.a"  # QemuOpts: a dotted key is a plain name
    assert PROGRAMS[program](spec) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert answer in err.splitlines()[-1]


def test_object_check_json_output_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert qompr_main(["object", "check", "--json", "--", HEAD + '"a\\u0000b"}']) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == [{"qom-type": "pr-manager-helper", "id": "a", "path": "a\0b"}]
    not_utf8 = "pr-manager-helper,id=a,path=\udcff"  # the byte FF, as argv holds it
    assert qompr_main(["object", "check", "--json", "--", not_utf8]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("qompr: Property 'path' of 'a' cannot be written as JSON")


@pytest.mark.parametrize("syntax", list(Syntax))
def test_errors_are_qompr_errors(syntax: Syntax) -> None:
    # The exception root: every refusal above is a QomprError, never another type.
    for spec in HOSTILE:
        with pytest.raises(QomprError):
            qompr.options.process(qompr.new_tree(), [spec], syntax, complete=False)
