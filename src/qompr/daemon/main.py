# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``: a drop-in replacement for QEMU's ``qemu-pr-helper``.

The command line, the start-up order and the messages are qemu-pr-helper 7.2's
(scsi/qemu-pr-helper.c ``main``; docs/reference):

1. options, each acted on as it is read (:mod:`qompr.daemon._options`);
1a. the executor: ``--backend``'s manager, or multipath support as a qemu-pr-helper built with
   it (/dev/mapper/control opened and libmpathpersist initialised; where either is missing,
   every fd gets SG_IO, as from Debian's build without multipath; :mod:`._backends`);
2. the listening socket, ``-d``, the pid file, the privilege drop, ``--processes``
   (:mod:`qompr.daemon._startup`);
3. serve until SIGTERM, SIGINT or SIGHUP; requests executing then still get answered; the
   socket file is removed on the way out (:mod:`qompr.daemon._server`).

qompr's additions are long options only: ``--backend``, ``--allow-uid``, ``--allow-gid``,
``--plugin``, ``--keep-privileges``, ``--log-format``, ``--max-workers``, ``--processes``,
``--max-connections``, ``--stall-timeout`` and ``--control`` (:mod:`qompr.daemon._control`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from qompr.daemon import _startup
from qompr.daemon._backends import default_executor
from qompr.daemon._logging import setup_logging
from qompr.daemon._options import DEFAULT_PIDFILE
from qompr.daemon._options import PROG
from qompr.daemon._options import Exit
from qompr.daemon._options import Options
from qompr.daemon._options import fail
from qompr.daemon._options import parse_args
from qompr.daemon._server import HelperServer
from qompr.daemon._stats import log_statistics
from qompr.errors import QomprError
from qompr.linux import systemd
from qompr.managers import PRManager

if TYPE_CHECKING:
    from qompr.daemon._control import ControlServer
    from qompr.daemon._tracking import PRTracker

__all__ = ["main", "make_executor", "run"]

log = logging.getLogger("qompr.daemon")


def make_executor(opts: Options) -> PRManager:
    """The manager that executes the commands: ``--backend``'s, else qemu-pr-helper's own."""
    if opts.backend or opts.plugins:
        manager = _backend_manager(opts)
        if manager is not None:
            return manager
    # qemu-pr-helper's levels: loglevel starts at 1 and -v adds one; libmpathpersist gets
    # verbose = min(loglevel, 3) (0 with -q) and prints its CDBs from -vv on.
    level = 1 + opts.verbosity
    return default_executor(
        verbose=0 if opts.quiet else min(level, 3), noisy=not opts.quiet and level >= 3
    )


def _backend_manager(opts: Options) -> PRManager | None:
    """The manager ``--backend`` creates (``None`` with ``--plugin`` alone)."""
    from qompr.options import HelpText
    from qompr.options import ObjectCommandLine
    from qompr.options import Syntax
    from qompr.options import format_error
    from qompr.plugins import get_plugin_manager
    from qompr.plugins import new_tree

    try:
        # A root daemon never imports whatever happens to be installed (style rule 9).
        pm = get_plugin_manager(
            load_entrypoints=bool(opts.plugins), allow=opts.plugins or None, trace=False
        )
        tree = new_tree(pm)
        cmdline = ObjectCommandLine(tree, Syntax.KEYVAL, option="--backend")
        for arg in opts.backend:
            answer = cmdline.parse(arg)
            if isinstance(answer, HelpText):
                raise Exit(0, out=answer.text)
    except QomprError as exc:
        raise Exit(1, err=format_error(exc, PROG)) from None
    if not opts.backend:
        return None  # plugins loaded (and checked) for their hooks only
    managers = [obj for obj in cmdline.created if isinstance(obj, PRManager)]
    if not managers:
        fail(f"--backend needs a persistent reservation manager, not '{opts.backend[-1]}'")
    return managers[-1]


def run(opts: Options, argv0: str = PROG) -> int:
    """Start the daemon with parsed options; returns the exit status."""
    stop_signals = _startup.StopSignals()
    stop_signals.install()
    setup_logging(verbosity=opts.verbosity, quiet=opts.quiet, log_format=opts.log_format)
    executor = make_executor(opts)
    if opts.processes > 1 and opts.backend:
        # Each process would have its own copy of the backend object and its state.
        fail("--processes needs the SG_IO executor (no --backend)")
    listener, socket_path = _startup.listening_socket(opts.socket_path, argv0)
    control_listener = _control_socket(opts.control) if opts.control is not None else None
    # PR tracking (live migration) is read on the control socket, and recognises QEMU 11's
    # destination sequence: on with either.  Imported now: after the privilege drop the
    # library may not be readable.
    handover = opts.migrate_pr == "handover"
    tracker = _tracker(handover) if opts.control is not None or handover else None
    if opts.daemonize:
        _startup.daemonize()
    pidfile_fd = None
    if opts.daemonize or opts.pidfile is not None:
        pidfile = DEFAULT_PIDFILE if opts.pidfile is None else opts.pidfile
        pidfile_fd = _startup.write_pidfile(pidfile)
    _startup.raise_nofile_limit()
    if not opts.keep_privileges:
        _startup.drop_privileges(executor.required_capabilities(), uid=opts.uid, gid=opts.gid)
    _startup.release_start_up_memory()
    children = _startup.fork_servers(opts.processes - 1)

    def serving(on_event: Callable[[str], None] | None = None) -> HelperServer:
        return HelperServer(
            listener,
            backend=executor,
            allow_uids=opts.allow_uids,
            allow_gids=opts.allow_gids,
            allow_naming_uids=opts.allow_naming_uids,
            max_workers=opts.max_workers,
            max_connections=opts.max_connections,
            stall_timeout=opts.stall_timeout,
            on_event=on_event,
            tracker=tracker,
        )

    if children is None:  # a child: serve, then leave without the parent's clean-up
        try:
            _serve(serving(), stop_signals)
        finally:
            os._exit(0)

    def on_event(what: str) -> None:
        if what == "stopping":
            if control is not None:
                control.close()
            for pid in children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        _notify(server, what, socket_path)

    server = serving(on_event)
    control = None
    if control_listener is not None:
        control = _control_server(control_listener, server)
    try:
        _serve(server, stop_signals)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    finally:
        stats = server.statistics()
        log.info(
            "served %d requests on %d connections (%d protocol errors)",
            stats.requests,
            stats.connections_accepted,
            stats.protocol_errors,
        )
        if opts.control is not None:
            with contextlib.suppress(OSError):
                os.unlink(opts.control)
        if socket_path is not None:
            try:
                os.unlink(socket_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # As QEMU's socket_listen_cleanup reports it (e.g. after dropping to nobody).
                sys.stderr.write(f"{PROG}: Failed to unlink socket {socket_path}: {exc.strerror}\n")
        if pidfile_fd is not None:
            os.close(pidfile_fd)  # QEMU leaves the file in place too
    return 0


def _notify(server: HelperServer, what: str, path: str | None) -> None:
    where = path or "the socket-activated socket"
    if what == "ready":
        log.info("listening on %s", where)
        systemd.notify(f"READY=1\nSTATUS=Serving on {where}\nMAINPID={os.getpid()}")
    else:
        stats = server.statistics()
        systemd.notify(f"STOPPING=1\nSTATUS=Stopping ({stats.in_flight} commands in flight)")


def _serve(server: HelperServer, stop_signals: _startup.StopSignals) -> None:
    loop = server.loop
    for sig in _startup.STOP_SIGNALS:
        loop.add_signal_handler(sig, server.stop)
    loop.add_signal_handler(signal.SIGUSR1, _log_statistics, server)
    if stop_signals.pending:
        server.stop()
    server.serve_forever()


def _log_statistics(server: HelperServer) -> None:
    # Asked for by a signal: logged whatever -v/-q say, as text or JSON like the rest.
    stats_log = logging.getLogger("qompr.daemon.statistics")
    stats_log.setLevel(logging.INFO)
    log_statistics(stats_log, server.statistics(), server.connections())


def _tracker(handover: bool) -> PRTracker:
    from qompr.daemon._tracking import PRTracker

    return PRTracker(qemu11_handover=handover)


def _control_socket(path: str) -> socket.socket:
    from qompr.daemon._control import control_socket

    try:
        return control_socket(path)
    except OSError as exc:
        fail(f"Failed to bind control socket to {path}: {exc.strerror}")


def _control_server(listener: socket.socket, server: HelperServer) -> ControlServer:
    """The control interface on the server's loop, with its commands."""
    from qompr import __version__
    from qompr.daemon._control import CommandError
    from qompr.daemon._control import ControlServer
    from qompr.daemon._stats import prometheus_text
    from qompr.daemon._stats import statistics_json

    def query_stats(arguments: dict[str, Any]) -> Any:
        unexpected = sorted(set(arguments) - {"format"})
        if unexpected:
            raise CommandError(f"Parameter '{unexpected[0]}' is unexpected")
        form = arguments.get("format", "json")
        if form == "json":
            return statistics_json(server.statistics(), server.connections())
        if form == "prometheus":
            return {"text": prometheus_text(server.statistics(), server.connections())}
        raise CommandError(f"Parameter 'format' does not accept value '{form}'")

    numbers = [int(part) for part in __version__.split(".")[:3] if part.isdigit()]
    major, minor, micro = (*numbers, 0, 0, 0)[:3]
    control = ControlServer(
        listener, server.loop, version=(major, minor, micro), package=f"{PROG} {__version__}"
    )
    control.register("query-stats", query_stats)
    tracker = server.tracker
    if tracker is not None:

        def query_pr_tracking(arguments: dict[str, Any]) -> Any:
            try:
                return tracker.query(arguments, {c.id for c in server.connections()})
            except ValueError as exc:
                raise CommandError(str(exc)) from None

        control.register("query-pr-tracking", query_pr_tracking)
    control.start()
    return control


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = list(sys.argv if argv is None else argv)
    try:
        opts = parse_args(args)
        return run(opts, args[0] if args else PROG)
    except Exit as done:
        if done.out:
            sys.stdout.write(done.out)
            sys.stdout.flush()
        if done.err:
            sys.stderr.write(done.err)
            sys.stderr.flush()
        return done.status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
