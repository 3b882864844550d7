# SPDX-License-Identifier: MIT
"""``qompr validate``: will a guest cluster's persistent reservations work on this path?

Nodes come from the options (two or more):

* ``--device PATH`` (repeatable): one node per device, SG_IO (a multipath map through
  libmpathpersist);
* ``--helper SOCKET`` (repeatable) with DEVICE operands: one node per helper socket, or per
  DEVICE, or helper and DEVICE paired in order;
* ``--object SPEC`` (repeatable; the last manager is used) with ``--node NAME`` (repeatable)
  and DEVICE operands: one node per name, each its own I_T nexus; without ``--node`` (a real
  device manager) one node per DEVICE.

``--node NAME`` (repeatable) with one ``--helper``: one node per name, each naming its
initiator to the helper (qompr's protocol extension: ``qompr-pr-helper`` only, which lets
root and ``--allow-naming-uid`` uids do it; against qemu-pr-helper the nodes fail to connect
and say why).  The engine is :mod:`qompr.validate`; this module only turns the command line
into nodes and prints the report (``docs/validate.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import string
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import pluggy

    from qompr.qom import ObjectTree
    from qompr.validate import Node

__all__ = ["PROFILE_NAMES", "SKIP_NAMES", "add_parser", "run"]

PROG = "qompr validate"
#: The profiles and skippable checks (kept here so that ``qompr --help`` does not load the
#: engine; a test checks they match :data:`qompr.validate.PROFILES` and ``SKIPPABLE``).
PROFILE_NAMES = ("wsfc", "fence_scsi", "lvmpersist")
SKIP_NAMES = (
    "reserve",
    "preempt",
    "preempt-abort",
    "unit-attention",
    "write-conflict",
    "release",
    "unregister",
    "aptpl",
    "clear",
    "multipath",
)
_USAGE = 2
_CANNOT_RUN = 4
_INTERRUPTED = 130


class _UsageError(Exception):
    pass


def _pair(channels: Sequence[str], devices: Sequence[str], what: str) -> list[tuple[str, str]]:
    """Channels (sockets, node names) with the DEVICE operands, as the module docstring says."""
    if not devices:
        raise _UsageError(f"{what} needs the DEVICE its nodes open (a DEVICE operand)")
    if len(devices) == 1:
        return [(c, devices[0]) for c in channels]
    if len(channels) == 1:
        return [(channels[0], d) for d in devices]
    if len(channels) == len(devices):
        return list(zip(channels, devices, strict=True))
    raise _UsageError(
        f"{len(channels)} {what} and {len(devices)} DEVICEs: give one DEVICE for all, or one each"
    )


def _names() -> Iterator[str]:
    yield from string.ascii_lowercase
    n = 1
    while True:
        yield f"node{n}"
        n += 1


def _build(args: argparse.Namespace, tree: ObjectTree, nodes: list[Node]) -> bool:
    """Create the nodes the options ask for, into *nodes* (so the caller can close them).

    :returns: False when an ``--object`` help request was answered instead.
    """
    from qompr.managers import PRManager
    from qompr.options import HelpText
    from qompr.options import Syntax
    from qompr.options import process
    from qompr.scsi import Nexus
    from qompr.validate import device_node
    from qompr.validate import helper_nodes
    from qompr.validate import manager_node

    timeout = args.timeout
    devices: list[str] = args.devices
    names = _names()
    taken = set(args.node)
    for path in args.device:
        name = next(n for n in names if n not in taken)
        nodes.append(device_node(tree, name, path, timeout=timeout))
    if args.helper and args.object:
        raise _UsageError("--helper and --object are alternatives: give one of them")
    if args.helper and args.node:
        if len(args.helper) != 1:
            raise _UsageError("--node names the initiators of nodes on one --helper: give one")
        pairs = _pair(args.node, devices, "--node")
        nodes.extend(
            helper_nodes(
                [(name, args.helper[0], device) for name, device in pairs],
                timeout=timeout,
                initiators=[name for name, _ in pairs],
            )
        )
    elif args.helper:
        specs = [
            (next(n for n in names if n not in taken), socket_path, device)
            for socket_path, device in _pair(args.helper, devices, "--helper")
        ]
        nodes.extend(helper_nodes(specs, timeout=timeout))
    elif args.object:
        answer = process(tree, args.object, Syntax.KEYVAL)
        if isinstance(answer, HelpText):
            sys.stdout.write(answer.text)
            return False
        managers = [obj for obj in answer if isinstance(obj, PRManager)]
        if not managers:
            raise _UsageError("--object: none of the objects is a persistent reservation manager")
        manager = managers[-1]
        if args.node:
            for name, device in _pair(args.node, devices, "--node"):
                nodes.append(manager_node(name, manager, device, nexus=Nexus(name)))
        elif manager.default_nexus is not None:
            raise _UsageError(
                f"--object: {manager.typename} '{manager.id}' emulates initiators: give "
                "--node NAME for each node"
            )
        else:
            for device in devices:
                name = next(n for n in names if n not in taken)
                nodes.append(manager_node(name, manager, device, nexus=None))
    elif args.node:
        raise _UsageError("--node names the initiators of an --object or --helper manager")
    elif devices:
        raise _UsageError(
            "DEVICE operands go with --helper or --object; give --device PATH for SG_IO"
        )
    if len(nodes) < 2:
        raise _UsageError(
            f"a cluster needs two or more nodes, the options give {len(nodes)}: see "
            "'qompr validate --help'"
        )
    return True


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(argv: Sequence[str], *, plugin_manager: pluggy.PluginManager | None = None) -> int:
    """Run ``qompr validate`` with *argv* (after the subcommand); the exit status."""
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION)
    _arguments(parser)
    args = parser.parse_args(list(argv))
    return _run(args, plugin_manager)


def _run(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    from qompr.errors import QomprError
    from qompr.options import format_error
    from qompr.plugins import get_plugin_manager
    from qompr.plugins import new_tree
    from qompr.validate import Validator

    if args.object and pm is None:
        pm = get_plugin_manager()
    tree = new_tree(pm) if pm is not None else new_tree(load_entrypoints=False)
    nodes: list[Node] = []
    previous = signal.getsignal(signal.SIGTERM)
    if _main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            if not _build(args, tree, nodes):
                return 0
        except _UsageError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            return _USAGE
        except QomprError as exc:
            sys.stderr.write(format_error(exc, PROG))
            return _CANNOT_RUN
        except KeyboardInterrupt:
            return _INTERRUPTED
        validator = Validator(
            nodes,
            args.profile,
            force=args.force,
            skip=args.skip,
            timeout=args.timeout,
            multipath_conf=args.multipath_conf,
        )
        report = validator.run()
        if args.json:
            sys.stdout.write(report.dumps())
        else:
            sys.stdout.write(report.render())
        if report.refused is not None:
            sys.stderr.write(f"{PROG}: refused: {report.refused}\n")
        return int(report.exit_status)
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.close()
        for obj in reversed(tree.user_objects()):
            if obj.id is not None:
                with contextlib.suppress(QomprError):
                    tree.object_del(obj.id)
        if _main_thread():
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


_DESCRIPTION = (
    "Run a cluster-readiness suite of persistent-reservation commands through the path a "
    "guest would use, from two or more nodes, and report each check as PASS, WARN, FAIL or "
    "SKIP.  A LU with registrations or a reservation is refused unless --force.  Exit status: "
    "0 nothing FAILed, 1 a check FAILed, 2 usage, 3 refused (LU in use), 4 could not start, "
    "130 interrupted.  See docs/validate.md."
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="wsfc",
        choices=PROFILE_NAMES,
        help="the cluster whose sequence to play (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="PATH",
        help="a node that sends SG_IO to PATH (a dm-multipath map: libmpathpersist)",
    )
    parser.add_argument(
        "--helper",
        action="append",
        default=[],
        metavar="SOCKET",
        help="a node that goes through the qemu-pr-helper (or qompr-pr-helper) at SOCKET",
    )
    parser.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="SPEC",
        help="create a manager from an --object string (keyval syntax); the last one is used",
    )
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME",
        help="a node with its own initiator NAME through the --object manager, or "
        "through the one --helper (qompr-pr-helper, which must let this uid name it)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run on a LU with registrations (only the checks that leave them alone)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=SKIP_NAMES,
        metavar="CHECK",
        help=f"do not run CHECK (and what needs it): {', '.join(SKIP_NAMES)}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a command may take before its node counts as hung (default: 30)",
    )
    parser.add_argument(
        "--multipath-conf",
        default="/etc/multipath.conf",
        metavar="PATH",
        help="the multipath.conf the multipath check reads (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "devices",
        nargs="*",
        metavar="DEVICE",
        help="the LU the --helper or --object nodes open",
    )


def _command(args: Any) -> int:
    return _run(args, args.plugin_manager)


def add_parser(sub: Any) -> None:
    """Add ``validate`` to the ``qompr`` subcommands."""
    parser = sub.add_parser(
        "validate",
        help="check that a guest cluster's persistent reservations work on this path",
        description=_DESCRIPTION,
    )
    _arguments(parser)
    parser.set_defaults(func=_command)
