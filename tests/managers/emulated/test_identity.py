# SPDX-License-Identifier: MIT
"""Who is who: logical units behind fds, initiators behind client processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qompr.managers.emulated import InitiatorRule
from qompr.managers.emulated import PeerCredentials
from qompr.managers.emulated import initiator_name
from qompr.managers.emulated import lu_identity
from qompr.managers.emulated import nexus_for_peer
from qompr.managers.emulated import nexus_for_pid
from qompr.managers.emulated import peer_credentials
from qompr.managers.emulated import vm_name
from qompr.managers.emulated._identity import process_cmdline
from qompr.managers.emulated._identity import split_qemu_options
from qompr.scsi import TransportID


def test_same_file_same_lu_other_file_other_lu(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4096))
    link = tmp_path / "hard-link.img"
    os.link(image, link)
    other = tmp_path / "other.img"
    other.write_bytes(bytes(4096))
    fds = [os.open(p, os.O_RDONLY) for p in (image, image, link, other)]
    try:
        names = [lu_identity(fd) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    st = image.stat()
    assert names[0] == f"ino:{st.st_dev}:{st.st_ino}"
    assert names[0] == names[1] == names[2]
    assert names[3] != names[0]


def test_device_nodes_are_named_by_rdev() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert lu_identity(fd) == "rdev:1:3"
    finally:
        os.close(fd)


def test_closed_fd_is_an_error() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError):
        lu_identity(fd)


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"], "vm1"),
        (["qemu", "-name", "legacy,process=qemu:legacy"], "legacy"),
        (["qemu", "--name", "debug-threads=on,guest=late"], "late"),
        (["qemu", "-name", "guest=a,,b"], "a,b"),
        (["qemu", "-name", "first", "-m", "1G", "-name", "guest=second"], "second"),
        (["qemu", "-m", "1G"], None),
        (["qemu", "-name"], None),
        (["qemu", "-name", "guest="], None),
    ],
)
def test_vm_name(argv: list[str], name: str | None) -> None:
    assert vm_name(argv) == name


def test_split_qemu_options() -> None:
    assert split_qemu_options("x,a=1,,2,b=") == [(None, "x"), ("a", "1,2"), ("b", "")]


def test_initiator_name_from_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(b"qemu\0-name\0guest=Web_01\0")
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "cmdline").write_bytes(b"qemu\0-m\0" + b"1G\0")
    assert process_cmdline(42, proc=str(tmp_path)) == ["qemu", "-name", "guest=Web_01"]
    assert initiator_name(42, "vm-name", proc=str(tmp_path)) == "vm:Web_01"
    assert initiator_name(43, InitiatorRule.VM_NAME, proc=str(tmp_path)) == "pid:43"
    assert initiator_name(44, "vm-name", proc=str(tmp_path)) == "pid:44"  # gone
    assert initiator_name(42, "pid", proc=str(tmp_path)) == "pid:42"
    nexus = nexus_for_pid(42, "vm-name", target_port=2, proc=str(tmp_path))
    assert nexus.target_port == 2
    # A stable, valid iSCSI name: lower case, '_' replaced.
    assert nexus.transport_id == TransportID.iscsi("iqn.2026-11.org.qompr:vm:web-01")
    with pytest.raises(ValueError):
        initiator_name(42, "uid")


def test_peer_credentials_of_a_socketpair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == PeerCredentials(os.getpid(), os.geteuid(), os.getegid())
        nexus = nexus_for_peer(right, "pid")
        assert nexus.initiator == f"pid:{os.getpid()}"


def test_vm_name_of_a_real_peer_process(tmp_path: Path) -> None:
    """The rule applied to a live process whose command line carries -name guest=..."""
    sock_path = str(tmp_path / "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1])\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, sock_path, "-name", "guest=db7,x=y"])
    try:
        conn, _ = server.accept()
        with conn:
            assert peer_credentials(conn).pid == child.pid
            assert nexus_for_peer(conn, "vm-name").initiator == "vm:db7"
            assert nexus_for_peer(conn, "pid").initiator == f"pid:{child.pid}"
    finally:
        child.kill()
        child.wait()
        server.close()
    time.sleep(0)
