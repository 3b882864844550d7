# SPDX-License-Identifier: MIT
"""QEMU command-line fragments for a shared disk behind a persistent-reservation manager.

The shapes and names are libvirt's (src/qemu/qemu_command.c and its test data), so a VM
manager can switch between libvirt and qompr without its guests noticing:

* the managed helper's object is ``pr-helper0``; an unmanaged one, for the storage node
  ``libvirt-1-storage``, is ``pr-helper-libvirt-1-storage``;
* the disk is a ``host_device`` storage node carrying ``"pr-manager": ID`` under a ``raw``
  format node, attached to the guest as ``scsi-block``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from qompr.managers import PRManager
from qompr.options import escape_value
from qompr.options import to_json
from qompr.options import to_keyval

__all__ = [
    "MANAGED_ALIAS",
    "DiskArgs",
    "drive_args",
    "managed_alias",
    "object_args",
    "pr_helper_object",
    "scsi_block_disk",
    "unmanaged_alias",
]

#: libvirt's alias for the helper it runs itself (``qemuDomainGetManagedPRAlias``).
MANAGED_ALIAS = "pr-helper0"


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def managed_alias() -> str:
    """The id of a managed helper's ``pr-manager-helper`` object."""
    return MANAGED_ALIAS


def unmanaged_alias(storage_node: str) -> str:
    """The id libvirt gives an unmanaged helper object: ``pr-helper-<storage node>``."""
    return f"pr-helper-{storage_node}"


def pr_helper_object(alias: str, path: str) -> dict[str, Any]:
    """The JSON ``-object`` of a ``pr-manager-helper`` (what libvirt passes)."""
    return {"qom-type": "pr-manager-helper", "id": alias, "path": path}


def object_args(manager: PRManager, *, json_form: bool = True) -> list[str]:
    """``["-object", ARG]`` for an existing manager object, in JSON or key=value form."""
    return ["-object", _compact(to_json(manager)) if json_form else to_keyval(manager)]


@attrs.frozen
class DiskArgs:
    """The pieces of one shared disk, as QEMU's JSON option values.

    :param storage: the ``host_device`` ``-blockdev`` with ``pr-manager``.
    :param format: the ``raw`` ``-blockdev`` on top of it.
    :param device: the ``scsi-block`` ``-device``.
    """

    storage: dict[str, Any]
    format: dict[str, Any]
    device: dict[str, Any]

    def argv(self, *, device: bool = True) -> list[str]:
        """``-blockdev`` (twice) and, unless *device* is false, ``-device``."""
        out = ["-blockdev", _compact(self.storage), "-blockdev", _compact(self.format)]
        if device:
            out += ["-device", _compact(self.device)]
        return out


def scsi_block_disk(
    path: str,
    pr_manager: str,
    *,
    index: int = 1,
    bus: str = "scsi0.0",
    scsi_id: int = 0,
    lun: int = 0,
    migrate_pr: bool | None = None,
) -> DiskArgs:
    """A pass-through disk whose PR commands go to the manager *pr_manager*.

    :param path: the host block device (``/dev/sdX``, ``/dev/mapper/mpatha``).
    :param index: libvirt's disk index, giving ``libvirt-<index>-storage``/``-format``.
    :param migrate_pr: QEMU >= 11.0's ``migrate-pr`` of scsi-block (omitted if None).
    """
    storage_node = f"libvirt-{index}-storage"
    format_node = f"libvirt-{index}-format"
    storage = {
        "driver": "host_device",
        "filename": path,
        "node-name": storage_node,
        "pr-manager": pr_manager,
        "auto-read-only": True,
        "discard": "unmap",
    }
    fmt = {"node-name": format_node, "read-only": False, "driver": "raw", "file": storage_node}
    device: dict[str, Any] = {
        "driver": "scsi-block",
        "bus": bus,
        "channel": 0,
        "scsi-id": scsi_id,
        "lun": lun,
        "drive": format_node,
        "id": f"scsi0-0-{scsi_id}-{lun}",
    }
    if migrate_pr is not None:
        device["migrate-pr"] = migrate_pr
    return DiskArgs(storage, fmt, device)


def drive_args(path: str, pr_manager: str, *, drive_id: str = "drive0") -> list[str]:
    """The older ``-drive`` spelling: ``file.pr-manager=ID`` on a ``host_device`` file."""
    value = ",".join(
        [
            f"file={escape_value(path)}",
            "if=none",
            "format=raw",
            "file.driver=host_device",
            f"file.pr-manager={escape_value(pr_manager)}",
            f"id={escape_value(drive_id)}",
        ]
    )
    return ["-drive", value]
