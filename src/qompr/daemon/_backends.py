# SPDX-License-Identifier: MIT
"""What executes the commands ``qompr-pr-helper`` receives.

* :class:`DefaultBackend` — qemu-pr-helper's own choice, made per command: a dm-multipath fd
  goes to ``pr-manager-multipath`` (libmpathpersist, so the REGISTER reaches every path and
  multipathd learns the key), any other fd gets ``SG_IO`` (:func:`pr_helper_sgio`, the same
  executor ``pr-manager-direct`` uses).  Without device-mapper or libmpathpersist it is the
  executor of a qemu-pr-helper built without multipath (as Debian's is): ``SG_IO`` for all.
* :class:`SgIoBackend` — ``SG_IO`` for every fd, never asking device-mapper.
* :class:`ManagerBackend` — any ``pr-manager`` object (``--backend OBJECT-STRING``).

Each may say, per request, that the command cannot block (``cannot_block``), and the server
then runs it on its event loop: SG_IO on an fd that is not a device fails at once
(:func:`sgio_cannot_block`), and a manager may promise it (``pr-manager-emulated`` in memory).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING
from typing import Protocol

from qompr.errors import ConnectError
from qompr.linux import PeerCredentials
from qompr.linux.devmapper import is_multipath
from qompr.linux.devmapper import open_control
from qompr.linux.fdkind import sgio_cannot_block
from qompr.managers import ClientIdentity
from qompr.managers import PRManager
from qompr.managers._sgio import pr_helper_sgio
from qompr.protocol import HelperRequest
from qompr.scsi import Nexus
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    # Imported by probe() only where device-mapper is there: not every daemon start-up
    # should pay for the manager packages.
    from qompr.managers.multipath import PRManagerMultipath

__all__ = ["Backend", "DefaultBackend", "ManagerBackend", "SgIoBackend", "sgio_cannot_block"]

log = logging.getLogger("qompr.daemon")


class Backend(Protocol):
    """What executes a request: SG_IO on the fd (default) or a ``pr-manager`` object."""

    def __call__(self, request: HelperRequest, nexus: Nexus | None) -> tuple[int, bytes, bytes]:
        """Run *request*; return (status, sense, data-in).  Must not close the fd."""
        ...

    def cannot_block(self, request: HelperRequest) -> bool:
        """Where True, the server runs the command on its event loop instead of a worker
        thread (no thread hop), so the backend must be sure the command finishes at once."""
        ...

    def nexus_for(self, peer: PeerCredentials) -> Nexus | None:
        """The I_T nexus of a newly accepted client's commands (asked once per connection);
        ``None``: the device knows its own."""
        ...


class SgIoBackend:
    """``SG_IO`` on the passed fd, whatever it is (qemu-pr-helper built without multipath)."""

    def __call__(self, request: HelperRequest, nexus: Nexus | None) -> tuple[int, bytes, bytes]:
        result = pr_helper_sgio(request.fd, request.cdb, request.data)
        return int(result.status), result.sense, result.data

    def cannot_block(self, request: HelperRequest) -> bool:
        """The ioctl fails at once on this fd (not a device: see :func:`sgio_cannot_block`);
        a dm-multipath fd is a block device, so :class:`DefaultBackend` keeps this too."""
        return sgio_cannot_block(request.fd)

    def nexus_for(self, peer: PeerCredentials) -> Nexus | None:
        """``None``: a real device sees the host's own initiator."""
        return None

    def __repr__(self) -> str:
        return "SgIoBackend()"


class DefaultBackend(SgIoBackend):
    """pr-manager-multipath for dm-multipath fds, ``SG_IO`` for the rest (qemu-pr-helper).

    :param multipath: the manager for dm-multipath fds; ``None`` sends every fd to SG_IO.
    :param control: an open fd of /dev/mapper/control for the ``is_mpath`` test (required
        with *multipath*; the backend owns it, see :meth:`close`).

    Fixed here: qemu-pr-helper exits when the DM_TABLE_STATUS test fails with anything but
    ENXIO (qemu-pr-facts.md §1.10); this backend answers that one command with LOGICAL UNIT
    COMMUNICATION FAILURE, as the multipath path answers the library's own failures.
    """

    def __init__(
        self, multipath: PRManagerMultipath | None = None, control: int | None = None
    ) -> None:
        if multipath is not None and control is None:
            raise ValueError("a multipath manager needs the device-mapper control fd")
        self.multipath = multipath
        self._control = control

    @classmethod
    def probe(cls, *, verbose: int = 1, noisy: bool = False) -> DefaultBackend:
        """Set up at start-up, before the privilege drop, as qemu-pr-helper does.

        Opens /dev/mapper/control (kept open: it is ``0600 root``, a helper running as
        ``-u nobody`` could not open it later) and initialises libmpathpersist (multipathd
        need not be running yet: the library works without it, and multipathd may start
        later).  Whatever is missing leaves SG_IO for every fd, and says why in the log.
        """
        from qompr.managers.multipath import PRManagerMultipath
        from qompr.plugins import get_plugin_manager
        from qompr.plugins import new_tree

        try:
            control = open_control()
        except ConnectError as exc:
            log.debug("no multipath support: %s", exc.message)
            return cls()
        try:
            # Only qompr's own types: the root daemon never imports installed plugins.
            tree = new_tree(get_plugin_manager(load_entrypoints=False, trace=False))
            manager = tree.object_add(
                "pr-manager-multipath",
                "qompr-pr-helper-multipath",
                require_multipathd=False,
                verbose=verbose,
                noisy=noisy,
            )
        except ConnectError as exc:
            os.close(control)
            # A host with device-mapper (LVM) but no multipath-tools: there are no
            # multipath maps to serve, so this is not worth a warning.
            log.info("no multipath support: %s", exc.message)
            return cls()
        assert isinstance(manager, PRManagerMultipath)
        return cls(manager, control)

    @property
    def needs_sys_admin(self) -> bool:
        """Whether the privilege drop must keep CAP_SYS_ADMIN (device-mapper ioctls)."""
        return self.multipath is not None

    def __call__(self, request: HelperRequest, nexus: Nexus | None) -> tuple[int, bytes, bytes]:
        if self.multipath is not None:
            assert self._control is not None
            try:
                mpath = is_multipath(request.fd, control=self._control)
            except ConnectError as exc:
                log.warning("cannot tell whether the device is multipath: %s", exc.message)
                sense = SenseCode.LUN_COMM_FAILURE.to_bytes()
                return int(ScsiStatus.CHECK_CONDITION), sense, b""
            if mpath:
                result = self.multipath.execute(request.fd, request.cdb, request.data)
                return int(result.status), result.sense, result.data
        return super().__call__(request, nexus)

    def close(self) -> None:
        """Close the device-mapper control fd."""
        control, self._control = self._control, None
        if control is not None:
            with contextlib.suppress(OSError):
                os.close(control)

    def __repr__(self) -> str:
        return f"DefaultBackend(multipath={self.multipath is not None})"


class ManagerBackend:
    """Any ``pr-manager`` object as the executor (``--backend OBJECT-STRING``).

    Everything the server asks goes through the manager's declared contract
    (:class:`~qompr.managers.PRManager`): :meth:`~qompr.managers.PRManager.nexus_for_client`
    once per connection, :meth:`~qompr.managers.PRManager.cannot_block` per request.

    :param manager: the manager.
    """

    def __init__(self, manager: PRManager) -> None:
        self.manager = manager

    def nexus_for(self, peer: PeerCredentials) -> Nexus | None:
        """The nexus for a newly accepted connection, or None (the device's own)."""
        return self.manager.nexus_for_client(ClientIdentity(peer.pid, peer.uid, peer.gid))

    def __call__(self, request: HelperRequest, nexus: Nexus | None) -> tuple[int, bytes, bytes]:
        result = self.manager.execute(request.fd, request.cdb, request.data, nexus=nexus)
        return int(result.status), result.sense, result.data

    def cannot_block(self, request: HelperRequest) -> bool:
        """What the manager says for this fd (e.g. ``pr-manager-emulated`` in memory)."""
        return self.manager.cannot_block(request.fd)

    def __repr__(self) -> str:
        return f"ManagerBackend({self.manager!r})"
