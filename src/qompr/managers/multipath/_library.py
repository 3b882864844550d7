# SPDX-License-Identifier: MIT
"""The libmpathpersist backend: a ctypes binding loaded on first use, and its interface.

:class:`MpathPersistApi` is what ``pr-manager-multipath`` calls: the library's three calls
(``libmpathpersist_init``, ``mpath_persistent_reserve_in``, ``mpath_persistent_reserve_out``)
and a check that multipathd answers.  :class:`LibMpathPersist` implements it with the real
``libmpathpersist.so.0``; unit tests inject a fake instead.

Nothing is loaded when qompr is imported: the shared object is opened, and
``libmpathpersist_init()`` called, the first time :meth:`LibMpathPersist.init` runs (when a
``pr-manager-multipath`` object is completed).  That happens once per process, because the
library cannot be initialised again after ``libmpathpersist_exit()``, which runs at exit.

Only the API of multipath-tools 0.8.6 and later (``libmpathpersist_init``) is supported; the
older ``mpath_lib_init`` API makes the application provide libmultipath's globals (``udev``,
``logsink``, ``get_multipath_config``) as qemu-pr-helper does, which ctypes cannot do.

The library is not thread-safe (it keeps its configuration and path vectors in globals), so
every call is made under one process-wide lock.  qemu-pr-helper is serialised the same way:
it calls the library from coroutines of its single main thread.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import threading
from typing import Protocol

from qompr.errors import ConnectError
from qompr.managers.multipath._abi import PrinResp
from qompr.managers.multipath._abi import ProutParamDescriptor
from qompr.managers.multipath._abi import ProutParamStorage
from qompr.managers.multipath._multipathd import connect_multipathd
from qompr.managers.multipath._translate import DATA_SIZE

__all__ = ["LIBRARY_NAME", "LibMpathPersist", "MpathPersistApi", "load_library"]

log = logging.getLogger(__name__)

#: The shared object's soname (Debian: package multipath-tools, /lib/libmpathpersist.so.0).
LIBRARY_NAME = "libmpathpersist.so.0"
_HINT = "Install multipath-tools (Debian/Ubuntu: apt-get install multipath-tools; 0.8.6 or later)"


class MpathPersistApi(Protocol):
    """What ``pr-manager-multipath`` needs from libmpathpersist (and from multipathd)."""

    def init(self) -> None:
        """Load and initialise the library (idempotent).

        :raises ConnectError: if the library is missing, too old, or fails to initialise.
        """

    def check_multipathd(self) -> str:
        """Check that multipathd answers.

        :returns: the socket address that answered.
        :raises ConnectError: if it does not.
        """

    def reserve_in(
        self, fd: int, service_action: int, resp: PrinResp, *, noisy: bool, verbose: int
    ) -> int:
        """``mpath_persistent_reserve_in(fd, service_action, &resp, noisy, verbose)``."""

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
        """``mpath_persistent_reserve_out(fd, sa, scope, type, &param, noisy, verbose)``."""


class _Loaded:
    """The process-wide library state (one per process, as the library's globals are)."""

    lock = threading.Lock()
    cdll: ctypes.CDLL | None = None


def load_library(name: str = LIBRARY_NAME) -> ctypes.CDLL:
    """Open libmpathpersist and declare its functions (no initialisation).

    :raises ConnectError: if the library cannot be opened or lacks ``libmpathpersist_init``.
    """
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise ConnectError(f"Cannot load {name}: {exc}", exc, hint=_HINT) from None
    try:
        init = lib.libmpathpersist_init
    except AttributeError as exc:
        raise ConnectError(
            f"{name} has no libmpathpersist_init (multipath-tools older than 0.8.6)",
            exc,
            hint=_HINT,
        ) from None
    init.argtypes = []
    init.restype = ctypes.c_int
    lib.libmpathpersist_exit.argtypes = []
    lib.libmpathpersist_exit.restype = ctypes.c_int
    lib.mpath_persistent_reserve_in.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(PrinResp),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.mpath_persistent_reserve_in.restype = ctypes.c_int
    lib.mpath_persistent_reserve_out.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ProutParamDescriptor),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.mpath_persistent_reserve_out.restype = ctypes.c_int
    return lib


class LibMpathPersist:
    """:class:`MpathPersistApi` on the real ``libmpathpersist.so.0``."""

    def __init__(self, name: str = LIBRARY_NAME) -> None:
        self.name = name

    def _lib(self) -> ctypes.CDLL:
        lib = _Loaded.cdll
        if lib is None:
            raise ConnectError(f"{self.name} is not initialised")
        return lib

    def init(self) -> None:
        with _Loaded.lock:
            if _Loaded.cdll is not None:
                return
            lib = load_library(self.name)
            # qemu-pr-helper sets mpath_mx_alloc_len to its buffer size: PR IN asks the
            # device for up to 8192 bytes.
            ctypes.c_uint.in_dll(lib, "mpath_mx_alloc_len").value = DATA_SIZE
            rc = lib.libmpathpersist_init()
            if rc != 0:
                raise ConnectError(
                    f"libmpathpersist_init() failed ({rc}): cannot read the multipath "
                    "configuration or set up udev",
                    hint="Check /etc/multipath.conf (multipath -t shows what it reads)",
                )
            _Loaded.cdll = lib
            atexit.register(_exit_library, lib)
            log.debug("%s initialised", self.name)

    def check_multipathd(self) -> str:
        sock, address = connect_multipathd()
        sock.close()
        return address

    def reserve_in(
        self, fd: int, service_action: int, resp: PrinResp, *, noisy: bool, verbose: int
    ) -> int:
        lib = self._lib()
        with _Loaded.lock:
            rc: int = lib.mpath_persistent_reserve_in(
                fd, service_action, ctypes.byref(resp), int(noisy), verbose
            )
        return rc

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
        lib = self._lib()
        descriptor = ctypes.cast(ctypes.pointer(param), ctypes.POINTER(ProutParamDescriptor))
        with _Loaded.lock:
            rc: int = lib.mpath_persistent_reserve_out(
                fd, service_action, scope, type, descriptor, int(noisy), verbose
            )
        return rc


def _exit_library(lib: ctypes.CDLL) -> None:
    with _Loaded.lock:
        lib.libmpathpersist_exit()
