# SPDX-License-Identifier: MIT
"""What an sg3_utils-style command (``qompr persist``, ``qompr turs``) runs through.

A :class:`~qompr.managers.PRManager` object (:class:`Backend`), or the device itself
(:class:`DeviceBackend`), chosen by the options the commands share:

* ``--object SPEC`` (repeatable): the last persistent-reservation manager the specs create
  (qemu-storage-daemon's keyval rules); ``--initiator`` / ``--target-port`` name the I_T
  nexus, else the manager's :attr:`~qompr.managers.PRManager.default_nexus` applies;
* ``--helper SOCKET``: ``pr-manager-helper,id=helper0,path=SOCKET``; ``--initiator`` /
  ``--target-port`` (and TEST UNIT READY) go through qompr's protocol extension
  (:meth:`~qompr.managers.PRManagerHelper.use_extension`): ``qompr-pr-helper`` names the
  client so, ``qemu-pr-helper`` refuses, and the run fails saying so;
* neither: SG_IO on DEVICE, issued and waited for as ``pr-manager-direct``'s
  :meth:`~qompr.managers.PRManagerDirect.passthrough` does, without a manager object:
  sg3_utils' programs judge the kernel's own answer (errno, host and driver status), which a
  manager's SCSI result no longer holds.

Only what a run names is imported: on the device path no manager, object model, ``-object``
parser or plugin; a built-in manager type by its own module; and the plugin manager (with
third-party plugins from the entry points) only when an ``--object`` spec names a type qompr
does not build in, or asks for help.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple
from typing import TypeAlias

from qompr._lazy import load as _load
from qompr.cli.sglib import err
from qompr.cli.sglib.numbers import get_num_nomult
from qompr.cli.sglib.passthrough import Response
from qompr.cli.sglib.passthrough import send_sg_io
from qompr.cli.sglib.texts import Exit
from qompr.cli.sglib.texts import convert_errno
from qompr.errors import ConnectError
from qompr.errors import QomprError

if TYPE_CHECKING:
    import pluggy

    from qompr.linux.sgio import Direction
    from qompr.linux.sgio import SgIoOutcome
    from qompr.managers import PRManager
    from qompr.managers._builtin import BUILTIN_TYPES
    from qompr.options import HelpText
    from qompr.qom import Object
    from qompr.qom import ObjectTree
    from qompr.scsi import Nexus
    from qompr.scsi import ScsiResult

__all__ = [
    "BUILTIN_TYPES",
    "Backend",
    "BackendFailed",
    "BackendFields",
    "BackendOptions",
    "DeviceBackend",
    "PluginSource",
    "add_argv_parser",
    "backend_conflict",
    "open_backend",
    "set_backend_option",
]


def __getattr__(name: str) -> Any:
    # The managers (and the object model under them) load only on a path that names one.
    return _load(__name__, {"BUILTIN_TYPES": "qompr.managers._builtin"}, name)


#: Where the types of ``--object`` come from when a spec needs plugins: a plugin manager, or
#: a function making one (``None``: :func:`qompr.plugins.get_plugin_manager`).
PluginSource: TypeAlias = "pluggy.PluginManager | Callable[[], pluggy.PluginManager] | None"

_HELPER_ID = "helper0"
# sg3_utils' pass-through timeout (DEF_PT_TIMEOUT).
_TIMEOUT_MS = 60_000


# The option records below are a NamedTuple and a plain class, not attrs classes: each attrs
# class is compiled at import, and this module loads with every qompr persist and turs.


class BackendOptions(NamedTuple):
    """The backend options of a command line.

    :param helper: ``--helper`` SOCKET.
    :param objects: the ``--object`` specs, in order.
    :param initiator: ``--initiator`` NAME.
    :param target_port: ``--target-port`` N.
    :param test_unit_ready: the run sends TEST UNIT READY: a ``--helper`` asks for it
        through qompr's protocol extension.
    """

    helper: str | None = None
    objects: Sequence[str] = ()
    initiator: str | None = None
    target_port: int | None = None
    test_unit_ready: bool = False

    @property
    def uses_manager(self) -> bool:
        """Whether a manager is named (else the command goes to the device with SG_IO)."""
        return self.helper is not None or bool(self.objects)


class BackendFields:
    """The backend options' fields of a command's options (``qompr persist``, ``qompr turs``):
    a mutable record the option loop fills in."""

    helper: str | None = None
    initiator: str | None = None
    target_port: int | None = None

    def __init__(self) -> None:
        self.objects: list[str] = []


def set_backend_option(fields: BackendFields, opt: str, value: str) -> bool:
    """Store ``--helper``, ``--object``, ``--initiator`` or ``--target-port`` in *fields*.

    :returns: whether *opt* was one of them.
    :raises ValueError: the argument is bad; the message is the option's long name.
    """
    if opt == "--helper":
        fields.helper = value
    elif opt == "--object":
        fields.objects.append(value)
    elif opt == "--initiator":
        from qompr.scsi import Nexus

        try:
            Nexus(value)
        except (TypeError, ValueError):
            raise ValueError("initiator") from None
        fields.initiator = value
    elif opt == "--target-port":
        port = get_num_nomult(value)
        if not 1 <= port <= 0xFFFF:
            raise ValueError("target-port")
        fields.target_port = port
    else:
        return False
    return True


def backend_conflict(options: BackendOptions, need_manager: str) -> str | None:
    """The first contradiction among *options*, as the line to print, or ``None``.

    :param need_manager: what names a manager, in the text for a nexus without one.
    """
    if options.helper is not None and options.objects:
        return "--helper and --object are alternatives: give one of them\n"
    if options.target_port is not None and options.initiator is None and options.helper is not None:
        # Never ignored: qompr's protocol extension names a port together with an initiator.
        return "--target-port with --helper needs --initiator: the helper names the client\n"
    names_nexus = options.initiator is not None or options.target_port is not None
    if names_nexus and not options.uses_manager:
        return f"--initiator and --target-port need a manager ({need_manager})\n"
    return None


def add_argv_parser(sub: Any, name: str, summary: str, run: Callable[..., int]) -> None:
    """Add an sg3_utils-style command *name* to the ``qompr`` subcommands.

    Its arguments are parsed by *run* as the sg3_utils program parses them, not by argparse:
    the subparser only collects them, with a prefix character no argument starts with so
    that argparse leaves options such as ``-k`` alone.
    """
    import argparse

    def command(args: Any) -> int:
        return run(args.argv, plugin_manager=args.plugin_manager)

    parser = sub.add_parser(
        name,
        help=summary,
        description=f"Run 'qompr {name} --help' for the options (those of sg_{name}).",
        prefix_chars="\x01",
        add_help=False,
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="ARG")
    parser.set_defaults(func=command)


class BackendFailed(Exception):  # noqa: N818  (control flow: the message is printed)
    """No manager: the reason is printed; *status* is the exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Backend:
    """The manager of one run and the I_T nexus its commands carry.

    :param tree: the object tree the manager lives in (closed by :meth:`close`).
    :param manager: the manager.
    :param nexus: the nexus given to its commands (``None``: the manager's default).
    """

    def __init__(self, tree: ObjectTree, manager: PRManager, nexus: Nexus | None = None) -> None:
        self.tree = tree
        self.manager = manager
        self.nexus = nexus

    @property
    def shown_nexus(self) -> Nexus | None:
        """The nexus the commands arrive on, if qompr knows it."""
        return self.nexus if self.nexus is not None else self.manager.default_nexus

    def command(
        self, fd: int, cdb: bytes, data_out: bytes = b"", allocation: int = 0, *, verbose: int = 0
    ) -> Response:
        """One command on *fd*: the manager's :meth:`~qompr.managers.PRManager.execute`.

        :param allocation: the data-in length asked for.
        :param verbose: the ``-v`` count (unused: a manager's failure is its answer).
        """
        nexus = self.nexus
        return _answer(lambda: self.manager.execute(fd, cdb, data_out, nexus=nexus), allocation)

    def test_unit_ready(self, fd: int, *, verbose: int = 0) -> Response:
        """TEST UNIT READY on *fd*: the manager's
        :meth:`~qompr.managers.PRManager.test_unit_ready`."""
        nexus = self.nexus
        return _answer(lambda: self.manager.test_unit_ready(fd, nexus=nexus), 0)

    def close(self) -> None:
        """Delete the objects the run created, newest first."""
        for obj in reversed(self.tree.user_objects()):
            if obj.id is not None:
                with contextlib.suppress(QomprError):
                    self.tree.object_del(obj.id)


class DeviceBackend:
    """The device itself, without a manager: each command is one SG_IO as sg3_utils' Linux
    pass-through issues it, with its 60 s timeout, and sg3_utils' programs judge the kernel's
    own answer (errno, host and driver status).

    The SG_IO is waited for as ``pr-manager-direct``'s pass-through waits
    (:func:`qompr.linux.sgio.sg_io_waited`): at most the timeout and a grace, after which the
    answer is host status ``DID_TIME_OUT``.  No manager, object model or plugin is imported
    on this path (start-up time: tests/cli/test_import_budget.py).
    """

    #: The device knows the nexus its commands arrive on; qompr does not.
    shown_nexus = None
    #: The SG_IO timeout (sg3_utils' ``DEF_PT_TIMEOUT``).
    timeout_ms = _TIMEOUT_MS

    def passthrough(
        self,
        fd: int,
        cdb: bytes,
        direction: Direction,
        *,
        data_out: bytes = b"",
        data_in_size: int = 0,
    ) -> SgIoOutcome:
        """One SG_IO, the kernel's answer unjudged: this backend's
        :class:`~qompr.cli.sglib.passthrough.PassThrough`."""
        from qompr.linux.sgio import GRACE_MS
        from qompr.linux.sgio import sg_io
        from qompr.linux.sgio import sg_io_waited

        call = functools.partial(
            sg_io, fd, cdb, direction, data_out=data_out, data_in_size=data_in_size,
            cmd_len=len(cdb), timeout_ms=self.timeout_ms,
        )  # fmt: skip
        return sg_io_waited(call, self.timeout_ms + GRACE_MS, name="SG_IO")

    def command(
        self, fd: int, cdb: bytes, data_out: bytes = b"", allocation: int = 0, *, verbose: int = 0
    ) -> Response:
        """One command on *fd* through SG_IO.

        :param allocation: the data-in length asked for.
        :param verbose: the ``-v`` count (the pass-through reports a failing ioctl).
        """
        return send_sg_io(self.passthrough, fd, cdb, data_out, allocation, verbose=verbose)

    def test_unit_ready(self, fd: int, *, verbose: int = 0) -> Response:
        """TEST UNIT READY on *fd* through SG_IO."""
        return send_sg_io(self.passthrough, fd, bytes(6), b"", 0, verbose=verbose)

    def close(self) -> None:
        """Nothing to release: the caller closes the device."""


def _answer(call: Callable[[], ScsiResult], allocation: int) -> Response:
    """A manager's answer as sg3_utils' pass-through would have given it."""
    start = time.monotonic()
    try:
        result = call()
    except OSError as exc:  # ConnectError included
        cause = exc.cause if isinstance(exc, ConnectError) else None
        code = exc.errno or (cause.errno if isinstance(cause, OSError) else None)
        return Response(os_error=code or errno.EIO)
    except (QomprError, NotImplementedError) as exc:
        return Response(failure=str(exc))
    elapsed = int((time.monotonic() - start) * 1000)
    return Response(
        status=int(result.status),
        sense=bytes(result.sense),
        data=bytes(result.data[:allocation]),
        duration_ms=elapsed,
    )


def builtin_tree(names: Sequence[str]) -> ObjectTree:
    """A tree knowing ``pr-manager`` and the built-in types *names*, without plugins."""
    from qompr.managers import PRManager
    from qompr.managers._builtin import BUILTIN_TYPES
    from qompr.qom import ObjectTree
    from qompr.qom import TypeRegistry

    registry = TypeRegistry()
    registry.register(PRManager)
    for name in names:
        registry.register_lazy(name, BUILTIN_TYPES[name])
    return ObjectTree(registry)


def _spec_type(spec: str) -> str | None:
    """The type an ``--object`` spec creates, when it plainly names one (no help request,
    no syntax error: those are left to the full processing, which words them)."""
    from qompr.options import keyval_parse

    try:
        if spec.startswith("{"):
            from qompr.options import json_loads

            value = json_loads(spec)
            qom_type = value.get("qom-type") if isinstance(value, dict) else None
        else:
            parsed = keyval_parse(spec, "qom-type")
            qom_type = None if parsed.help else parsed.qdict.get("qom-type")
    except QomprError:
        return None
    return qom_type if isinstance(qom_type, str) else None


def _object_tree(specs: Sequence[str], plugins: PluginSource) -> ObjectTree:
    """The tree the ``--object`` specs are processed in."""
    from qompr.managers._builtin import BUILTIN_TYPES

    if plugins is None or callable(plugins):
        names = [_spec_type(spec) for spec in specs]
        wanted = [name for name in names if name is not None and name in BUILTIN_TYPES]
        if len(wanted) == len(names):
            return builtin_tree(wanted)
    from qompr import plugins as qompr_plugins  # third-party types: the entry points

    if plugins is None:
        plugins = qompr_plugins.get_plugin_manager()
    elif callable(plugins):
        plugins = plugins()
    return qompr_plugins.new_tree(plugins)


def _process_objects(
    specs: Sequence[str], plugins: PluginSource, prog: str
) -> tuple[ObjectTree, list[Object]] | HelpText:
    """The tree and the objects the ``--object`` specs create, or the help they ask for.

    :raises QomprError: a spec is refused.
    """
    from qompr.options import HelpText
    from qompr.options import Syntax
    from qompr.options import format_warning
    from qompr.options import process

    def warn(located: str, hint: str) -> None:
        err(format_warning(located, hint, prog))

    tree = _object_tree(specs, plugins)
    answer = process(tree, list(specs), Syntax.KEYVAL, warn=warn)
    if isinstance(answer, HelpText):
        return answer
    return tree, list(answer)


def _nexus(options: BackendOptions, manager: PRManager, prog: str) -> Nexus | None:
    if options.initiator is None and options.target_port is None:
        return None  # the manager's default: no Nexus (nor TransportID) class to build
    from qompr.scsi import Nexus

    if options.initiator is not None:
        return Nexus(options.initiator, options.target_port or 1)
    assert options.target_port is not None  # neither given: returned above
    # The manager's own initiator (pr-manager-emulated has one) through another port.
    default = manager.default_nexus
    if default is not None:
        return Nexus(default.initiator, options.target_port, transport_id=default.transport_id)
    return Nexus(f"{prog.replace(' ', '-')}:{os.getpid()}", options.target_port)


def _helper_manager(tree: ObjectTree, options: BackendOptions) -> PRManager:
    """``--helper``'s manager, asking for qompr's extension when the run needs it."""
    from qompr.managers import PRManagerHelper

    assert options.helper is not None
    helper = tree.object_add("pr-manager-helper", _HELPER_ID, path=options.helper, complete=False)
    assert isinstance(helper, PRManagerHelper)
    if options.initiator is not None or options.test_unit_ready:
        helper.use_extension(
            initiator=options.initiator,
            target_port=options.target_port,
            test_unit_ready=options.test_unit_ready,
        )
    tree.complete(helper)
    return helper


def open_backend(
    options: BackendOptions, *, prog: str, plugins: PluginSource = None
) -> Backend | DeviceBackend | HelpText:
    """The manager *options* name (created and completed), the device itself when they name
    none, or an ``--object`` help text.

    :param prog: the program name error messages start with.
    :param plugins: where ``--object`` types beyond the built-in ones come from
        (:func:`qompr.plugins.get_plugin_manager` if omitted).
    :raises BackendFailed: after printing why, with the exit status.
    """
    if not options.uses_manager:
        return DeviceBackend()

    from qompr.managers import PRManager

    tree: ObjectTree
    try:
        if options.helper is not None:  # no -object string to read: no qompr.options
            tree = builtin_tree(["pr-manager-helper"])
            objects: list[Object] = [_helper_manager(tree, options)]
        else:
            from qompr.options import HelpText

            processed = _process_objects(options.objects, plugins, prog)
            if isinstance(processed, HelpText):
                return processed
            tree, objects = processed
    except QomprError as exc:
        from qompr.options import format_error

        err(format_error(exc, prog))
        cause = exc.cause if isinstance(exc, ConnectError) else None
        if isinstance(cause, OSError) and cause.errno:
            raise BackendFailed(convert_errno(cause.errno)) from None
        raise BackendFailed(Exit.SYNTAX_ERROR) from None
    managers = [obj for obj in objects if isinstance(obj, PRManager)]
    if not managers:
        err(f"{prog}: --object: none of the objects is a persistent reservation manager\n")
        raise BackendFailed(Exit.SYNTAX_ERROR)
    manager = managers[-1]
    return Backend(tree, manager, _nexus(options, manager, prog))
