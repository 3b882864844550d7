# SPDX-License-Identifier: MIT
"""What VM managers need to embed qompr: managed helpers (:class:`HelperSupervisor`), QEMU
argument generation, and the reservation handover of a live migration (:class:`Migration`,
``docs/migration.md``).  QMP integration is the separate ``qompr-qmp`` plugin package."""

from qompr.embed._args import MANAGED_ALIAS as MANAGED_ALIAS
from qompr.embed._args import DiskArgs as DiskArgs
from qompr.embed._args import drive_args as drive_args
from qompr.embed._args import managed_alias as managed_alias
from qompr.embed._args import object_args as object_args
from qompr.embed._args import pr_helper_object as pr_helper_object
from qompr.embed._args import scsi_block_disk as scsi_block_disk
from qompr.embed._args import unmanaged_alias as unmanaged_alias
from qompr.embed._migration import ControlError as ControlError
from qompr.embed._migration import HandoverError as HandoverError
from qompr.embed._migration import HandoverReason as HandoverReason
from qompr.embed._migration import HandoverResult as HandoverResult
from qompr.embed._migration import Migration as Migration
from qompr.embed._migration import PRPath as PRPath
from qompr.embed._migration import TrackedReservation as TrackedReservation
from qompr.embed._migration import close_path as close_path
from qompr.embed._migration import helper_path as helper_path
from qompr.embed._migration import query_tracking as query_tracking
from qompr.embed._migration import roll_back as roll_back
from qompr.embed._migration import take_over as take_over
from qompr.embed._supervisor import HelperExit as HelperExit
from qompr.embed._supervisor import HelperStartError as HelperStartError
from qompr.embed._supervisor import HelperSupervisor as HelperSupervisor
from qompr.embed._supervisor import default_helper_command as default_helper_command

__all__ = [
    "MANAGED_ALIAS",
    "ControlError",
    "DiskArgs",
    "HandoverError",
    "HandoverReason",
    "HandoverResult",
    "HelperExit",
    "HelperStartError",
    "HelperSupervisor",
    "Migration",
    "PRPath",
    "TrackedReservation",
    "close_path",
    "default_helper_command",
    "drive_args",
    "helper_path",
    "managed_alias",
    "object_args",
    "pr_helper_object",
    "query_tracking",
    "roll_back",
    "scsi_block_disk",
    "take_over",
    "unmanaged_alias",
]
