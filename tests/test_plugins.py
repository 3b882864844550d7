# SPDX-License-Identifier: MIT
"""The plugin manager, allowlists, tracing, and a real third-party plugin installed by pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr import get_plugin_manager
from qompr.errors import PluginError
from qompr.plugins import describe_plugins
from qompr.qom import Object
from qompr.testing import wait_for_socket

ROOT = Path(__file__).resolve().parent.parent
FORWARD = ROOT / "plugins" / "qompr-forward"


def test_default_plugins_only_without_entrypoints() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    names = [entry["name"] for entry in describe_plugins(pm)]
    assert names == ["qompr.managers._plugin"]
    tree = qompr.new_tree(pm)
    assert "pr-manager-helper" in tree.types.creatable_types()


def test_allowlist_naming_a_missing_plugin_fails() -> None:
    with pytest.raises(PluginError, match="not installed in entry-point group 'qompr': nope"):
        get_plugin_manager(allow=["nope"])


def test_tracing_writes_hook_calls(capsys: pytest.CaptureFixture[str]) -> None:
    pm = get_plugin_manager(load_entrypoints=False, trace=True)
    qompr.new_tree(pm)
    assert "qompr_register_types" in capsys.readouterr().err


def test_a_plugin_registering_a_taken_name_fails() -> None:
    class Clash(Object, qom_type="pr-manager-helper"):
        pass

    class ClashPlugin:
        @qompr.hookimpl
        def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
            register(Clash)

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ClashPlugin())
    with pytest.raises(PluginError, match="'pr-manager-helper' is already registered"):
        qompr.new_tree(pm)


@pytest.fixture(scope="module")
def forward_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example plugin package into its own directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(FORWARD)],
        check=True,
    )  # fmt: skip
    return target


def _run(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "QOMPR_LOAD_PLUGINS"}
    full_env.update({"PYTHONPATH": str(site), **(env or {})})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=full_env, check=False
    )


def test_installed_plugin_is_listed(forward_site: Path) -> None:
    proc = _run(forward_site, "-m", "qompr", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    by_name = {p["name"]: p for p in json.loads(proc.stdout)}
    assert by_name["forward"]["distribution"] == "qompr-forward"
    assert by_name["forward"]["hooks"] == ["qompr_register_types"]


def test_installed_plugin_type_via_object_string(forward_site: Path) -> None:
    proc = _run(
        forward_site, "-m", "qompr", "object", "check", "--json", "--",
        "pr-manager-helper,id=h0,path=/run/x.sock",
        "pr-manager-forward,id=f0,target=h0,log=/tmp/fwd.log",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"qom-type": "pr-manager-helper", "id": "h0", "path": "/run/x.sock"},
        {"qom-type": "pr-manager-forward", "id": "f0", "target": "/objects/h0",
         "log": "/tmp/fwd.log"},
    ]  # fmt: skip
    proc = _run(forward_site, "-m", "qompr", "object", "check", "--",
                "pr-manager-forward,id=f0,log=/x")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == (
        "qompr: -object pr-manager-forward,id=f0,log=/x: Parameter 'target' is missing\n"
    )


def test_allowlist_keeps_plugin_out(forward_site: Path) -> None:
    proc = _run(forward_site, "-m", "qompr", "object", "check", "--",
                "pr-manager-forward,id=f0,target=x", env={"QOMPR_LOAD_PLUGINS": ""})  # fmt: skip
    assert proc.returncode == 1
    assert "Parameter 'qom-type' does not accept value 'pr-manager-forward'" in proc.stderr
    proc = _run(forward_site, "-m", "qompr", "plugins", "--json",
                env={"QOMPR_LOAD_PLUGINS": "qompr-forward"})  # fmt: skip
    assert [p["name"] for p in json.loads(proc.stdout)][-1] == "forward"


def test_installed_plugin_forwards_commands(forward_site: Path, tmp_path: Path) -> None:
    script = tmp_path / "drive.py"
    log = tmp_path / "fwd.log"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, qompr
            from qompr.managers import PRManager
            from qompr.options import process
            from qompr.scsi import ScsiResult, ScsiStatus

            class Echo(PRManager, qom_type="test-echo"):
                def run(self, fd, cdb, data=b"", *, nexus=None):
                    return ScsiResult(ScsiStatus.GOOD, b"", bytes(cdb[:2]))

            tree = qompr.new_tree()
            tree.types.register(Echo)
            process(tree, ["test-echo,id=e0",
                           "pr-manager-forward,id=f0,target=e0,log={log}"])
            fwd = tree.find_object("f0")
            fd = os.open("/dev/null", os.O_RDONLY)
            res = fwd.execute(fd, bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]))
            assert res.data == bytes([0x5E, 0]), res
            try:
                tree.object_del("e0")
            except qompr.QomprError as exc:
                print("refused:", exc)
            print("commands:", fwd.commands)
            """
        )
    )
    proc = _run(forward_site, str(script))
    assert proc.returncode == 0, proc.stderr
    assert "refused: object 'e0' is in use, can not be deleted" in proc.stdout
    assert "commands: 1" in proc.stdout
    assert log.read_text() == "f0 cdb=5e000000000000000800 status=0x00\n"


def test_daemon_loads_only_plugins_named_on_its_command_line(forward_site: Path) -> None:
    daemon = ["-m", "qompr.daemon.main", "--keep-privileges", "-k", "/nonexistent/dir/x.sock"]
    backends = ["--backend", "pr-manager-emulated,id=e0",
                "--backend", "pr-manager-forward,id=f0,target=e0"]  # fmt: skip
    # Installed, and even allowed by the environment: a root daemon still does not load it.
    proc = _run(forward_site, *daemon, *backends, env={"QOMPR_LOAD_PLUGINS": "forward"})
    assert proc.returncode == 1
    assert "Parameter 'qom-type' does not accept value 'pr-manager-forward'" in proc.stderr
    # Named with --plugin, the type exists; the run then fails only at the socket.
    proc = _run(forward_site, *daemon, "--plugin", "forward", *backends)
    assert proc.returncode == 1
    assert "does not accept value" not in proc.stderr
    assert "Failed to bind socket to /nonexistent/dir/x.sock" in proc.stderr


def test_two_clients_through_the_forward_plugin_are_two_initiators(
    forward_site: Path, tmp_path: Path
) -> None:
    # pr-manager-forward is a DelegatingPRManager: the daemon asks it how a client is named,
    # and it answers what pr-manager-emulated answers (one initiator per client process),
    # instead of making every client the daemon's own process.
    sock = str(tmp_path / "h.sock")
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4096))
    env = {k: v for k, v in os.environ.items() if k != "QOMPR_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(forward_site)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "qompr.daemon.main", "-k", sock, "--plugin", "forward",
         "--backend", "pr-manager-emulated,id=e",
         "--backend", "pr-manager-forward,id=f,target=e"]
        + (["--keep-privileges"] if os.geteuid() != 0 else []),
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_socket(sock, proc=daemon)
        persist = [sys.executable, "-m", "qompr", "persist", "--helper", sock, "-n"]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*persist, *args, str(disk)], capture_output=True, text=True, env=env, check=False
            )

        for key in ("0xa", "0xb"):  # two processes: two clients
            assert run("-o", "-G", f"-S{key}").returncode == 0
        keys = run("-i", "-k")
        assert keys.returncode == 0, keys.stderr
        assert "2 registered reservation keys follow:\n    0xa\n    0xb\n" in keys.stdout
        # A third process is a third, unregistered initiator: LIO answers its RESERVE with
        # NOT READY (sg_persist's exit status 2), not as the registrant of 0xa.
        reserve = run("-o", "-R", "-K0xa", "-T5")
        assert (reserve.returncode, reserve.stderr) == (
            2,
            "PR out (Reserve): Device not ready\nqompr persist failed: Device not ready\n",
        )
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
