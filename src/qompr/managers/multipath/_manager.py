# SPDX-License-Identifier: MIT
"""``pr-manager-multipath``: PR commands on dm-multipath devices through libmpathpersist.

A reservation on a multipath device must hold on every path (I_T nexus): REGISTER has to
register the key through each path, and multipathd has to register it again on paths that
appear later.  libmpathpersist does the former and tells multipathd about the latter; this
manager translates the CDBs to its calls and the answers back exactly as qemu-pr-helper's
multipath path does (see :mod:`._translate`), without that path's defects.

Example::

    -object pr-manager-multipath,id=mp0,verbose=2

Creation loads ``libmpathpersist.so.0`` and checks that multipathd answers; either failing
is a :class:`~qompr.errors.ConnectError` with a hint, so a misconfigured host is found when
the object is made, not at the first reservation.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from typing import final

from qompr._compat import override
from qompr.errors import ConnectError
from qompr.errors import StateError
from qompr.linux.caps import Capability
from qompr.managers._base import PR_IN
from qompr.managers._base import PR_OUT
from qompr.managers._base import PRManager
from qompr.managers.multipath._abi import PrinResp
from qompr.managers.multipath._library import LibMpathPersist
from qompr.managers.multipath._library import MpathPersistApi
from qompr.managers.multipath._sgio import send_test_unit_ready
from qompr.managers.multipath._translate import PrInRequest
from qompr.managers.multipath._translate import PrOutRequest
from qompr.managers.multipath._translate import decode_pr_in
from qompr.managers.multipath._translate import decode_pr_out
from qompr.managers.multipath._translate import encode_pr_in_answer
from qompr.managers.multipath._translate import reconstruct_answer
from qompr.qom import BoolProperty
from qompr.qom import IntProperty
from qompr.qom import LifeState
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

__all__ = ["PRManagerMultipath"]

log = logging.getLogger(__name__)


def _is_read_only(fd: int) -> bool:
    """qemu-pr-helper's ``fcntl(F_GETFL) & O_ACCMODE == O_RDONLY`` (an error counts as no)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    except OSError:
        return False


@final
class PRManagerMultipath(PRManager, qom_type="pr-manager-multipath"):
    """Persistent reservations on dm-multipath devices, through libmpathpersist.

    :attr:`library` is the backend; ``None`` (the default) means the real
    ``libmpathpersist.so.0``.  Tests set it to a fake before the object is completed.
    :attr:`tur_sender` sends the TEST UNIT READY of the sense reconstruction and of
    :meth:`test_unit_ready` (SG_IO on the map, which passes it to a path); tests replace it.
    """

    verbose = IntProperty(
        minimum=0,
        maximum=4,
        default=1,
        description="libmpathpersist verbosity, 0-4 (qemu-pr-helper passes 1, or up to 3 with -v)",
    )
    noisy = BoolProperty(
        default=False,
        description="let libmpathpersist print the SCSI commands it sends "
        "(qemu-pr-helper: with -vv)",
    )
    require_multipathd = BoolProperty(
        default=True,
        description="refuse creation while multipathd does not answer "
        "(qemu-pr-helper does not check; without multipathd, paths that appear later "
        "are not registered)",
    )

    @override
    def instance_init(self) -> None:
        #: The libmpathpersist backend; ``None`` picks the real library at completion.
        self.library: MpathPersistApi | None = None
        #: Sends TEST UNIT READY on an fd (SG_IO); replaceable for tests.
        self.tur_sender: Callable[[int], ScsiResult] = send_test_unit_ready
        self._backend: MpathPersistApi | None = None

    @override
    def complete(self) -> None:
        """Load and initialise libmpathpersist, and check that multipathd answers.

        :raises ConnectError: if the library is missing or too old, or multipathd is not
            reachable and :attr:`require_multipathd` is on (the object is not created).
        """
        backend: MpathPersistApi = self.library if self.library is not None else LibMpathPersist()
        backend.init()
        try:
            address = backend.check_multipathd()
        except ConnectError as exc:
            if self.require_multipathd:
                raise
            log.warning("%s: %s", self.id, exc)
        else:
            log.debug("%s: multipathd answers on %s", self.id, address)
        self._backend = backend

    @override
    def is_connected(self) -> bool:
        """Whether multipathd answers now (``query-pr-managers``)."""
        if self._backend is None:
            return False
        try:
            self._backend.check_multipathd()
        except ConnectError:
            return False
        return True

    @override
    def required_capabilities(self) -> frozenset[Capability]:
        """CAP_SYS_ADMIN: libmpathpersist issues device-mapper ioctls (qemu-pr-helper keeps
        it when built with multipath)."""
        return frozenset({Capability.CAP_SYS_ADMIN})

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY through SG_IO on the map (*nexus* is ignored: the paths' own)."""
        return self.tur_sender(fd)

    def _ready(self) -> MpathPersistApi:
        if self._backend is None:
            raise StateError(
                f"pr-manager-multipath '{self.id}' is not complete",
                state=self.life_state.value,
                required=LifeState.COMPLETED.value,
            )
        return self._backend

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """Execute PR IN / PR OUT on the multipath device *fd* (qemu-pr-helper's answers).

        :param fd: an fd of the dm-multipath device (``/dev/mapper/mpatha``, ``/dev/dm-N``).
        :param cdb: the CDB.
        :param data: the PR OUT parameter list.
        :param nexus: ignored: libmpathpersist acts on every path of the map.
        :returns: status, sense and data-in; library failures are answers, never exceptions.
        """
        backend = self._ready()
        opcode = cdb[0] if cdb else -1
        if opcode == PR_IN:
            request = decode_pr_in(cdb)
            if isinstance(request, ScsiResult):
                return request
            return self._pr_in(backend, fd, request)
        if opcode == PR_OUT:
            # do_pr_out refuses PR OUT on a read-only fd before anything else.
            if _is_read_only(fd):
                return ScsiResult.check(SenseCode.INVALID_OPCODE)
            out = decode_pr_out(cdb, data)
            if isinstance(out, ScsiResult):
                return out
            return self._pr_out(backend, fd, out)
        return ScsiResult.check(SenseCode.INVALID_OPCODE)

    def _pr_in(self, backend: MpathPersistApi, fd: int, request: PrInRequest) -> ScsiResult:
        resp = PrinResp()
        rc = backend.reserve_in(
            fd, request.service_action, resp, noisy=self.noisy, verbose=self.verbose
        )
        log.debug("%s: PR IN %s on fd %d: %d", self.id, request.service_action.name, fd, rc)
        answer = reconstruct_answer(rc, lambda: self.tur_sender(fd))
        if not answer.ok:
            return answer
        return ScsiResult.good(encode_pr_in_answer(request, resp))

    def _pr_out(self, backend: MpathPersistApi, fd: int, request: PrOutRequest) -> ScsiResult:
        param, tids = request.to_struct()
        rc = backend.reserve_out(
            fd,
            request.service_action,
            scope=request.scope,
            type=request.type,
            param=param,
            noisy=self.noisy,
            verbose=self.verbose,
        )
        del tids  # the library is done with the TransportID structs
        log.debug("%s: PR OUT %s on fd %d: %d", self.id, request.service_action.name, fd, rc)
        return reconstruct_answer(rc, lambda: self.tur_sender(fd))
