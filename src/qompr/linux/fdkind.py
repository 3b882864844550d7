# SPDX-License-Identifier: MIT
"""Will ``SG_IO`` on this fd fail at once?  (Then a server may run it on its event loop.)

A pipe, a socket, ``/dev/null`` and its kin, or a file on a local filesystem answers the ioctl
with ENOTTY (or similar) without waiting for anything; a block or SCSI device, FUSE or a
network filesystem may take seconds.  Unknown kinds count as slow.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

__all__ = ["sgio_cannot_block"]

# Filesystems whose regular files and directories answer SG_IO with ENOTTY at once (no
# ioctl is forwarded anywhere, unlike FUSE or network filesystems).  statfs(2) magics.
_LOCAL_FS = frozenset(
    {
        0xEF53,  # ext2/3/4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0x01021994,  # tmpfs (and memfd)
        0x858458F6,  # ramfs
        0x794C7630,  # overlayfs
        0xF2F52010,  # f2fs
        0x9FA0,  # proc
        0x62656572,  # sysfs
    }
)
_MEM_MAJOR = 1  # /dev/null, /dev/zero, /dev/full, /dev/random...: the mem driver
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fstatfs.argtypes = (ctypes.c_int, ctypes.c_void_p)
_libc.fstatfs.restype = ctypes.c_int


def _fs_type(fd: int) -> int:
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
    if _libc.fstatfs(fd, buf) != 0:
        return -1
    return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], sys.byteorder)


def sgio_cannot_block(fd: int) -> bool:
    """Whether ``SG_IO`` on *fd* is sure to fail at once (so it may run on the loop).

    True for pipes, sockets, the mem character devices, and regular files and directories
    of local filesystems; False for block and other character devices (SCSI disks, sg
    nodes), FUSE, network filesystems, and anything unknown.
    """
    try:
        st = os.fstat(fd)
    except OSError:
        return True  # EBADF: the ioctl fails at once too
    mode = st.st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    if stat.S_ISCHR(mode):
        return os.major(st.st_rdev) == _MEM_MAJOR
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        local = _local_devices.get(st.st_dev)
        if local is None:
            local = _local_devices[st.st_dev] = _fs_type(fd) in _LOCAL_FS
        return local
    return False


# st_dev -> whether that filesystem is in _LOCAL_FS (a mount keeps its type).
_local_devices: dict[int, bool] = {}
