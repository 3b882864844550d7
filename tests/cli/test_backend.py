# SPDX-License-Identifier: MIT
"""qompr.cli.backend: the manager (or the device) behind ``qompr persist`` / ``qompr turs``,
and what it loads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pluggy
import pytest

import qompr
from qompr.cli.backend import BUILTIN_TYPES
from qompr.cli.backend import Backend
from qompr.cli.backend import BackendFailed
from qompr.cli.backend import BackendOptions
from qompr.cli.backend import DeviceBackend
from qompr.cli.backend import open_backend
from qompr.cli.sglib.passthrough import process_resp
from qompr.linux import sgio
from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.managers import PRManager
from qompr.options import HelpText
from qompr.plugins import build_registry
from qompr.qom import USER_CREATABLE
from qompr.qom import Object
from qompr.scsi import HostStatus
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb


def test_builtin_types_are_those_the_builtin_plugin_registers() -> None:
    registry = build_registry(qompr.get_plugin_manager(load_entrypoints=False))
    registered = {
        info.name: info.cls
        for info in registry
        if issubclass(info.cls, PRManager) and not info.abstract
    }
    assert {name: load() for name, load in BUILTIN_TYPES.items()} == registered


class Plugins:
    """A plugin source that counts how often plugins were needed."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> pluggy.PluginManager:
        self.calls += 1
        return qompr.get_plugin_manager(load_entrypoints=False)


def opened(options: BackendOptions, plugins: Plugins) -> Backend:
    backend = open_backend(options, prog="test", plugins=plugins)
    assert isinstance(backend, Backend)
    return backend


def test_the_device_path_is_sg_io_without_a_manager_or_plugins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = Plugins()
    backend = open_backend(BackendOptions(), prog="test", plugins=plugins)
    assert isinstance(backend, DeviceBackend)
    assert backend.shown_nexus is None  # the device knows its own
    assert plugins.calls == 0
    keys = bytes.fromhex("00000007 00000008 00000000000000a1")
    calls: list[dict[str, Any]] = []

    def answers(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        # in a worker thread, as pr-manager-direct's pass-through issues it
        assert threading.current_thread() is not threading.main_thread()
        calls.append(dict(kwargs, direction=direction))
        return SgIoOutcome(0, resid=4, data=keys[:12])  # the device sent 12 of 16 bytes

    monkeypatch.setattr(sgio, "sg_io", answers)
    cdb = PrInCdb(PrInAction.READ_KEYS, 16).to_bytes()
    response = backend.command(0, cdb, b"", 16)
    assert response.data == keys[:12] and response.status == 0 and response.os_error == 0
    assert calls == [
        {
            "direction": Direction.FROM_DEV,
            "data_out": b"",
            "data_in_size": 16,
            "cmd_len": 10,
            "timeout_ms": 60_000,  # sg3_utils' pass-through timeout
        }
    ]
    backend.close()


def test_the_device_path_waits_no_longer_than_the_timeout_and_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An SG_IO the kernel never ends (LIO wedged, tests/vm/test_direct.py): DID_TIME_OUT,
    # which sg3_utils' verdict takes for a transport error.
    release = threading.Event()

    def stuck(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        release.wait(10)
        return SgIoOutcome(0)

    monkeypatch.setattr(sgio, "sg_io", stuck)
    monkeypatch.setattr(sgio, "GRACE_MS", 0)
    backend = open_backend(BackendOptions(), prog="test")
    assert isinstance(backend, DeviceBackend)
    backend.timeout_ms = 50
    try:
        start = time.monotonic()
        response = backend.test_unit_ready(0)
        assert 0.04 < time.monotonic() - start < 5.0
    finally:
        release.set()
    assert response.host_status == HostStatus.TIME_OUT
    assert process_resp(response, "test unit ready", 0, 0, noisy=False).ret == 35


@pytest.mark.parametrize(
    "spec",
    [
        "pr-manager-emulated,id=e",
        '{"qom-type": "pr-manager-emulated", "id": "e"}',
    ],
)
def test_builtin_object_types_need_no_plugins(spec: str) -> None:
    plugins = Plugins()
    backend = opened(BackendOptions(objects=(spec,), initiator="a", target_port=2), plugins)
    assert plugins.calls == 0
    assert backend.manager.typename == "pr-manager-emulated"
    assert backend.nexus == Nexus("a", 2)
    assert backend.shown_nexus == Nexus("a", 2)
    backend.close()


@pytest.mark.parametrize(
    "spec",
    [
        "help",  # every type, plugins' included
        "pr-manager-emulated,help",
        "pr-manager-other,id=x",  # not built in: maybe a plugin's
        "pr-manager-emulated,id",  # a syntax error: worded by the full processing
    ],
)
def test_other_specs_load_the_plugins(spec: str) -> None:
    plugins = Plugins()
    try:
        answer = open_backend(BackendOptions(objects=(spec,)), prog="test", plugins=plugins)
    except BackendFailed as failed:
        assert failed.status == 1
    else:
        assert isinstance(answer, HelpText)
    assert plugins.calls == 1


def test_target_port_alone_keeps_the_managers_initiator() -> None:
    backend = opened(
        BackendOptions(objects=("pr-manager-emulated,id=e",), target_port=3), Plugins()
    )
    default = backend.manager.default_nexus
    assert default is not None
    assert backend.nexus == Nexus(default.initiator, 3, transport_id=default.transport_id)
    backend.close()


class _Thing(Object, qom_type="test-thing", interfaces=(USER_CREATABLE,)):
    """A creatable object that is no persistent-reservation manager."""


class _ThingPlugin:
    @qompr.hookimpl
    def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
        register(_Thing)


def test_no_manager_among_the_objects(capsys: pytest.CaptureFixture[str]) -> None:
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(_ThingPlugin())
    with pytest.raises(BackendFailed) as failed:
        open_backend(BackendOptions(objects=("test-thing,id=t",)), prog="test", plugins=pm)
    assert failed.value.status == 1
    assert capsys.readouterr().err == (
        "test: --object: none of the objects is a persistent reservation manager\n"
    )
