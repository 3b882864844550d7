# SPDX-License-Identifier: MIT
"""Building the plugin manager: built-ins, entry points, allowlists and tracing.

Nothing is loaded at import time.  :func:`get_plugin_manager` registers qompr's default
plugins and then, if asked, third-party plugins from the entry-point group ``qompr``:

* ``load_entrypoints=False`` loads none (the privileged daemon's default);
* ``allow=[...]`` (or ``QOMPR_LOAD_PLUGINS="a,b"``) loads only the named ones, by entry-point
  name or distribution name; an empty ``QOMPR_LOAD_PLUGINS`` loads none;
* ``trace=True`` (or ``QOMPR_TRACE_PLUGINS=1``) writes every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import pluggy

from qompr import hookspecs
from qompr.errors import PluginError
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import TypeRegistry

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "get_plugin_manager",
    "new_tree",
]

#: The entry-point group third-party packages use.
ENTRY_POINT_GROUP = "qompr"
#: qompr's own plugins, registered first under these names.
DEFAULT_PLUGINS = ("qompr.managers._plugin",)


def _allowlist_from_env() -> list[str] | None:
    raw = os.environ.get("QOMPR_LOAD_PLUGINS")
    if raw is None:
        return None
    return [name.strip() for name in raw.split(",") if name.strip()]


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    allow: Sequence[str] | None = None,
    trace: bool | None = None,
) -> pluggy.PluginManager:
    """A fresh plugin manager with qompr's hooks and default plugins.

    :param load_entrypoints: load third-party plugins from the ``qompr`` entry points.
    :param allow: load only these entry points (names or distribution names); ``None``
        means ``QOMPR_LOAD_PLUGINS`` if set, else all.
    :param trace: write hook calls to stderr; ``None`` means ``QOMPR_TRACE_PLUGINS``.
    :raises PluginError: an allowed plugin is not installed or fails to import.
    """
    pm = pluggy.PluginManager("qompr")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if allow is None:
        allow = _allowlist_from_env()
    if load_entrypoints:
        _load_entrypoints(pm, allow)
    if trace is None:
        trace = os.environ.get("QOMPR_TRACE_PLUGINS", "") not in ("", "0")
    if trace:
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def _load_entrypoints(pm: pluggy.PluginManager, allow: Sequence[str] | None) -> None:
    import importlib.metadata  # slow to import (~1 s under emulation): only when needed

    wanted = set(allow) if allow is not None else None
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        pm.register(plugin, name=ep.name)
        seen.update((ep.name, dist))
    if wanted is not None:
        missing = sorted(wanted - seen)
        if missing:
            raise PluginError(
                "plugin(s) not installed in entry-point group 'qompr': " + ", ".join(missing)
            )


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """``qompr plugins``: name, hooks and (for entry points) distribution and version."""
    import importlib.metadata

    dists = {ep.name: ep.dist for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        entry: dict[str, Any] = {
            "name": name,
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or ()),
            "builtin": name in DEFAULT_PLUGINS,
        }
        dist = dists.get(name)
        if dist is not None and name not in DEFAULT_PLUGINS:
            entry["distribution"] = dist.name
            entry["version"] = dist.version
        out.append(entry)
    return out


def build_registry(pm: pluggy.PluginManager) -> TypeRegistry:
    """Ask every plugin for its types (``qompr_register_types``); those registered by name
    load when first looked up."""
    classes: list[type[Object]] = []
    registry = TypeRegistry()
    pm.hook.qompr_register_types(register=classes.append, register_lazy=registry.register_lazy)
    registry.register_all(classes)
    return registry


def new_tree(pm: pluggy.PluginManager | None = None, **kwargs: Any) -> ObjectTree:
    """An :class:`~qompr.qom.ObjectTree` with every type the plugins register, whose objects
    call the plugins' hooks.

    :param pm: a plugin manager; one from :func:`get_plugin_manager` (*kwargs* passed on)
        if omitted.
    """
    if pm is None:
        pm = get_plugin_manager(**kwargs)
    return ObjectTree(build_registry(pm), hook=pm.hook)
