# SPDX-License-Identifier: MIT
"""The daemon's default backend: multipath for dm-multipath fds, SG_IO for the rest.

On real devices (a dm-multipath map and its paths) it is tested in the VM bed
(tests/vm/test_multipath.py); here the device-mapper test and libmpathpersist are replaced
so that each decision can be driven.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

import pytest

from qompr.daemon import PRHelperDefault
from qompr.daemon import _backends
from qompr.daemon import default_executor
from qompr.daemon import sgio_executor
from qompr.errors import ConnectError
from qompr.linux.caps import Capability
from qompr.managers import ClientIdentity
from qompr.managers import PRManager
from qompr.managers.multipath import PrinResp
from qompr.managers.multipath import PRManagerMultipath
from qompr.managers.multipath import ProutParamStorage
from qompr.managers.multipath import _manager
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

KEY = 0x123ABC


class FakeLibrary:
    """libmpathpersist as far as these tests need it: READ KEYS answers ``keys``."""

    init_error: ConnectError | None = None
    multipathd_error: ConnectError | None = ConnectError("multipathd is not reachable")

    def __init__(self) -> None:
        self.keys = [KEY, KEY]
        self.calls: list[tuple[str, int, int]] = []

    def init(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def check_multipathd(self) -> str:
        if self.multipathd_error is not None:
            raise self.multipathd_error
        return "@fake"

    def reserve_in(
        self, fd: int, service_action: int, resp: PrinResp, *, noisy: bool, verbose: int
    ) -> int:
        self.calls.append(("in", fd, service_action))
        keys = resp.prin_descriptor.prin_readkeys
        keys.prgeneration = 5
        keys.additional_length = 8 * len(self.keys)
        body = b"".join(k.to_bytes(8, "big") for k in self.keys)
        ctypes.memmove(ctypes.addressof(keys.key_list), body, len(body))
        return 0

    def reserve_out(
        self,
        fd: int,
        service_action: int,
        *,
        scope: int,
        type: int,
        param: ProutParamStorage,
        noisy: bool,
        verbose: int,
    ) -> int:
        self.calls.append(("out", fd, service_action))
        return 0


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> FakeLibrary:
    """The next pr-manager-multipath created without a library gets this fake."""
    fake = FakeLibrary()
    monkeypatch.setattr(_manager, "LibMpathPersist", lambda: fake)
    # the start-up probe must not look for the real one
    monkeypatch.setattr(_backends, "_multipath_library_missing", lambda: None)
    return fake


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """/dev/mapper/control as the probe opens it: here /dev/null; yields the fds handed out."""
    opened: list[int] = []

    def open_control() -> int:
        fd = os.open(os.devnull, os.O_RDWR)
        opened.append(fd)
        return fd

    monkeypatch.setattr(_backends, "open_control", open_control)
    yield opened
    for fd in opened:
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture
def device() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_RDWR)
    yield fd
    os.close(fd)


def read_keys() -> bytes:
    return PrInCdb(0, 64).to_bytes(size=16)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def needs_sys_admin(executor: PRManager) -> bool:
    return Capability.CAP_SYS_ADMIN in executor.required_capabilities()


def test_without_device_mapper_every_fd_gets_sg_io(
    monkeypatch: pytest.MonkeyPatch, device: int
) -> None:
    def no_control() -> int:
        raise ConnectError("Cannot open /dev/mapper/control: No such file or directory")

    monkeypatch.setattr(_backends, "open_control", no_control)
    executor = default_executor()
    assert not isinstance(executor, PRHelperDefault) and not needs_sys_admin(executor)
    # exactly what a qemu-pr-helper built without multipath answers
    assert executor.execute(device, read_keys()) == sgio_executor().execute(device, read_keys())


def test_without_libmpathpersist_every_fd_gets_sg_io_and_control_is_closed(
    library: FakeLibrary, control: list[int]
) -> None:
    library.init_error = ConnectError("Cannot load libmpathpersist.so.0")
    executor = default_executor()
    assert not isinstance(executor, PRHelperDefault) and not needs_sys_admin(executor)
    assert len(control) == 1 and not is_open(control[0])


def test_without_libmpathpersist_the_multipath_manager_is_not_even_created(
    monkeypatch: pytest.MonkeyPatch, control: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    # device-mapper (LVM) without multipath-tools: asked before the manager is imported
    monkeypatch.setattr(_backends, "_MULTIPATH_LIBRARY", "libqompr-test-missing.so.0")
    monkeypatch.setattr(_manager, "LibMpathPersist", FakeLibrary)  # must not be reached
    with caplog.at_level("INFO", logger="qompr.daemon"):
        executor = default_executor()
    assert not isinstance(executor, PRHelperDefault) and not needs_sys_admin(executor)
    assert len(control) == 1 and not is_open(control[0])
    assert "no multipath support: Cannot load libqompr-test-missing.so.0: " in caplog.text


def test_the_probe_names_the_library_the_manager_loads() -> None:
    from qompr.managers.multipath import _library

    assert _backends._MULTIPATH_LIBRARY == _library.LIBRARY_NAME


def test_multipath_support_does_not_wait_for_multipathd(
    library: FakeLibrary, control: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    # qemu-pr-helper does not ask multipathd at start-up either; it may start later
    executor = default_executor(verbose=3, noisy=True)
    assert isinstance(executor, PRHelperDefault)
    assert isinstance(executor.multipath, PRManagerMultipath)
    assert needs_sys_admin(executor)
    assert executor.multipath.verbose == 3 and executor.multipath.noisy
    assert not executor.multipath.require_multipathd
    assert "multipathd is not reachable" in caplog.text
    executor.close()
    assert not is_open(control[0])


@pytest.fixture
def executor(library: FakeLibrary, control: list[int]) -> Iterator[PRHelperDefault]:
    executor = default_executor()
    assert isinstance(executor, PRHelperDefault)
    yield executor
    executor.close()


def test_a_multipath_fd_goes_to_libmpathpersist(
    monkeypatch: pytest.MonkeyPatch,
    executor: PRHelperDefault,
    library: FakeLibrary,
    device: int,
) -> None:
    monkeypatch.setattr(_backends, "is_multipath", lambda fd, control: True)
    result = executor.execute(device, read_keys())
    assert (result.status, result.sense) == (ScsiStatus.GOOD, b"")
    assert result.data[:24] == bytes.fromhex("00000005 00000010") + KEY.to_bytes(8, "big") * 2
    params = PrOutParameters(sa_key=KEY).to_bytes()
    register = PrOutCdb(0, 0, 0, len(params)).to_bytes(size=16)
    assert executor.execute(device, register, params) == ScsiResult(ScsiStatus.GOOD)
    assert library.calls == [("in", device, 0), ("out", device, 0)]


def test_any_other_fd_gets_sg_io(
    monkeypatch: pytest.MonkeyPatch,
    executor: PRHelperDefault,
    library: FakeLibrary,
    device: int,
) -> None:
    asked: list[int] = []

    def is_multipath(fd: int, control: int) -> bool:
        asked.append(fd)
        return False

    monkeypatch.setattr(_backends, "is_multipath", is_multipath)
    assert executor.execute(device, read_keys()) == sgio_executor().execute(device, read_keys())
    assert asked == [device] and library.calls == []


def test_a_failing_device_mapper_test_is_an_answer_not_an_exit(
    monkeypatch: pytest.MonkeyPatch,
    executor: PRHelperDefault,
    device: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # qemu-pr-helper calls exit() here (is_mpath on an unexpected DM_TABLE_STATUS error)
    def broken(fd: int, control: int) -> bool:
        raise ConnectError("DM_TABLE_STATUS failed: Input/output error")

    monkeypatch.setattr(_backends, "is_multipath", broken)
    result = executor.execute(device, read_keys())
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == SenseCode.LUN_COMM_FAILURE.to_bytes() and result.data == b""
    assert "DM_TABLE_STATUS failed" in caplog.text


def test_a_manager_needs_the_control_fd(
    library: FakeLibrary, control: list[int], executor: PRHelperDefault
) -> None:
    assert executor.multipath is not None
    with pytest.raises(ValueError, match="control fd"):
        executor.attach(executor.multipath, -1)


def test_the_executors_answer_the_manager_contract(device: int) -> None:
    sgio = sgio_executor()
    assert sgio.cannot_block(device)  # /dev/null: the ioctl fails at once
    assert sgio.default_nexus is None
    assert sgio.nexus_for_client(ClientIdentity(1, 0, 0)) is None
    # TEST UNIT READY goes out as the PR commands do: ENOTTY on /dev/null, I/O PROCESS
    # TERMINATED as qemu-pr-helper 7.2 maps it, all 96 sense bytes kept
    tur = sgio.test_unit_ready(device)
    assert (tur.status, tur.sense) == (
        ScsiStatus.CHECK_CONDITION, SenseCode.IO_ERROR.to_bytes().ljust(96, b"\0")
    )  # fmt: skip
    assert sgio.execute(device, read_keys()).sense == tur.sense
