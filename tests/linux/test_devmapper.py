# SPDX-License-Identifier: MIT
"""qompr.linux.devmapper: the DM_TABLE_STATUS ioctl behind ``is_multipath``."""

from __future__ import annotations

import os

import pytest

from qompr.errors import ConnectError
from qompr.linux import devmapper as _dm


def test_device_mapper_errors_are_exceptions_to_answer_not_exits() -> None:
    # qemu-pr-helper calls exit() for both
    with pytest.raises(ConnectError, match="Cannot open /nonexistent/control"):
        _dm.dm_target_type(os.makedev(253, 0), control="/nonexistent/control")
    with pytest.raises(ConnectError, match="DM_TABLE_STATUS failed") as info:
        _dm.dm_target_type(os.makedev(253, 0), control="/dev/null")  # ENOTTY
    assert isinstance(info.value.cause, OSError)


def test_dm_ioctl_number() -> None:
    assert _dm.DM_TABLE_STATUS == 0xC138FD0C
