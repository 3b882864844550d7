# SPDX-License-Identifier: MIT
"""``lu-id``: the Device Identification VPD page parser (byte fixtures), ``path`` names, and
``wwn`` refusing what is not a SCSI device."""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import patch

import pytest

from qompr.managers.emulated import LuIdRule
from qompr.managers.emulated import _luid
from qompr.managers.emulated import wwn_from_vpd83
from qompr.managers.emulated._luid import DesignatorError
from qompr.managers.emulated._luid import LuNamer
from qompr.managers.emulated._luid import lu_path_identity


def designator(
    value: bytes, *, kind: int, code_set: int = 1, association: int = 0, protocol: int = 0
) -> bytes:
    """One identification descriptor (SPC-4 §7.8.6.1)."""
    return bytes([(protocol << 4) | code_set, (association << 4) | kind, 0, len(value)]) + value


def page(*designators: bytes) -> bytes:
    body = b"".join(designators)
    return bytes([0x00, 0x83]) + len(body).to_bytes(2, "big") + body


# What LIO reports for a fileio backstore: T10 vendor ID, NAA 6 (IEEE registered extended),
# then target-port designators (relative port, port group, SCSI name of the port).
NAA = bytes.fromhex("6001405f3b5c1c0e0b3b4cf5b8a11b2c")
LIO_PAGE = page(
    designator(b"LIO-ORG 5f3b5c1c-0e0b-3b4c-f5b8-a11b2c4d5e6f", kind=1, code_set=2),
    designator(NAA, kind=3),
    designator(bytes.fromhex("00000001"), kind=4, association=1, protocol=5),
    designator(bytes.fromhex("00000000"), kind=5, association=1, protocol=5),
    designator(b"naa.5001405d1e2f3a4b,t,0x0001\0\0\0", kind=8, code_set=3, association=1),
)


def test_naa_wins_over_vendor_ids_and_port_designators() -> None:
    assert wwn_from_vpd83(LIO_PAGE) == "naa." + NAA.hex()


@pytest.mark.parametrize(
    ("designators", "expected"),
    [
        ((designator(bytes.fromhex("0011223344556677"), kind=2),), "eui.0011223344556677"),
        (
            (designator(b"iqn.2026-12.org.example:disk1\0\0\0", kind=8, code_set=3),),
            "name.iqn.2026-12.org.example:disk1",
        ),
        ((designator(b"VENDOR  SERIAL42  ", kind=1, code_set=2),), "t10.VENDOR  SERIAL42"),
        (
            (
                designator(b"VENDOR  X", kind=1, code_set=2),
                designator(bytes(range(16)), kind=0xA),
            ),
            "uuid." + bytes(range(16)).hex(),
        ),
    ],
)
def test_other_designators_in_order_of_preference(
    designators: tuple[bytes, ...], expected: str
) -> None:
    assert wwn_from_vpd83(page(*designators)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes([0, 0x80, 0, 0]),  # the unit serial number page, not 83h
        page(designator(NAA, kind=3, association=1)),  # a port's name, not the LU's
        page(designator(b"\x01\x02", kind=4)),  # relative target port: not a name
        page(designator(NAA, kind=3, code_set=4)),  # a code set we do not read
        page() + designator(NAA, kind=3),  # beyond PAGE LENGTH
        page(designator(NAA, kind=3))[:-3],  # cut short
    ],
)
def test_pages_without_a_logical_unit_name(raw: bytes) -> None:
    with pytest.raises(DesignatorError):
        wwn_from_vpd83(raw)


def test_path_names_the_canonical_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "disk.img").touch()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fd = os.open(tmp_path / "link" / "disk.img", os.O_RDONLY)
    try:
        assert lu_path_identity(fd) == f"path:{tmp_path}/real/disk.img"
        assert LuNamer("path")(fd) == f"path:{tmp_path}/real/disk.img"
        os.rename(tmp_path / "real" / "disk.img", tmp_path / "real" / "moved.img")
        assert lu_path_identity(fd) == f"path:{tmp_path}/real/moved.img"
        (tmp_path / "real" / "moved.img").unlink()
        with pytest.raises(OSError, match="deleted|gone|no path"):
            lu_path_identity(fd)
    finally:
        os.close(fd)


def test_path_refuses_a_pipe() -> None:
    read, write = os.pipe()
    try:
        with pytest.raises(OSError, match="no path"):
            lu_path_identity(read)
    finally:
        os.close(read)
        os.close(write)


def test_wwn_needs_a_device(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "disk.img", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="not a device"):
            LuNamer(LuIdRule.WWN)(fd)
    finally:
        os.close(fd)
    # A device that is not SCSI: INQUIRY through SG_IO is refused by the kernel.
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="INQUIRY"):
            LuNamer(LuIdRule.WWN)(null)
    finally:
        os.close(null)


def test_path_names_are_kept_per_file_and_checked(tmp_path: Path) -> None:
    """The canonical path is resolved once per file; a later command only checks that the
    kept path still names that file, and resolves again when it does not."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "disk.img").touch()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    namer = LuNamer("path")
    fd = os.open(tmp_path / "link" / "disk.img", os.O_RDONLY)
    try:
        assert namer(fd) == f"path:{tmp_path}/real/disk.img"
        # Kept: the link's target changing does not matter, the canonical path still holds.
        (tmp_path / "link").unlink()
        assert namer(fd) == f"path:{tmp_path}/real/disk.img"
        # Renamed, and another file now at the kept path: that one is not this one, so the
        # name is resolved again.
        os.rename(tmp_path / "real" / "disk.img", tmp_path / "real" / "moved.img")
        (tmp_path / "real" / "disk.img").touch()
        assert namer(fd) == f"path:{tmp_path}/real/moved.img"
        os.rename(tmp_path / "real" / "moved.img", tmp_path / "real" / "again.img")
        assert namer(fd) == f"path:{tmp_path}/real/again.img"
        (tmp_path / "real" / "again.img").unlink()
        with pytest.raises(OSError, match="deleted|gone|no path"):
            namer(fd)
    finally:
        os.close(fd)
    other = os.open(tmp_path / "real" / "disk.img", os.O_RDONLY)
    try:
        assert namer(other) == f"path:{tmp_path}/real/disk.img"
    finally:
        os.close(other)


def test_kept_path_names_are_bounded(tmp_path: Path) -> None:
    namer = LuNamer("path")
    fds = []
    try:
        for i in range(40):
            fds.append(os.open(tmp_path / f"{i}.img", os.O_RDWR | os.O_CREAT, 0o600))
        with patch.object(_luid, "_KEEP", 16):
            for i, fd in enumerate(fds):
                assert namer(fd) == f"path:{tmp_path}/{i}.img"
            assert 0 < len(namer._paths) <= 16
    finally:
        for fd in fds:
            os.close(fd)
