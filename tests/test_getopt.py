# SPDX-License-Identifier: MIT
"""qompr._getopt: glibc's ``getopt_long``, shared by qompr-pr-helper and qompr persist / turs.

The unit tests pin the rules and texts; the interop tests run glibc's own ``getopt_long``
(tests/getopt_glibc.c, compiled here) on the same command lines, with sg_persist's and
qemu-pr-helper's option tables and thousands of generated command lines, and require the same
options, values, operands and error message.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import pytest

from qompr._getopt import GetoptError
from qompr._getopt import LongOption
from qompr._getopt import getopt_long
from qompr.cli.persist.options import SG_PERSIST_LONG_OPTIONS
from qompr.cli.persist.options import SG_PERSIST_SHORT_OPTIONS

SHORT = "ab:c"
LONG = (
    LongOption("alpha", False, "-a"),
    LongOption("beta", True, "-b"),
    LongOption("be-quiet", False),
    LongOption("be_quiet", False),  # a different option: its own "--be_quiet"
    LongOption("gamma", False, "-c"),
    LongOption("gamma-ray", False, "-c"),  # the same option as gamma under a second name
)


def parse(
    args: Sequence[str],
    short: str = SHORT,
    long: Mapping[str, bool] | Sequence[LongOption] = LONG,
    extension: Sequence[LongOption] = (),
) -> tuple[list[tuple[str, str]], list[str]]:
    operands: list[str] = []
    options = list(getopt_long(args, short, long, operands, extension=extension))
    return options, operands


def error(args: Sequence[str]) -> str:
    with pytest.raises(GetoptError) as info:
        parse(args)
    return str(info.value)


@pytest.fixture(autouse=True)
def _gnu_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSIXLY_CORRECT", raising=False)


def test_short_options_cluster_and_take_arguments_both_ways() -> None:
    assert parse(["-ac", "-bX", "-b", "Y", "-abZ"]) == (
        [("-a", ""), ("-c", ""), ("-b", "X"), ("-b", "Y"), ("-a", ""), ("-b", "Z")],
        [],
    )


def test_long_options_yield_their_value_or_their_name() -> None:
    assert parse(["--alpha", "--beta=1", "--beta", "2", "--be-quiet"]) == (
        [("-a", ""), ("-b", "1"), ("-b", "2"), ("--be-quiet", "")],
        [],
    )


def test_operands_are_permuted_after_the_options() -> None:
    assert parse(["x", "-a", "-", "y", "--", "-c", "--alpha"]) == (
        [("-a", "")],
        ["x", "-", "y", "-c", "--alpha"],
    )


@pytest.mark.parametrize("order", ["posix", "plus"])
def test_posix_order_stops_at_the_first_operand(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    short = SHORT
    if order == "posix":
        monkeypatch.setenv("POSIXLY_CORRECT", "1")
    else:
        short = "+" + SHORT
    assert parse(["-a", "x", "-c"], short) == ([("-a", "")], ["x", "-c"])


def test_abbreviations() -> None:
    assert parse(["--al", "--bet=3", "--gamma"]) == ([("-a", ""), ("-b", "3"), ("-c", "")], [])
    # Two names of one option (same argument rule, same value) are not ambiguous.
    assert parse(["--gam"]) == ([("-c", "")], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "invalid option -- 'x'"),
        (["-a:"], "invalid option -- ':'"),
        (["-b"], "option requires an argument -- 'b'"),
        (["--delta=1"], "unrecognized option '--delta=1'"),
        (["--beta"], "option '--beta' requires an argument"),
        (["--al=1"], "option '--alpha' doesn't allow an argument"),
        # glibc names the argument as given (with its value) and lists the first match and
        # every later one that is another option than the first.
        (
            ["--be=1"],
            "option '--be=1' is ambiguous; possibilities: '--beta' '--be-quiet' '--be_quiet'",
        ),
    ],
)  # fmt: skip
def test_errors_are_worded_as_glibc(args: list[str], message: str) -> None:
    assert error(args) == message


def test_a_prefix_of_one_option_only_is_that_option() -> None:
    assert parse(["--be-"]) == ([("--be-quiet", "")], [])


def test_with_report_bad_options_come_out_as_question_marks_and_parsing_goes_on() -> None:
    told: list[str] = []
    operands: list[str] = []
    options = list(
        getopt_long(["-xa", "--delta", "x", "-b"], SHORT, LONG, operands, report=told.append)
    )
    assert options == [("?", ""), ("-a", ""), ("?", ""), ("?", "")]
    assert told == [
        "invalid option -- 'x'",
        "unrecognized option '--delta'",
        "option requires an argument -- 'b'",
    ]
    assert operands == ["x"]


def test_options_come_out_before_a_later_error() -> None:
    seen = []
    with pytest.raises(GetoptError):
        for option in getopt_long(["-a", "-x", "-c"], SHORT, LONG):
            seen.append(option)
    assert seen == [("-a", "")]


def test_a_mapping_table_names_each_option_by_itself() -> None:
    table = {"version": False, "verbose": False, "socket": True}
    assert parse(["--vers", "--so=/s"], "", table) == ([("--version", ""), ("--socket", "/s")], [])
    with pytest.raises(GetoptError, match="possibilities: '--version' '--verbose'$"):
        parse(["--ver"], "", table)


def test_extension_options_never_change_what_an_abbreviation_means() -> None:
    extension = (LongOption("object", True), LongOption("other", False))
    # "--o" abbreviates nothing of the table, so the extension's ambiguity is reported...
    with pytest.raises(GetoptError, match="possibilities: '--object' '--other'$"):
        parse(["--o"], extension=extension)
    # ...but where the table has a match, the extension is not looked at.
    assert parse(["--a", "--obj=x"], extension=extension) == (
        [("-a", ""), ("--object", "x")],
        [],
    )
    assert parse(["--al"], extension=(LongOption("alpine"),)) == ([("-a", "")], [])


# -- against glibc ------------------------------------------------------------------------------

CC = shutil.which("cc") or shutil.which("gcc")

# qemu-pr-helper 7.2's options, then qompr-pr-helper's additions.
QEMU_PR_HELPER = (
    "hVk:f:dT:u:g:vq",
    tuple(
        LongOption(name, has_arg)
        for name, has_arg in {
            "help": False,
            "version": False,
            "socket": True,
            "pidfile": True,
            "daemon": False,
            "trace": True,
            "user": True,
            "group": True,
            "verbose": False,
            "quiet": False,
            "backend": True,
            "allow-uid": True,
            "plugin": True,
            "keep-privileges": False,
            "processes": True,
        }.items()
    ),
)
TABLES = {
    "sg_persist": (SG_PERSIST_SHORT_OPTIONS, SG_PERSIST_LONG_OPTIONS),
    "qemu-pr-helper": QEMU_PR_HELPER,
    "synthetic": (SHORT, LONG),
}


@pytest.fixture(scope="module")
def glibc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CC is None:
        pytest.skip("LOUD SKIP: no C compiler: qompr._getopt not compared with glibc")
    where = tmp_path_factory.mktemp("getopt")
    binary = where / "getopt_glibc"
    source = Path(__file__).with_name("getopt_glibc.c")
    subprocess.run([CC, "-O1", "-o", str(binary), str(source)], check=True)
    return binary


def _glibc_run(
    binary: Path,
    short: str,
    table: Sequence[LongOption],
    cases: list[list[str]],
    env: dict[str, str],
    *,
    go_on: bool = False,
) -> list[str]:
    spec = ";".join(f"{o.name},{int(o.has_arg)},{o.val.removeprefix('-')}" for o in table)
    lines = "".join("\x1f".join([str(len(case)), *case]) + "\n" for case in cases)
    argv = [str(binary), short, spec, *(["continue"] if go_on else [])]
    proc = subprocess.run(argv, input=lines, capture_output=True, text=True, env=env, check=True)
    return [block + "end\n" for block in proc.stdout.split("end\x1e\n")[:-1]]


def _ours(short: str, table: Sequence[LongOption], case: list[str], *, go_on: bool = False) -> str:
    lines: list[str] = []
    operands: list[str] = []

    def report(message: str) -> None:
        lines.append(f"prog: {message}\n")

    try:
        for option, value in getopt_long(
            case, short, table, operands, report=report if go_on else None
        ):
            lines.append("error\n" if option == "?" else f"opt {option} {value}\n")
    except GetoptError as exc:
        return "".join(lines) + f"prog: {exc}\nerror\nend\n"
    return "".join(lines) + "operands" + "".join(f" [{arg}]" for arg in operands) + "\nend\n"


def _generated(short: str, table: Sequence[LongOption], count: int, seed: int) -> list[list[str]]:
    """Command lines made of option names, their prefixes, clusters and operands."""
    rng = random.Random(seed)
    letters = [c for c in short if c not in ":+"] + ["x", ":", "W"]
    names = [opt.name for opt in table] + ["bogus"]

    def token() -> str:
        kind = rng.random()
        if kind < 0.45:
            name = rng.choice(names)
            cut = name[: rng.randint(0, len(name))] if rng.random() < 0.6 else name
            return "--" + cut + rng.choice(["", "", "=", "=v", "=a=b"])
        if kind < 0.8:
            return "-" + "".join(rng.choice(letters) for _ in range(rng.randint(1, 3)))
        return rng.choice(["x", "y", "-", "--", "", "a b", "-1"])

    return [[token() for _ in range(rng.randint(0, 6))] for _ in range(count)]


EDGE_CASES = [
    [],
    ["--"],
    ["--", "-a"],
    ["-"],
    ["--="],
    ["--=x"],
    ["-", "--"],
    ["x", "--alpha", "y"],
    ["--read-"],
    ["--read-=1"],
    ["--o", "--reg", "--param-s=3"],
    ["-noGS1"],
    ["--ver=1"],
    ["--vers"],
    ["--p", "x"],
    ["-k/path", "-vvd"],
    ["--sock=/s", "x"],
    ["-d", "--"],
    ["--param_rk"],
    ["--clear=3"],
]


@pytest.mark.interop
@pytest.mark.parametrize("go_on", [False, True], ids=["stop", "go-on"])
@pytest.mark.parametrize("posix", [False, True], ids=["gnu-order", "POSIXLY_CORRECT"])
@pytest.mark.parametrize("name", ["sg_persist", "qemu-pr-helper", "synthetic"])
def test_same_as_glibc(
    glibc: Path, monkeypatch: pytest.MonkeyPatch, name: str, posix: bool, go_on: bool
) -> None:
    short, table = TABLES[name]
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"}
    if posix:
        env["POSIXLY_CORRECT"] = "1"
        monkeypatch.setenv("POSIXLY_CORRECT", "1")
    cases = EDGE_CASES + _generated(short, table, 1500, seed=len(name) + posix)
    expected = _glibc_run(glibc, short, table, cases, env, go_on=go_on)
    assert len(expected) == len(cases)
    for case, theirs in zip(cases, expected, strict=True):
        assert _ours(short, table, case, go_on=go_on) == theirs, case
