# SPDX-License-Identifier: MIT
"""qompr's protocol extension against the real qemu-pr-helper 7.2, which has none.

It closes the connection on any requested feature bit; qompr's client must turn that into
a clear error (never a silent fallback to the process's own identity), and the helper must
go on serving QEMU-style clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.errors import ConnectError
from qompr.protocol import Feature
from qompr.protocol import Identify
from qompr.protocol.extension import no_extension_text
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import request
from qompr.transport.sync import HelperClient

pytestmark = pytest.mark.interop

QEMU_PR_HELPER = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"


@pytest.fixture
def real_helper(tmp_path: Path) -> Iterator[HelperProcess]:
    if not os.path.exists(QEMU_PR_HELPER):
        pytest.skip(f"REAL qemu-pr-helper NOT INSTALLED at {QEMU_PR_HELPER}")
    if os.geteuid() != 0:
        pytest.skip("qemu-pr-helper must start as root (it drops privileges with libcap-ng)")
    with HelperProcess([QEMU_PR_HELPER], str(tmp_path)) as helper:
        yield helper


@pytest.mark.parametrize(
    ("features", "identify"),
    [
        (Feature.NONE, Identify("node1")),
        (Feature.QOMPR_TEST_UNIT_READY, None),
        (Feature.QOMPR_TEST_UNIT_READY, Identify("node1", 2)),
    ],
)
def test_client_reports_a_helper_without_the_extension(
    real_helper: HelperProcess, features: Feature, identify: Identify | None
) -> None:
    with pytest.raises(ConnectError) as caught:
        HelperClient.connect(real_helper.path, timeout=5, features=features, identify=identify)
    assert caught.value.message == no_extension_text(real_helper.path)
    # The helper serves QEMU-style clients as before.
    with connected(real_helper.path) as sock, open("/dev/null", "rb+") as null:
        status, _, _ = request(sock, pr_in(8), null.fileno())
        assert status == 2  # SG_IO on /dev/null: CHECK CONDITION, as always


def test_persist_and_turs_with_a_name_fail_clearly(
    real_helper: HelperProcess, tmp_path: Path
) -> None:
    lu = tmp_path / "lu.img"
    lu.write_bytes(bytes(4096))
    text = no_extension_text(real_helper.path)
    for argv, prog in (
        (["persist", "--initiator", "node1", "-k"], "qompr persist"),
        (["turs"], "qompr turs"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "qompr",
                argv[0],
                "--helper",
                real_helper.path,
                *argv[1:],
                str(lu),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert done.stderr == f"{prog}: {text}\n"


def test_validate_with_named_nodes_fails_clearly(
    real_helper: HelperProcess, tmp_path: Path
) -> None:
    lu = tmp_path / "lu.img"
    lu.write_bytes(bytes(4096))
    argv = ["validate", "--helper", real_helper.path, "--node", "a", "--node", "b", str(lu)]
    done = subprocess.run(
        [sys.executable, "-m", "qompr", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (4, "")
    assert no_extension_text(real_helper.path) in done.stderr
