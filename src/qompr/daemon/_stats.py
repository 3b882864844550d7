# SPDX-License-Identifier: MIT
"""What ``qompr-pr-helper`` counts, as frozen values (trio-style ``statistics()``)."""

from __future__ import annotations

import attrs

from qompr.linux import PeerCredentials

__all__ = ["ConnectionStatistics", "ServerStatistics"]


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
