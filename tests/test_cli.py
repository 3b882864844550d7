# SPDX-License-Identifier: MIT
"""The ``qompr`` command line, run in-process through ``main()``."""

from __future__ import annotations

import importlib
import json
from typing import Any
from typing import NoReturn

import pluggy
import pytest

import qompr
from qompr.cli.main import build_parser
from qompr.cli.main import main

CLI_MAIN = importlib.import_module("qompr.cli.main")  # qompr.cli.main is the function


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_third_party_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QOMPR_LOAD_PLUGINS", "")


def test_object_check_json_in_creation_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "object", "check", "--json", "--",
        "pr-manager-helper,id=b,path=/b",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/a"}',
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {"qom-type": "pr-manager-helper", "id": "b", "path": "/b"},
        {"qom-type": "pr-manager-helper", "id": "a", "path": "/a"},
    ]


def test_object_check_text_output_is_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "object", "check", "--", "pr-manager-helper,id=h,path=/a,,b")
    assert (code, out) == (0, "pr-manager-helper,id=h,path=/a,,b\n")


def test_object_check_failure_reads_like_qemu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "object", "check", "--", "pr-manager-helper,path=/x")
    assert (code, out) == (1, "")
    assert err == "qompr: -object pr-manager-helper,path=/x: Parameter 'id' is missing\n"


def test_object_check_prints_warnings_then_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "object", "check", "--", "pr-manager-helper,id=a,path=/x,foo")
    assert code == 1
    loc = "qompr: -object pr-manager-helper,id=a,path=/x,foo: "
    assert err == (
        f"{loc}warning: short-form boolean option 'foo' deprecated\n"
        "Please use foo=on instead\n"
        f"{loc}Invalid parameter 'foo'\n"
    )


def test_object_check_creation_error_has_no_location(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "object", "check", "--", '{"qom-type":"pr-manager-helper","id":"9","path":"/x"}'
    )
    assert code == 1
    assert err == (
        "qompr: Parameter 'id' expects an identifier\n"
        "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
    )


def test_object_check_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "object", "check", "--", "pr-manager-helper,help")
    assert (code, out) == (0, "pr-manager-helper options:\n  path=<string>\n")
    code, out, _ = run(capsys, "object", "check", "--", "help")
    assert code == 0 and out.startswith("List of user creatable objects:\n  ")


def test_object_check_keyval_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "object", "check", "--syntax=keyval", "--", "pr-manager-helper,id=a,foo"
    )
    assert code == 1
    assert err == "qompr: -object pr-manager-helper,id=a,foo: Expected '=' after parameter 'foo'\n"


def test_object_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "object", "help", "pr-manager-helper")
    assert (code, out) == (0, "pr-manager-helper options:\n  path=<string>\n")
    code, out, _ = run(capsys, "object", "help", "--json", "pr-manager-helper")
    assert json.loads(out) == [
        {"name": "type", "type": "string"},
        {"name": "path", "type": "string"},
    ]
    code, out, _ = run(capsys, "object", "help", "--json")
    assert "pr-manager-helper" in json.loads(out)
    code, _, err = run(capsys, "object", "help", "nope")
    assert (code, err) == (1, "qompr: invalid object type: nope\n")


def test_types(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "types", "--json", "--implements", "pr-manager", "--abstract")
    assert code == 0
    types = json.loads(out)
    assert {"name": "pr-manager", "abstract": True, "parent": "object"} in types
    assert {"name": "pr-manager-helper", "parent": "pr-manager"} in types
    assert all(t["name"].startswith("pr-manager") for t in types)
    code, out, _ = run(capsys, "types")
    assert code == 0
    assert "pr-manager-helper <- pr-manager\n" in out and "(abstract)" not in out


def test_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    (builtin,) = json.loads(out)
    assert builtin["builtin"] and "qompr_register_types" in builtin["hooks"]


def test_demo_runs_a_fencing_round_on_the_emulated_engine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["objects"] == [
        "pr-manager-emulated,id=emu0",
        "pr-manager-helper,id=pr-helper0,path=/run/qemu-pr-helper.sock",
    ]
    got = [(s["node"], s["status"], s["sense"], s["shows"]) for s in report["steps"]]
    assert got == [
        ("node-a", "GOOD", None, "GOOD"),
        ("node-b", "GOOD", None, "GOOD"),
        ("node-a", "GOOD", None, "GOOD"),
        ("node-b", "GOOD", None, "generation 2, keys 0xa, 0xb"),
        ("node-b", "GOOD", None, "generation 2, held by key 0xa, type Write Exclusive"),
        ("node-b", "RESERVATION_CONFLICT", None, "RESERVATION_CONFLICT"),
        ("node-b", "GOOD", None, "GOOD"),
        ("node-b", "GOOD", None, "generation 3, held by key 0xb, type Write Exclusive"),
        ("node-a", "CHECK_CONDITION", "REGISTRATIONS_PREEMPTED",
         "CHECK CONDITION REGISTRATIONS_PREEMPTED"),
        ("node-a", "GOOD", None, "generation 3, keys 0xb"),
    ]  # fmt: skip
    assert report["query-pr-managers"] == [
        {"id": "emu0", "connected": True},
        {"id": "pr-helper0", "connected": False},
    ]


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["object", "check"])
    assert exc.value.code == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"qompr {qompr.__version__}\n"


def test_help_lists_each_builtin_command_as_its_own_parser_describes_it() -> None:
    # qompr --help lists the commands from a table without importing them: the same text.
    assert build_parser(full=[]).format_help() == build_parser().format_help()


def test_help_and_sg3_commands_need_no_plugins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_plugins() -> NoReturn:
        raise AssertionError("plugins loaded")

    monkeypatch.setattr(CLI_MAIN, "get_plugin_manager", no_plugins)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "persist" in capsys.readouterr().out
    code, _, err = run(capsys, "persist", "-n", "-k", "/dev/null")
    assert code == 75  # ENOTTY: SG_IO on /dev/null, as sg_persist
    assert err.endswith("qompr persist failed: Inappropriate ioctl for device\n")


def test_a_command_that_is_not_built_in_is_looked_up_in_the_plugins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Hello:
        @qompr.hookimpl
        def qompr_register_commands(self, subparsers: Any) -> None:
            hello = subparsers.add_parser("hello", help="say hello")
            hello.set_defaults(func=lambda args: print("hello") or 3)

    def with_hello() -> pluggy.PluginManager:
        pm = qompr.get_plugin_manager(load_entrypoints=False)
        pm.register(Hello())
        return pm

    monkeypatch.setattr(CLI_MAIN, "get_plugin_manager", with_hello)
    assert run(capsys, "hello") == (3, "hello\n", "")
