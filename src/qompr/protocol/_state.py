# SPDX-License-Identifier: MIT
"""The states of a qemu-pr-helper connection and the tables that move between them.

Rule 1: every transition either side can make is in one of the two tables below; the
connection classes look transitions up here and never invent one.  Rule 2: this module knows
the roles but no bytes; framing lives in :mod:`qompr.protocol.helper`.

A transition is triggered by an *event* sent (``send(...)``) or received (``next_event()``)
in a state.  Two transitions are triggered by bytes rather than events and are marked so:
the server leaves ``IDLE`` for ``RECV_DATA`` once a PERSISTENT RESERVE OUT CDB with a
non-zero parameter list length, or the header of qompr's identify message, is complete.
The ``(qompr)`` transitions, the grant and the identify happen only with qompr's extension
(:mod:`qompr.protocol.extension`), which QEMU never asks for.  Any protocol violation, by
either side, moves to ``ERROR`` (not listed: it is possible from every state).

:func:`state_diagram` renders the tables; ``docs/daemon.md`` embeds its output and a test
checks that the two agree.
"""

from __future__ import annotations

import enum

__all__ = [
    "CLIENT_TRANSITIONS",
    "SERVER_TRANSITIONS",
    "Role",
    "State",
    "state_diagram",
]


class Role(enum.Enum):
    """Which end of the socket a connection object plays."""

    #: ``pr-manager-helper``: connects, sends requests with an fd, reads responses.
    CLIENT = "client"
    #: ``qemu-pr-helper``: accepts, reads requests, sends responses.
    SERVER = "server"


class State(enum.Enum):
    """Where a connection is in the protocol (docs/reference/qemu-pr-helper.md §2-§4)."""

    #: Server only: the 4-byte feature mask must be sent first.
    SEND_FEATURES = "SEND_FEATURES"
    #: Waiting for the peer's 4-byte feature mask.
    RECV_FEATURES = "RECV_FEATURES"
    #: Client only: the server's mask arrived; the requested mask must be sent.
    REPLY_FEATURES = "REPLY_FEATURES"
    #: Server only: qompr's extension was requested; the granted mask must be sent.
    SEND_GRANT = "SEND_GRANT"
    #: Client only: qompr's extension was requested; the granted mask is awaited.
    RECV_GRANT = "RECV_GRANT"
    #: Between commands: the client may send one; the server waits for a CDB.
    IDLE = "IDLE"
    #: Server only: a PR OUT CDB arrived; its parameter list is being read.
    RECV_DATA = "RECV_DATA"
    #: Server only: a request was delivered; exactly one response must be sent.
    PROCESSING = "PROCESSING"
    #: Client only: a request was sent; its response is awaited.
    AWAIT_RESPONSE = "AWAIT_RESPONSE"
    #: The peer closed the connection between two commands.
    CLOSED = "CLOSED"
    #: A protocol violation by either side; the connection must be closed.
    ERROR = "ERROR"

    # Members are singletons, so identity hashing is exact, and much cheaper than Enum's.
    __hash__ = object.__hash__


# (state, direction, trigger) -> next state.  direction is "send", "recv" or "bytes".
Transitions = dict[tuple[State, str, str], State]

CLIENT_TRANSITIONS: Transitions = {
    (State.RECV_FEATURES, "recv", "Negotiated"): State.REPLY_FEATURES,
    (State.REPLY_FEATURES, "send", "Handshake"): State.IDLE,
    (State.REPLY_FEATURES, "send", "Handshake (qompr)"): State.RECV_GRANT,
    (State.RECV_GRANT, "recv", "Granted"): State.IDLE,
    (State.IDLE, "send", "HelperRequest"): State.AWAIT_RESPONSE,
    (State.IDLE, "send", "Identify"): State.AWAIT_RESPONSE,
    (State.AWAIT_RESPONSE, "recv", "HelperResponse"): State.IDLE,
    (State.IDLE, "recv", "ConnectionClosed"): State.CLOSED,
}

SERVER_TRANSITIONS: Transitions = {
    (State.SEND_FEATURES, "send", "Handshake"): State.RECV_FEATURES,
    (State.RECV_FEATURES, "recv", "Negotiated"): State.IDLE,
    (State.RECV_FEATURES, "recv", "Negotiated (qompr)"): State.SEND_GRANT,
    (State.SEND_GRANT, "send", "Granted"): State.IDLE,
    (State.IDLE, "bytes", "PR OUT CDB"): State.RECV_DATA,
    (State.IDLE, "bytes", "Identify header"): State.RECV_DATA,
    (State.IDLE, "recv", "HelperRequest"): State.PROCESSING,
    (State.RECV_DATA, "recv", "HelperRequest"): State.PROCESSING,
    (State.RECV_DATA, "recv", "Identify"): State.PROCESSING,
    (State.PROCESSING, "send", "HelperResponse"): State.IDLE,
    (State.IDLE, "recv", "ConnectionClosed"): State.CLOSED,
}

INITIAL_STATE = {Role.CLIENT: State.RECV_FEATURES, Role.SERVER: State.SEND_FEATURES}
TRANSITIONS = {Role.CLIENT: CLIENT_TRANSITIONS, Role.SERVER: SERVER_TRANSITIONS}


def state_diagram(role: Role) -> str:
    """A Mermaid ``stateDiagram-v2`` of *role*'s transition table.

    :param role: which side's table to draw.
    :returns: the diagram source, one transition per line.
    """
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL_STATE[role].value}"]
    for (state, direction, trigger), target in TRANSITIONS[role].items():
        lines.append(f"    {state.value} --> {target.value}: {direction} {trigger}")
    lines.append(f"    {State.CLOSED.value} --> [*]")
    return "\n".join(lines) + "\n"
