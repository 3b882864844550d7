# SPDX-License-Identifier: MIT
"""SCSI values shared by every layer above the object model (pure: no I/O)."""

from qompr.scsi._status import CommandFailed as CommandFailed
from qompr.scsi._status import ScsiResult as ScsiResult
from qompr.scsi._status import ScsiStatus as ScsiStatus

__all__ = ["CommandFailed", "ScsiResult", "ScsiStatus"]
