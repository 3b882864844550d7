# SPDX-License-Identifier: MIT
"""Dropping privileges as qemu-pr-helper does with libcap-ng, through ctypes.

qemu-pr-helper (after listening, daemonizing and writing its pid file) clears every
capability, keeps ``CAP_SYS_RAWIO`` (plus ``CAP_SYS_ADMIN`` with multipath) in the effective
and permitted sets, and calls ``capng_change_id(uid, gid, CAPNG_DROP_SUPP_GRP |
CAPNG_CLEAR_BOUNDING)`` (docs/reference/qemu-pr-helper.md §11).  :func:`drop_privileges` does the
same steps with raw system calls: keep-caps across the uid change, ``setresgid``, ``setgroups(0)``,
clear the bounding set, ``setresuid``, then ``capset``.
"""

from __future__ import annotations

import ctypes
import enum
import os
from collections.abc import Iterable
from typing import Final

__all__ = [
    "Capability",
    "capabilities",
    "drop_privileges",
    "last_cap",
    "set_parent_death_signal",
]


class Capability(enum.IntEnum):
    """The capabilities this module names (``<linux/capability.h>``)."""

    CAP_SETGID = 6
    CAP_SETUID = 7
    CAP_SETPCAP = 8
    CAP_SYS_RAWIO = 17
    CAP_SYS_ADMIN = 21


_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
_PR_CAPBSET_DROP: Final = 24
_PR_SET_KEEPCAPS: Final = 8
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_PR_SET_PDEATHSIG: Final = 1


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int
_capset = _libc.capset
_capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_capset.restype = ctypes.c_int
_capget = _libc.capget
_capget.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_capget.restype = ctypes.c_int
_setgroups = _libc.setgroups
_setgroups.argtypes = (ctypes.c_size_t, ctypes.c_void_p)
_setgroups.restype = ctypes.c_int


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def last_cap() -> int:
    """The highest capability number the kernel knows (``/proc/sys/kernel/cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _mask(caps: Iterable[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << int(cap)
    return mask


def capabilities() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability masks (``capget``)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_capget(ctypes.byref(header), data), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    prm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, prm, inh


def _capset_masks(effective: int, permitted: int, inheritable: int = 0) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_capset(ctypes.byref(header), data), "capset")


def drop_privileges(
    keep: Iterable[Capability] = (Capability.CAP_SYS_RAWIO,),
    *,
    uid: int | None = None,
    gid: int | None = None,
) -> None:
    """Keep only *keep* (effective and permitted), switch ids, drop groups and bounding set.

    Must run before any other thread starts: ``capset`` and the id calls act on the calling
    thread (glibc broadcasts the id changes, but not ``capset``).

    :param keep: the capabilities to keep.
    :param uid: the user to switch to (``None`` or 0xFFFFFFFF: keep the current one).
    :param gid: the group to switch to (``None`` or 0xFFFFFFFF: keep the current one).
    :raises OSError: a step failed (typically EPERM when not privileged); the process may be
        half-dropped and should exit, as qemu-pr-helper does.
    """
    keep_mask = _mask(keep)
    change_uid = uid is not None and uid != 0xFFFFFFFF
    change_gid = gid is not None and gid != 0xFFFFFFFF
    if change_uid:
        _check(_prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    if change_gid:
        assert gid is not None
        os.setresgid(gid, gid, gid)
    # CAPNG_DROP_SUPP_GRP
    _check(_setgroups(0, None), "setgroups")
    # CAPNG_CLEAR_BOUNDING: needs CAP_SETPCAP, so before the capabilities go.
    for cap in range(last_cap() + 1):
        if _prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            err = ctypes.get_errno()
            if err != 22:  # EINVAL: a capability this kernel does not have
                raise OSError(err, f"prctl(PR_CAPBSET_DROP): {os.strerror(err)}")
    if change_uid:
        assert uid is not None
        os.setresuid(uid, uid, uid)
        _check(_prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    _capset_masks(keep_mask, keep_mask, 0)
    # Ambient capabilities would survive an execve; libcap-ng leaves none either.
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def set_parent_death_signal(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG)``: get *signum* when the parent process exits.

    :raises OSError: if the call fails.
    """
    _check(_prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
