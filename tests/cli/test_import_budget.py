# SPDX-License-Identifier: MIT
"""Start-up budget of the ``qompr`` command, counted in modules, not in time.

Each command runs in a fresh interpreter, as a user starts it; the test then looks at which
modules it imported.  A command must not load what its path does not use: the event loop
(asyncio, and the ssl it pulls in), the plugin machinery (pluggy, the entry points of
``importlib.metadata``), argparse for the sg3_utils-style commands that parse their own
options, the other commands, or manager packages it does not run.  On a device (SG_IO, no
manager) ``qompr persist`` and ``qompr turs`` load no manager at all, nor the object model,
``-object`` parsing, logging or sockets; a PR IN without ``--json`` no PR OUT or ``--json``
code and not qompr.scsi (no codec, hence no attrs, nor its enums).  With ``--object
pr-manager-emulated`` in memory: no SQLite store (sqlite3), no socket, json, JSON or QemuOpts
parser, no CDB, PR IN data or PR OUT parameter list class for a READ KEYS, and no logging
while nothing goes wrong.  With ``--helper``: no nexus unless one is named, and no logging
while nothing goes wrong (a warning loads it; a program that configured logging sees the
info lines).  (The time itself is bench/startup.py's business.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_RUN = """
import os, sys
from qompr.cli.main import main
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)
os.dup2(null, 2)
try:
    main(sys.argv[1:])
except SystemExit:
    pass
modules = sorted(sys.modules)
import json  # after the run: json is in the budget
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump(modules, out)
"""

#: What no start-up path below may import.
EVERYWHERE = {
    "asyncio",
    "ssl",
    "pluggy",
    "importlib.metadata",
    "qompr.plugins",
    "qompr.hookspecs",
    "qompr.daemon",
    "qompr.embed",
    "qompr.cli.demo",
    "qompr.cli.doctor",
    "qompr.cli.supervise",
    "qompr.cli.emulated",
    "qompr.cli.validate",
    "concurrent.futures",
}
#: What an sg3_utils-style command (its own getopt) may not import.
SG3 = EVERYWHERE | {"argparse"}
#: What the device path (SG_IO, no manager) may not import either: the managers and what they
#: stand on, the -object parser, the credentials of a socket peer.
DEVICE = SG3 | {
    "qompr.managers",
    "qompr.qom",
    "qompr.options",
    "qompr.linux._peer",
    "logging",
    "socket",
    "selectors",
}
#: What a PR IN on a device without --json may not import: the PR OUT parameter lists, the
#: --json report, and qompr.scsi (its codecs, hence attrs, and its enums: its CDB is written
#: out, its data printed as sg_persist prints it, service actions compared as numbers as
#: sg_persist does; sense is decoded only when a command has some).
PR_IN = {
    "qompr.scsi",
    "qompr.cli.persist.prout",
    "qompr.cli.persist.report",
    "qompr.scsi._cdb",
    "qompr.scsi._sense",
    "qompr.scsi._params",
    "qompr.scsi._prin",
    "qompr.scsi._transport_id",
    "qompr.scsi._nexus",
    "attrs",
}
#: What TEST UNIT READY on a device does not use either: no codec of qompr.scsi (its CDB is six
#: zero bytes, its sense decoded only when the device is not ready), hence no attrs.
TUR_DEVICE = {"qompr.scsi", "attrs"}
#: What ``--object pr-manager-emulated`` without a state file (its store in memory) does not
#: use: the SQLite store and sqlite3 (with datetime under it), the peer credentials of a helper
#: client (and socket), the json module (a keyval spec is read by qompr.options' own parser).
IN_MEMORY = {
    "qompr.managers.emulated._sqlite",
    "sqlite3",
    "datetime",
    "qompr.linux._peer",
    "socket",
    "json",
}
#: What READ KEYS through pr-manager-emulated does not use either: the engine reads a plain CDB
#: itself and packs the keys; the CDB classes, the other PR IN answers' classes and the PR OUT
#: parameter lists load with the commands that need them.
EMULATED_READ_KEYS = {"qompr.scsi._cdb", "qompr.scsi._prin", "qompr.scsi._params"}
#: What reading a keyval ``--object`` spec does not use: the JSON and QemuOpts parsers.
KEYVAL_SPEC = {"qompr.options._json", "qompr.options._qemuopts"}
#: What ``--helper`` without ``--initiator``/``--target-port`` does not use: the I_T nexus
#: (the helper's backend names the client) with its TransportID codec, a wrapping manager's
#: base.
HELPER = {"qompr.scsi._nexus", "qompr.scsi._transport_id", "qompr.managers._delegating"}
#: What a --helper run that succeeds does not use either: logging (nothing configured it, so
#: the manager's and the object model's info and debug lines could not be shown; a warning
#: loads it and reaches stderr as before).
HELPER_OK = {"logging"}
#: What a manager in process whose commands succeed does not use: logging (its warnings load
#: it, and reach stderr as before).
QUIET_MANAGER = {"logging"}
#: The manager packages: each path may import the ones it runs, and no other.
MANAGERS = {
    "qompr.managers._direct",
    "qompr.managers._helper",
    "qompr.managers._helper_aio",
    "qompr.managers.emulated",
    "qompr.managers.multipath",
}


def imported(tmp_path: Path, *argv: str) -> set[str]:
    """The modules ``qompr ARGV`` had imported when it finished."""
    out = tmp_path / "modules.json"
    env = dict(os.environ, MODULES_OUT=str(out), QOMPR_LOAD_PLUGINS="")
    subprocess.run(
        [sys.executable, "-c", _RUN, *argv], env=env, check=True, timeout=60, cwd=tmp_path
    )
    modules = json.loads(out.read_text())
    assert "qompr.cli.main" in modules
    return set(modules)


@pytest.fixture
def disk(tmp_path: Path) -> str:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    return str(path)


def test_help_imports_no_manager_object_model_or_codec(tmp_path: Path) -> None:
    for argv in (["--help"], ["--version"]):
        modules = imported(tmp_path, *argv)
        assert not modules & EVERYWHERE, argv
        assert {m for m in modules if m.startswith("qompr")} == {
            "qompr",
            "qompr.errors",
            "qompr.cli",
            "qompr.cli.main",
        }, argv
        assert "attrs" not in modules


@pytest.mark.parametrize(
    ("path", "managers"),
    [
        ("device", set()),
        ("object", {"qompr.managers.emulated"}),
        ("helper", {"qompr.managers._helper"}),
    ],
)
def test_persist_imports_only_its_path(
    tmp_path: Path, disk: str, path: str, managers: set[str]
) -> None:
    backend = {
        "device": ["-n", "-k", "/dev/null"],
        "object": ["--object", "pr-manager-emulated,id=e", "-k", disk],
        "helper": ["--helper", str(tmp_path / "none.sock"), "-k", disk],
    }[path]
    modules = imported(tmp_path, "persist", *backend)
    assert "qompr.cli.persist.session" in modules  # it ran
    assert "qompr.cli.turs" not in modules
    assert not modules & SG3
    assert modules & MANAGERS == managers
    if path == "device":
        assert not modules & DEVICE
        assert not modules & PR_IN
    if path == "object":
        assert not modules & IN_MEMORY
        assert not modules & EMULATED_READ_KEYS
        assert not modules & KEYVAL_SPEC
        assert not modules & QUIET_MANAGER
    if path == "helper":
        assert not modules & HELPER


@pytest.mark.parametrize(
    ("path", "managers"),
    [("device", set()), ("object", {"qompr.managers.emulated"})],
)
def test_turs_imports_only_its_path(
    tmp_path: Path, disk: str, path: str, managers: set[str]
) -> None:
    backend = {
        "device": ["-n", "2", "-t", "/dev/null"],
        "object": ["--object", "pr-manager-emulated,id=e", disk],
    }[path]
    modules = imported(tmp_path, "turs", *backend)
    assert "qompr.cli.turs.session" in modules  # it ran
    assert not modules & SG3
    assert modules & MANAGERS == managers
    assert "qompr.cli.persist" not in modules
    if path == "device":
        assert not modules & DEVICE
        assert not modules & PR_IN
        assert not modules & TUR_DEVICE
    else:  # the positive control of TUR_DEVICE
        assert modules >= TUR_DEVICE
        assert not modules & IN_MEMORY
        assert not modules & QUIET_MANAGER


def test_persist_json_and_verbose_stay_in_budget(tmp_path: Path, disk: str) -> None:
    spec = "pr-manager-emulated,id=e"
    modules = imported(tmp_path, "persist", "--json", "-vvv", "--object", spec, "-k", disk)
    assert not modules & SG3
    assert modules & MANAGERS == {"qompr.managers.emulated"}


def test_a_state_file_loads_the_sqlite_store(tmp_path: Path, disk: str) -> None:
    # The positive control of IN_MEMORY: the SQLite store is what a state file needs.
    spec = f"pr-manager-emulated,id=e,state={tmp_path / 'pr.db'}"
    modules = imported(tmp_path, "persist", "--object", spec, "-k", disk)
    assert "qompr.cli.persist.session" in modules  # it ran
    assert {"qompr.managers.emulated._sqlite", "sqlite3"} <= modules
    assert (tmp_path / "pr.db").exists()


def test_a_json_spec_loads_the_json_parser(tmp_path: Path, disk: str) -> None:
    # The positive control of KEYVAL_SPEC.
    spec = '{"qom-type": "pr-manager-emulated", "id": "e"}'
    modules = imported(tmp_path, "persist", "--object", spec, "-k", disk)
    assert "qompr.cli.persist.session" in modules  # it ran
    assert "qompr.options._json" in modules
    assert modules & MANAGERS == {"qompr.managers.emulated"}


def test_report_capabilities_loads_the_pr_in_data_classes(tmp_path: Path, disk: str) -> None:
    # The positive control of EMULATED_READ_KEYS: the engine's REPORT CAPABILITIES answer is
    # built by the PR IN data codec.
    modules = imported(tmp_path, "persist", "--object", "pr-manager-emulated,id=e", "-c", disk)
    assert "qompr.cli.persist.session" in modules  # it ran
    assert "qompr.scsi._prin" in modules


def test_a_type_that_is_not_built_in_loads_the_plugins(tmp_path: Path, disk: str) -> None:
    # The positive control: what the budget excludes is seen when a path does need it.
    modules = imported(tmp_path, "persist", "--object", "help", "-k", disk)
    assert {"pluggy", "qompr.plugins"} <= modules
    modules = imported(tmp_path, "plugins")
    assert {"pluggy", "importlib.metadata", "argparse"} <= modules


def test_persist_through_a_helper_reads_no_object_string(
    tmp_path: Path, disk: str, helper_socket: str
) -> None:
    # A helper that answers (helper_socket, tests/cli/conftest.py): the -object parser is
    # loaded only to word an error.
    modules = imported(tmp_path, "persist", "--helper", helper_socket, "-k", disk)
    assert "qompr.cli.persist.session" in modules  # it ran
    assert not modules & SG3
    assert modules & MANAGERS == {"qompr.managers._helper"}
    assert "qompr.options" not in modules
    assert not modules & {"qompr.cli.persist.prout", "qompr.cli.persist.report"}
    assert not modules & HELPER
    assert not modules & HELPER_OK
    # The positive control: a named initiator is a nexus.
    argv = ["--helper", helper_socket, "--initiator", "iqn.2026-12.test:a", "-k", disk]
    modules = imported(tmp_path, "persist", *argv)
    assert {"qompr.scsi._nexus", "qompr.scsi._transport_id"} <= modules


def test_what_the_device_path_leaves_out_is_loaded_where_it_is_used(
    tmp_path: Path, disk: str
) -> None:
    # The positive controls of DEVICE and PR_IN: the names are those the other paths load.
    modules = imported(tmp_path, "persist", "--object", "pr-manager-emulated,id=e", "-k", disk)
    assert {"qompr.managers", "qompr.qom", "qompr.options"} <= modules
    # logging: with the manager's first warning (lu-id=wwn on a file that is no SCSI LUN).
    spec = "pr-manager-emulated,id=e,lu-id=wwn"
    assert "logging" in imported(tmp_path, "persist", "--object", spec, "-k", disk)
    modules = imported(tmp_path, "persist", "--json", "-n", "-k", "/dev/null")
    assert "qompr.cli.persist.report" in modules
    assert not modules & DEVICE
    modules = imported(tmp_path, "persist", "-n", "-o", "-G", "-S", "1", "/dev/null")
    assert {"qompr.cli.persist.prout", "qompr.scsi._params", "qompr.scsi._cdb", "attrs"} <= modules
    assert not modules & DEVICE


@pytest.mark.parametrize("command", ["persist", "turs"])
def test_the_runs_of_fence_scsi_stay_in_budget(
    tmp_path: Path, disk: str, helper_socket: str, command: str
) -> None:
    # contrib/fence_scsi: --helper SOCKET --initiator NODE, about ten runs per device.
    argv = [command, "--helper", helper_socket, "--initiator", "node1"]
    modules = imported(tmp_path, *argv, *(["-k", disk] if command == "persist" else [disk]))
    assert f"qompr.cli.{command}.session" in modules  # it ran
    assert not modules & SG3
    assert modules & MANAGERS == {"qompr.managers._helper"}
    assert "qompr.options" not in modules  # no error was worded: the helper named the client
    assert not modules & HELPER_OK
    assert not modules & {"qompr.cli.persist.prout", "qompr.cli.persist.report"}
    assert not modules & {"qompr.scsi._cdb", "qompr.scsi._prin", "qompr.scsi._params"}


def test_a_configured_logger_still_sees_the_helper_connect(
    tmp_path: Path, disk: str, helper_socket: str
) -> None:
    # The positive control of HELPER_OK: a program that configured logging gets the info line.
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')\n"
        "from qompr.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["persist", "--helper", helper_socket, "-k", disk]
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="")
    run = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"qompr.manager.helper0: connected to helper at {helper_socket}" in run.stderr


def test_a_manager_warning_still_reaches_stderr(tmp_path: Path, disk: str) -> None:
    # logging loads with the warning; nothing configured it, so its last-resort handler
    # prints the message alone on stderr, as before.
    spec = "pr-manager-emulated,id=e,lu-id=wwn"
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="")
    run = subprocess.run(
        [sys.executable, "-m", "qompr", "persist", "--object", spec, "-k", disk],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.stderr.startswith("e: cannot identify the logical unit of fd "), run.stderr
