# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``'s log: qemu-pr-helper's levels, as text or one JSON object a line."""

from __future__ import annotations

import logging
import sys
from typing import Any

from qompr._compat import override
from qompr.daemon._options import PROG

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and exception), plus the
    record's ``fields`` mapping when a caller passes structured data (``extra=``)."""

    def __init__(self) -> None:
        super().__init__()
        import json  # only a daemon that logs JSON pays for it (before the privilege drop)

        self._dumps = json.dumps

    @override
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get("fields")  # set by extra={"fields": {...}}
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._dumps(entry)


def setup_logging(*, verbosity: int, quiet: bool, log_format: str) -> None:
    """Log ``qompr.*`` to stderr: warnings by default, errors with ``-q``, more with ``-v``.

    :param verbosity: the ``-v`` count.
    :param quiet: ``-q``.
    :param log_format: ``text`` (``qompr-pr-helper: MESSAGE``) or ``json``.
    """
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("qompr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
