# SPDX-License-Identifier: MIT
"""qompr.cli.backend: the manager behind ``qompr persist`` / ``qompr turs``, and what it loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy
import pytest

import qompr
from qompr.cli.backend import BUILTIN_TYPES
from qompr.cli.backend import Backend
from qompr.cli.backend import BackendFailed
from qompr.cli.backend import BackendOptions
from qompr.cli.backend import open_backend
from qompr.managers import PRManager
from qompr.managers import PRManagerDirect
from qompr.options import HelpText
from qompr.plugins import build_registry
from qompr.qom import USER_CREATABLE
from qompr.qom import Object
from qompr.scsi import Nexus


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


def test_the_device_path_is_pr_manager_direct_without_plugins() -> None:
    plugins = Plugins()
    backend = opened(BackendOptions(), plugins)
    assert isinstance(backend.manager, PRManagerDirect)
    assert backend.direct is backend.manager
    assert backend.manager.timeout == 60_000  # sg3_utils' pass-through timeout
    assert [t.name for t in backend.tree.types if t.name.startswith("pr-")] == [
        "pr-manager",
        "pr-manager-direct",
    ]
    assert plugins.calls == 0
    backend.close()
    assert backend.tree.user_objects() == []


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
    assert backend.direct is None
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
