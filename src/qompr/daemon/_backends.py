# SPDX-License-Identifier: MIT
"""What executes the commands ``qompr-pr-helper`` receives: always a ``pr-manager``.

The server knows one executor abstraction, :class:`~qompr.managers.PRManager`, and asks it only
what the manager contract declares (``execute``, ``cannot_block``, ``nexus_for_client``,
``required_capabilities``, ``test_unit_ready``).  Without ``--backend`` it is one of these two:

* :class:`PRHelperSgIo` — ``SG_IO`` on the passed fd as qemu-pr-helper 7.2 sends it
  (:func:`qompr.managers._sgio.pr_helper_sgio`: its errno table, all 96 sense bytes, a 1 ms
  timeout, on the calling thread): what a qemu-pr-helper built without multipath does, as
  Debian's is;
* :class:`PRHelperDefault` — qemu-pr-helper's own choice, made per command: a dm-multipath fd
  goes to ``pr-manager-multipath`` (libmpathpersist, so the REGISTER reaches every path and
  multipathd learns the key), any other fd gets the ``SG_IO`` above.  :func:`default_executor`
  sets it up where device-mapper and libmpathpersist are, and gives a :class:`PRHelperSgIo`
  where either is missing.

With ``--backend OBJECT``, the manager that string creates is the executor itself.

These two types live in a tree of their own (:func:`executor_tree`), not among the types
``-object`` offers: they are qemu-pr-helper's behaviour, not a manager a user would create.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from typing import TYPE_CHECKING
from typing import TypeVar

from qompr._compat import override
from qompr.errors import ConnectError
from qompr.linux.devmapper import is_multipath
from qompr.linux.devmapper import open_control
from qompr.linux.fdkind import sgio_cannot_block
from qompr.linux.sgio import PR_TIMEOUT_MS
from qompr.linux.sgio import Direction
from qompr.linux.sgio import sg_io
from qompr.managers import TEST_UNIT_READY_CDB
from qompr.managers import PRManager
from qompr.managers._sgio import map_outcome
from qompr.managers._sgio import pr_helper_sgio
from qompr.qom import ObjectTree
from qompr.qom import TypeRegistry
from qompr.scsi import HELPER_CDB_SIZE
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    # PRManagerMultipath is imported by default_executor() only where device-mapper is
    # there: not every daemon start-up should pay for the manager and its library bindings.
    from qompr.linux.caps import Capability
    from qompr.managers.multipath import PRManagerMultipath
    from qompr.scsi import Nexus

__all__ = [
    "PRHelperDefault",
    "PRHelperSgIo",
    "default_executor",
    "executor_tree",
    "sgio_executor",
]

log = logging.getLogger("qompr.daemon")


class PRHelperSgIo(PRManager, qom_type="qompr-pr-helper-sgio"):
    """``SG_IO`` on the passed fd, whatever it is, exactly as qemu-pr-helper 7.2 sends it."""

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """One PR command (*nexus* is ignored: a real device knows its own)."""
        if len(cdb) != HELPER_CDB_SIZE:
            cdb = bytes(cdb[:HELPER_CDB_SIZE]).ljust(HELPER_CDB_SIZE, b"\0")
        return pr_helper_sgio(fd, cdb, data)

    @override
    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        """True where the ioctl fails at once (a pipe, a socket, /dev/null, a local file):
        the server then answers on its event loop, as fast as qemu-pr-helper would fail."""
        return sgio_cannot_block(fd)

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY through ``SG_IO``, sent and mapped as the PR commands are."""
        outcome = sg_io(
            fd,
            TEST_UNIT_READY_CDB,
            Direction.NONE,
            cmd_len=len(TEST_UNIT_READY_CDB),
            timeout_ms=PR_TIMEOUT_MS,
        )
        status, sense, _ = map_outcome(outcome, 0, qemu_7_2=True)
        return ScsiResult(status, sense)


class PRHelperDefault(PRHelperSgIo, qom_type="qompr-pr-helper-default"):
    """``pr-manager-multipath`` for dm-multipath fds, ``SG_IO`` for the rest (qemu-pr-helper
    built with multipath).  Made by :func:`default_executor`.

    Fixed here: qemu-pr-helper exits when the DM_TABLE_STATUS test fails with anything but
    ENXIO (docs/reference); this executor answers that one command with LOGICAL UNIT
    COMMUNICATION FAILURE, as the multipath path answers the library's own failures.
    """

    @override
    def instance_init(self) -> None:
        self.multipath: PRManagerMultipath | None = None
        self._control: int | None = None

    def attach(self, multipath: PRManagerMultipath, control: int) -> None:
        """Send dm-multipath fds to *multipath*; *control* is an open /dev/mapper/control
        for the ``is_mpath`` test (owned from now on: see :meth:`close`)."""
        if control < 0:
            raise ValueError("a multipath manager needs the device-mapper control fd")
        self.multipath = multipath
        self._control = control

    def _multipath_for(self, fd: int) -> PRManagerMultipath | ScsiResult | None:
        """The multipath manager if *fd* is a map, the answer if that cannot be told."""
        if self.multipath is None or self._control is None:
            return None
        try:
            mpath = is_multipath(fd, control=self._control)
        except ConnectError as exc:
            log.warning("cannot tell whether the device is multipath: %s", exc.message)
            return ScsiResult.check(SenseCode.LUN_COMM_FAILURE)
        return self.multipath if mpath else None

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """libmpathpersist for a map, SG_IO for the rest."""
        target = self._multipath_for(fd)
        if isinstance(target, ScsiResult):
            return target
        if target is not None:
            return target.execute(fd, cdb, data)
        return super().run(fd, cdb, data)

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """Through the multipath manager for a map (one of its paths answers), else SG_IO."""
        target = self._multipath_for(fd)
        if isinstance(target, ScsiResult):
            return target
        if target is not None:
            return target.test_unit_ready(fd)
        return super().test_unit_ready(fd)

    @override
    def required_capabilities(self) -> frozenset[Capability]:
        """CAP_SYS_ADMIN while multipath support is on (device-mapper ioctls)."""
        if self.multipath is None:
            return frozenset()
        return self.multipath.required_capabilities()

    def close(self) -> None:
        """Close the device-mapper control fd."""
        control, self._control = self._control, None
        if control is not None:
            with contextlib.suppress(OSError):
                os.close(control)

    def instance_finalize(self) -> None:
        self.close()


def executor_tree() -> ObjectTree:
    """A tree that knows ``pr-manager`` and the two executor types, and nothing else: no
    plugin is asked (the root daemon never imports what happens to be installed)."""
    types = TypeRegistry()
    for cls in (PRManager, PRHelperSgIo, PRHelperDefault):
        types.register(cls)
    return ObjectTree(types)


def sgio_executor() -> PRHelperSgIo:
    """qemu-pr-helper's executor without multipath support: SG_IO for every fd."""
    return _new(executor_tree(), PRHelperSgIo)


def default_executor(*, verbose: int = 1, noisy: bool = False) -> PRHelperSgIo:
    """qemu-pr-helper's executor, set up at start-up before the privilege drop, as it does.

    Opens /dev/mapper/control (kept open: it is ``0600 root``, a helper running as
    ``-u nobody`` could not open it later) and initialises libmpathpersist (multipathd need
    not be running yet: the library works without it, and multipathd may start later).
    Whatever is missing leaves SG_IO for every fd (a :class:`PRHelperSgIo`), and the log says
    why.

    :param verbose: libmpathpersist's verbosity.
    :param noisy: let libmpathpersist print (its CDBs from verbosity 3 on).
    """
    tree = executor_tree()
    try:
        control = open_control()
    except ConnectError as exc:
        log.debug("no multipath support: %s", exc.message)
        return _new(tree, PRHelperSgIo)
    missing = _multipath_library_missing()
    if missing is not None:
        os.close(control)
        # A host with device-mapper (LVM) but no multipath-tools: there are no multipath
        # maps to serve, so this is not worth a warning (the manager's own words).
        log.info("no multipath support: %s", missing)
        return _new(tree, PRHelperSgIo)
    from qompr.managers.multipath import PRManagerMultipath

    tree.types.register(PRManagerMultipath)
    try:
        multipath = tree.object_add(
            "pr-manager-multipath",
            "qompr-pr-helper-multipath",
            require_multipathd=False,
            verbose=verbose,
            noisy=noisy,
        )
    except ConnectError as exc:
        os.close(control)
        log.info("no multipath support: %s", exc.message)  # e.g. multipath-tools too old
        return _new(tree, PRHelperSgIo)
    assert isinstance(multipath, PRManagerMultipath)
    executor = _new(tree, PRHelperDefault)
    executor.attach(multipath, control)
    return executor


#: The library ``pr-manager-multipath`` loads (:mod:`qompr.managers.multipath`).
_MULTIPATH_LIBRARY = "libmpathpersist.so.0"


def _multipath_library_missing() -> str | None:
    """Why libmpathpersist cannot be loaded, or ``None`` if it can.

    Asked before the multipath manager is imported: a host with device-mapper (LVM) but
    without multipath-tools would otherwise keep that package, some 1.1 MB, in every helper
    for nothing.
    """
    try:
        ctypes.CDLL(_MULTIPATH_LIBRARY)
    except OSError as exc:
        return f"Cannot load {_MULTIPATH_LIBRARY}: {exc}"
    return None


_T = TypeVar("_T", bound=PRHelperSgIo)


def _new(tree: ObjectTree, cls: type[_T]) -> _T:
    obj = tree.new_object(cls.__qom_info__.name)
    assert isinstance(obj, cls)
    return obj
