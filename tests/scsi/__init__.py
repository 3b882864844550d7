# SPDX-License-Identifier: MIT
"""Tests of qompr.scsi, the pure SCSI codecs."""
