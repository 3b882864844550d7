# SPDX-License-Identifier: MIT
"""What ``qompr-pr-helper`` counts, as frozen values (trio-style ``statistics()``), and the
three ways it tells: the log (SIGUSR1), JSON and Prometheus text (the control interface)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from qompr.linux import PeerCredentials

__all__ = [
    "ConnectionStatistics",
    "ServerStatistics",
    "log_statistics",
    "prometheus_text",
    "statistics_json",
]


@attrs.frozen
class ConnectionStatistics:
    """One client connection.

    :param id: a serial number, in accept order.
    :param peer: its credentials (SO_PEERCRED), if known.
    :param opened: :func:`time.time` at accept.
    :param requests: commands answered.
    :param bytes_in: bytes read from it.
    :param bytes_out: bytes written to it.
    """

    id: int
    peer: PeerCredentials | None
    opened: float
    requests: int
    bytes_in: int
    bytes_out: int


@attrs.frozen
class ServerStatistics:
    """The whole server.

    :param connections_accepted: accepted connections, refused ones included.
    :param connections_refused: closed at once by ``--allow-uid/--allow-gid``.
    :param connections_open: open now.
    :param requests: commands answered.
    :param requests_in: PERSISTENT RESERVE IN commands answered.
    :param requests_out: PERSISTENT RESERVE OUT commands answered.
    :param check_conditions: answers with CHECK CONDITION status.
    :param protocol_errors: connections closed because the client broke the protocol.
    :param in_flight: commands executing now.
    :param max_in_flight: the most commands that ever executed at once.
    :param workers: worker threads alive.
    :param bytes_in: bytes read from clients.
    :param bytes_out: bytes written to clients.
    :param connections_over_limit: closed at once because ``--max-connections`` were open.
    :param connections_stalled: closed because a message or a reply stalled longer than
        ``--stall-timeout``.
    :param accept_errors: ``accept`` failures (out of file descriptors, mostly); accepting
        pauses after each.
    :param commands_moved_off_loop: times a command that was to run on the event loop took
        so long that the next ones went to worker threads for a while.
    """

    connections_accepted: int
    connections_refused: int
    connections_open: int
    requests: int
    requests_in: int
    requests_out: int
    check_conditions: int
    protocol_errors: int
    in_flight: int
    max_in_flight: int
    workers: int
    bytes_in: int
    bytes_out: int
    connections_over_limit: int = 0
    connections_stalled: int = 0
    accept_errors: int = 0
    commands_moved_off_loop: int = 0


def statistics_json(
    server: ServerStatistics, connections: Sequence[ConnectionStatistics]
) -> dict[str, Any]:
    """The statistics as JSON values: ``{"server": {...}, "connections": [...]}``."""
    return {
        "server": attrs.asdict(server),
        "connections": [attrs.asdict(c) for c in connections],
    }


#: Counters (monotonic) among ServerStatistics' fields; the rest are gauges.
_GAUGES = frozenset({"connections_open", "in_flight", "max_in_flight", "workers"})


def _help_texts() -> dict[str, str]:
    """Each field's ``:param name:`` text from ServerStatistics' docstring, on one line."""
    texts: dict[str, str] = {}
    name = None
    for raw in (ServerStatistics.__doc__ or "").splitlines():
        line = raw.strip()
        if line.startswith(":param "):
            name, _, text = line[len(":param ") :].partition(":")
            texts[name] = text.strip()
        elif name is not None and line:
            texts[name] += " " + line
        else:
            name = None
    return texts


_HELP = _help_texts()


def prometheus_text(server: ServerStatistics, connections: Sequence[ConnectionStatistics]) -> str:
    """The statistics in Prometheus' text exposition format (version 0.0.4): one metric per
    server counter (``qompr_pr_helper_..._total``) or gauge, and requests per open connection
    labelled with the peer's pid and uid."""
    lines: list[str] = []
    for name, value in attrs.asdict(server).items():
        kind = "gauge" if name in _GAUGES else "counter"
        metric = f"qompr_pr_helper_{name}" + ("" if kind == "gauge" else "_total")
        help_text = _HELP.get(name, name.replace("_", " ")).replace("``", "")
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", f"{metric} {value}"]
    metric = "qompr_pr_helper_connection_requests_total"
    lines += [f"# HELP {metric} commands answered on an open connection"]
    lines += [f"# TYPE {metric} counter"]
    for conn in connections:
        labels = f'connection="{conn.id}"'
        if conn.peer is not None:
            labels += f',pid="{conn.peer.pid}",uid="{conn.peer.uid}"'
        lines.append(f"{metric}{{{labels}}} {conn.requests}")
    return "\n".join(lines) + "\n"


def log_statistics(
    log: logging.Logger, server: ServerStatistics, connections: Sequence[ConnectionStatistics]
) -> None:
    """Log them (SIGUSR1): one ``statistics`` record with every counter as ``key=value`` (in a
    JSON log, as fields), then one record per open connection."""
    fields = attrs.asdict(server)
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    log.info("statistics: %s", text, extra={"fields": {"statistics": fields}})
    for conn in connections:
        entry = attrs.asdict(conn)
        peer = conn.peer
        who = f"pid={peer.pid} uid={peer.uid} gid={peer.gid}" if peer is not None else "peer=?"
        log.info(
            "connection %d: %s requests=%d bytes_in=%d bytes_out=%d",
            conn.id,
            who,
            conn.requests,
            conn.bytes_in,
            conn.bytes_out,
            extra={"fields": {"connection": entry}},
        )
