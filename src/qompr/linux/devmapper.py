# SPDX-License-Identifier: MIT
"""Is an fd a dm-multipath device?  Decided as qemu-pr-helper's ``is_mpath`` decides.

qemu-pr-helper issues ``DM_TABLE_STATUS`` (with ``DM_NOFLUSH_FLAG``) on /dev/mapper/control
for the fd's ``st_rdev`` and looks at the first target's type: ``multipath`` means yes; the
error ENXIO means "not a device-mapper device" (docs/reference/qemu-pr-helper.md §10).  qompr asks
the same question, but first looks in sysfs: a block device that sysfs shows without a ``dm/``
directory is not a device-mapper device, and device-mapper (which may not even be loaded) is not
asked.

Fixed here: qemu-pr-helper calls ``exit()`` on any other ioctl error, and on a failure to open
/dev/mapper/control at start-up (docs/reference/qemu-pr-helper.md §14).  :func:`is_multipath` raises
:class:`~qompr.errors.ConnectError` instead, so a daemon answers that one command (for example
with LOGICAL UNIT COMMUNICATION FAILURE) and goes on.  An fd that is not a block device is
answered without asking device-mapper either (the ioctl would say ENXIO for it).

Layouts (``<linux/dm-ioctl.h>``, checked against the header by the tests): ``struct dm_ioctl``
is 312 bytes, ``struct dm_target_spec`` 40; interface version 4.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat

from qompr.errors import ConnectError

__all__ = [
    "DM_CONTROL",
    "DM_TABLE_STATUS",
    "DmIoctl",
    "DmTargetSpec",
    "dm_target_type",
    "is_multipath",
    "open_control",
]

#: The device-mapper control node.
DM_CONTROL = "/dev/mapper/control"
_DM_VERSION_MAJOR = 4
_DM_MAX_TYPE_NAME = 16
_DM_NOFLUSH_FLAG = 1 << 11
_DM_BUFFER_FULL_FLAG = 1 << 8
#: Room for the status text after the header.  qemu-pr-helper uses 1024 bytes; a map with many
#: paths has a longer status line, and the first target's type is written before it anyway.
_DATA_SIZE = 16384


class DmIoctl(ctypes.Structure):
    """``struct dm_ioctl``."""

    _fields_ = (
        ("version", ctypes.c_uint32 * 3),
        ("data_size", ctypes.c_uint32),
        ("data_start", ctypes.c_uint32),
        ("target_count", ctypes.c_uint32),
        ("open_count", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("event_nr", ctypes.c_uint32),
        ("padding", ctypes.c_uint32),
        ("dev", ctypes.c_uint64),
        ("name", ctypes.c_char * 128),
        ("uuid", ctypes.c_char * 129),
        ("data", ctypes.c_char * 7),
    )


class DmTargetSpec(ctypes.Structure):
    """``struct dm_target_spec``."""

    _fields_ = (
        ("sector_start", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("status", ctypes.c_int32),
        ("next", ctypes.c_uint32),
        ("target_type", ctypes.c_char * _DM_MAX_TYPE_NAME),
    )


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0xFD << 8) | nr


#: ``_IOWR(DM_IOCTL, DM_TABLE_STATUS_CMD, struct dm_ioctl)``.
DM_TABLE_STATUS = _iowr(12, ctypes.sizeof(DmIoctl))


def open_control(control: str = DM_CONTROL) -> int:
    """Open the device-mapper control node (read-write, close-on-exec).

    A daemon opens it once before dropping privileges, as qemu-pr-helper does: the node is
    ``0600 root``, so a helper running as another user could not open it later.

    :raises ConnectError: ``Cannot open /dev/mapper/control: ...``.
    """
    try:
        return os.open(control, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise ConnectError(f"Cannot open {control}: {exc.strerror}", exc) from None


def dm_target_type(rdev: int, *, control: str | int = DM_CONTROL) -> str | None:
    """The type of the first target of device-mapper device *rdev* (``multipath``, ``linear``).

    :param control: the control node's path, or an fd of it already open (kept open).
    :returns: the type, ``""`` for a device-mapper device without a live table, or ``None``
        when *rdev* is not a device-mapper device (ENXIO).
    :raises ConnectError: when *control* cannot be opened or the ioctl fails otherwise.
    """
    buf = ctypes.create_string_buffer(ctypes.sizeof(DmIoctl) + _DATA_SIZE)
    hdr = DmIoctl.from_buffer(buf)
    hdr.version[0] = _DM_VERSION_MAJOR
    hdr.data_size = len(buf)
    hdr.data_start = ctypes.sizeof(DmIoctl)
    hdr.flags = _DM_NOFLUSH_FLAG
    hdr.dev = rdev
    fd = control if isinstance(control, int) else open_control(control)
    try:
        fcntl.ioctl(fd, DM_TABLE_STATUS, buf)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise ConnectError(f"DM_TABLE_STATUS failed: {exc.strerror}", exc) from None
    finally:
        if not isinstance(control, int):
            os.close(fd)
    hdr = DmIoctl.from_buffer_copy(buf)
    if hdr.target_count == 0 and not hdr.flags & _DM_BUFFER_FULL_FLAG:
        return ""
    start = hdr.data_start
    if start < ctypes.sizeof(DmIoctl) or start + ctypes.sizeof(DmTargetSpec) > len(buf):
        return ""
    spec = DmTargetSpec.from_buffer_copy(buf, start)
    return bytes(spec.target_type).split(b"\0", 1)[0].decode("ascii", "replace")


def is_multipath(fd: int, *, control: str | int = DM_CONTROL) -> bool:
    """Whether *fd* is a dm-multipath device, as qemu-pr-helper's ``is_mpath`` decides.

    :param fd: an open file.
    :param control: the device-mapper control node (tests point it elsewhere), or an fd of it
        that the caller keeps open (see :func:`open_control`).
    :raises ConnectError: where qemu-pr-helper would exit: /dev/mapper/control cannot be
        opened, or DM_TABLE_STATUS fails with an error other than ENXIO.
    :raises OSError: if *fd* is not an open file.
    """
    st = os.fstat(fd)
    if not stat.S_ISBLK(st.st_mode):
        return False
    # sysfs knows a device-mapper device by its dm/ directory; where sysfs shows the device
    # without one, device-mapper need not be asked (it may not even be loaded).
    sysfs = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if os.path.isdir(sysfs) and not os.path.isdir(f"{sysfs}/dm"):
        return False
    return dm_target_type(st.st_rdev, control=control) == "multipath"
