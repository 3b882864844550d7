# SPDX-License-Identifier: MIT
"""What VM managers need to embed qompr: managed helpers (:class:`HelperSupervisor`) and
QEMU argument generation.  QMP integration is the separate ``qompr-qmp`` plugin package."""

from qompr.embed._args import MANAGED_ALIAS as MANAGED_ALIAS
from qompr.embed._args import DiskArgs as DiskArgs
from qompr.embed._args import drive_args as drive_args
from qompr.embed._args import managed_alias as managed_alias
from qompr.embed._args import object_args as object_args
from qompr.embed._args import pr_helper_object as pr_helper_object
from qompr.embed._args import scsi_block_disk as scsi_block_disk
from qompr.embed._args import unmanaged_alias as unmanaged_alias
from qompr.embed._supervisor import HelperExit as HelperExit
from qompr.embed._supervisor import HelperStartError as HelperStartError
from qompr.embed._supervisor import HelperSupervisor as HelperSupervisor
from qompr.embed._supervisor import default_helper_command as default_helper_command

__all__ = [
    "MANAGED_ALIAS",
    "DiskArgs",
    "HelperExit",
    "HelperStartError",
    "HelperSupervisor",
    "default_helper_command",
    "drive_args",
    "managed_alias",
    "object_args",
    "pr_helper_object",
    "scsi_block_disk",
    "unmanaged_alias",
]
