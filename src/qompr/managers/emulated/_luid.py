# SPDX-License-Identifier: MIT
"""How an fd becomes a logical unit name: the ``lu-id`` property.

* ``inode`` (default): ``rdev:MAJ:MIN`` for a device, ``ino:DEV:INO`` for a file
  (:func:`~._identity.lu_identity`).  Host-local: another host numbers its devices and
  inodes differently, so a shared store refuses it.
* ``path``: ``path:`` and the canonical path of the fd's file, as the kernel reports it
  (``/proc/self/fd/N``, symbolic links resolved), checked to still name that file.  For an
  image on a file system every host mounts at the same place.  The canonical path is kept
  per file (``st_dev``/``st_ino``) and only checked again (one ``stat``) on later commands:
  resolving it costs a ``readlink`` and a ``lstat`` per path component, which was most of a
  READ KEYS.
* ``wwn``: ``wwn:`` and the logical unit's designator from the Device Identification VPD
  page (83h, SPC-4 §7.8.6), read with INQUIRY through SG_IO.  For a SCSI LUN that each host
  sees under its own ``/dev/sdX``: the designator is the LUN's own, the same everywhere.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import threading
from typing import Final
from typing import TypeVar

from qompr.managers.emulated._identity import lu_identity

__all__ = [
    "DesignatorError",
    "LuIdRule",
    "LuNamer",
    "lu_path_identity",
    "lu_wwn_identity",
    "wwn_from_vpd83",
]

_INQUIRY_VPD83: Final = bytes((0x12, 0x01, 0x83, 0x10, 0x00, 0x00))  # 4096-byte allocation
_INQUIRY_TIMEOUT_MS: Final = 5000
#: Names kept per file or device (bounded: a client can open many files).
_KEEP: Final = 4096
_K = TypeVar("_K", int, tuple[int, int])
# Designator types (SPC-4 §7.8.6, the Device Identification VPD page), best first: a worldwide
# name, then what is unique only with its vendor.  Only designators of the logical unit itself
# (ASSOCIATION 00b) count.
_PREFERENCE: Final = {
    0x3: "naa",  # NAA (IEEE company id based): what Linux shows as /dev/disk/by-id/wwn-0x...
    0x2: "eui",  # EUI-64 based
    0xA: "uuid",  # UUID
    0x8: "name",  # SCSI name string
    0x1: "t10",  # T10 vendor ID based
}


class LuIdRule(enum.Enum):
    """The ``lu-id`` property's values."""

    INODE = "inode"
    PATH = "path"
    WWN = "wwn"


class DesignatorError(ValueError):
    """A Device Identification VPD page without a usable logical unit designator."""


def lu_path_identity(fd: int) -> str:
    """``path:`` and the canonical path of the file *fd* refers to.

    :raises OSError: if *fd* is not open, has no path (a pipe, a socket, a deleted file), or
        its path now names another file.
    """
    st = os.fstat(fd)
    path = os.readlink(f"/proc/self/fd/{fd}")
    if not path.startswith("/"):
        raise OSError(errno.ENOENT, f"fd {fd} has no path ({path})")
    path = os.path.realpath(path)
    try:
        now = os.stat(path)
    except OSError as exc:
        raise OSError(exc.errno, f"fd {fd}: its path {path} is gone") from exc
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        raise OSError(errno.ESTALE, f"fd {fd}: its path {path} names another file now")
    return f"path:{path}"


def wwn_from_vpd83(page: bytes) -> str:
    """The logical unit's name from a Device Identification VPD page (83h).

    :returns: ``naa.HEX``, ``eui.HEX``, ``uuid.HEX`` (binary designators in hex) or
        ``name.TEXT``, ``t10.TEXT`` (ASCII/UTF-8 designators, trailing NULs and spaces
        dropped): the best designator of the logical unit (ASSOCIATION 00b).
    :raises DesignatorError: if the page is not page 83h or names no logical unit.
    """
    if len(page) < 4 or page[1] != 0x83:
        raise DesignatorError("not a Device Identification VPD page (83h)")
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    best: tuple[int, str] | None = None
    order = list(_PREFERENCE)
    offset = 4
    while offset + 4 <= end:
        code_set = page[offset] & 0x0F
        association = (page[offset + 1] >> 4) & 0x03
        kind = page[offset + 1] & 0x0F
        length = page[offset + 3]
        value = page[offset + 4 : offset + 4 + length]
        offset += 4 + length
        if len(value) < length or association != 0 or kind not in _PREFERENCE or not value:
            continue
        if code_set == 1:  # binary
            text = value.hex()
        elif code_set in (2, 3):  # ASCII, UTF-8
            text = value.decode("utf-8", "replace").rstrip("\0 ")
        else:
            continue
        if not text:
            continue
        rank = order.index(kind)
        if best is None or rank < best[0]:
            best = (rank, f"{_PREFERENCE[kind]}.{text}")
    if best is None:
        raise DesignatorError("the Device Identification VPD page names no logical unit")
    return best[1]


def lu_wwn_identity(fd: int) -> str:
    """``wwn:`` and the designator of the SCSI logical unit *fd* refers to.

    :raises OSError: if INQUIRY fails (not a SCSI device, an error) or the page names no
        logical unit.
    """
    from qompr.linux.sgio import Direction
    from qompr.linux.sgio import sg_io

    out = sg_io(
        fd,
        _INQUIRY_VPD83,
        Direction.FROM_DEV,
        data_in_size=4096,
        timeout_ms=_INQUIRY_TIMEOUT_MS,
    )
    if out.errno:
        raise OSError(out.errno, f"fd {fd}: INQUIRY VPD 83h: {os.strerror(out.errno)}")
    if out.status or out.host_status or (out.driver_status & 0x07):
        raise OSError(
            errno.EIO,
            f"fd {fd}: INQUIRY VPD 83h failed (status {out.status:#x}, host "
            f"{out.host_status:#x}, driver {out.driver_status:#x})",
        )
    try:
        return "wwn:" + wwn_from_vpd83(out.data[: len(out.data) - out.resid])
    except DesignatorError as exc:
        raise OSError(errno.ENODEV, f"fd {fd}: {exc}") from exc


class LuNamer:
    """Names the logical unit behind an fd by one :class:`LuIdRule`.

    ``wwn`` answers are kept per device number (one INQUIRY per device, not per command).
    ``path`` answers are kept per file (``st_dev``, ``st_ino``) and checked on every later
    command with one ``stat`` of the kept path: still that file, the name stands; renamed,
    deleted, or the inode number reused by another file, it is resolved again (so the name
    is always a path that names the file now, as without the cache).
    """

    def __init__(self, rule: LuIdRule | str) -> None:
        self.rule = LuIdRule(rule)
        self._wwns: dict[int, str] = {}
        self._paths: dict[tuple[int, int], str] = {}
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> str:
        """The logical unit name of *fd*.

        :raises OSError: if *fd* cannot be named by the rule.
        """
        rule = self.rule
        if rule is LuIdRule.INODE:
            return lu_identity(fd)
        st = os.fstat(fd)
        if rule is LuIdRule.PATH:
            return self._path(fd, st)
        if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise OSError(errno.ENOTBLK, f"fd {fd} is not a device: lu-id=wwn needs a SCSI LUN")
        with self._lock:
            known = self._wwns.get(st.st_rdev)
        if known is not None:
            return known
        return self._keep(self._wwns, st.st_rdev, lu_wwn_identity(fd))

    def _path(self, fd: int, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino)
        with self._lock:
            known = self._paths.get(key)
        if known is not None:
            try:
                now = os.stat(known[5:])
            except OSError:
                pass
            else:
                if (now.st_dev, now.st_ino) == key:
                    return known
        return self._keep(self._paths, key, lu_path_identity(fd))

    def _keep(self, names: dict[_K, str], key: _K, name: str) -> str:
        """Remember *name* under *key*; bounded: a client can open many files and devices."""
        with self._lock:
            if len(names) >= _KEEP:
                names.clear()
            names[key] = name
        return name
