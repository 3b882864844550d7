# SPDX-License-Identifier: MIT
"""HelperProcess: qompr-pr-helper started, waited for, stopped; failures carry stderr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qompr.testing import HelperExitedError
from qompr.testing import HelperProcess
from qompr.testing import TestingError
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import request


def test_qompr_helper_starts_serves_and_stops(tmp_path: Path) -> None:
    helper = HelperProcess.qompr(workdir=str(tmp_path))
    with helper:
        assert os.path.exists(f"/proc/{helper.pid}")
        with connected(helper.path) as sock:
            fd = os.open("/dev/null", os.O_RDWR)
            try:
                status, sense, _ = request(sock, pr_in(), fd)
            finally:
                os.close(fd)
        assert status == 2  # CHECK CONDITION: /dev/null is no SCSI device
        assert len(sense) == 96
    assert helper.proc is not None and helper.proc.returncode == 0
    assert not os.path.exists(helper.path)


def test_a_helper_that_exits_at_once_reports_its_status_and_stderr(tmp_path: Path) -> None:
    helper = HelperProcess.qompr("--no-such-option", workdir=str(tmp_path))
    with pytest.raises(HelperExitedError, match="exited with status 1") as info:
        helper.start()
    assert info.value.status == 1
    assert "--no-such-option" in info.value.stderr
    assert info.value.hint is not None and "--no-such-option" in info.value.hint


def test_the_pid_of_a_helper_not_started_is_an_error() -> None:
    helper = HelperProcess.qompr()
    with pytest.raises(TestingError, match="has not been started"):
        _ = helper.pid
    with pytest.raises(TestingError):
        helper.stop()
