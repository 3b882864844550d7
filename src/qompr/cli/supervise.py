# SPDX-License-Identifier: MIT
"""``qompr supervise --socket PATH [--pidfile FILE] [-- HELPER-OPTIONS...]``.

Runs in the foreground, keeps PATH bound for its whole life, runs ``qompr-pr-helper`` with
the given options on it (socket activation), writes the current helper's pid to FILE, and
restarts the helper whenever it exits, however it exits, until SIGTERM or SIGINT; or exits
with status 1 and the helper's last words when five incarnations in a row die before they
are ready (a helper that can never start).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from qompr.embed import HelperSupervisor

__all__ = ["add_parser", "run_supervise"]


def run_supervise(args: argparse.Namespace) -> int:
    helper_args = list(args.helper_args)
    if helper_args[:1] == ["--"]:
        helper_args = helper_args[1:]
    done = threading.Event()
    supervisor = HelperSupervisor(
        args.socket,
        pidfile=args.pidfile,
        helper_args=helper_args,
        on_give_up=lambda error: done.set(),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    supervisor.start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        supervisor.stop()
    if supervisor.error is not None:
        sys.stderr.write(f"qompr supervise: {supervisor.error.message}\n")
        return 1
    return 0


def add_parser(sub: Any) -> None:
    sup = sub.add_parser(
        "supervise",
        help="run qompr-pr-helper on a socket this process keeps, restarting it when it exits",
    )
    sup.add_argument("--socket", required=True, metavar="PATH", help="the helper socket")
    sup.add_argument("--pidfile", metavar="FILE", help="written with the current helper's pid")
    sup.add_argument(
        "helper_args", nargs=argparse.REMAINDER, metavar="-- HELPER-OPTIONS",
        help="options for qompr-pr-helper (not -k: the socket is passed by activation)",
    )  # fmt: skip
    sup.set_defaults(func=run_supervise)
