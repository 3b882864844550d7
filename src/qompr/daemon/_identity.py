# SPDX-License-Identifier: MIT
"""Who a client of ``qompr-pr-helper`` is: the grant of qompr's extension and named initiators.

The rules (``docs/daemon.md``, "Identity rules"):

* every client is, by default, the initiator its SO_PEERCRED credentials make
  (:meth:`~qompr.managers.PRManager.nexus_for_client` of the backend: ``pid`` or
  ``vm-name`` for ``pr-manager-emulated``; the host itself for SG_IO);
* a client that asks for qompr's extension (:mod:`qompr.protocol.extension`) is granted
  TEST UNIT READY, and naming its initiator only when its uid is root's or one of
  ``--allow-naming-uid``: a name is a claim to be another node, which only a trusted
  cluster agent may make.  QEMU never asks, so a VM never names itself, whatever its uid.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from qompr.managers import ClientIdentity
from qompr.protocol import Feature
from qompr.protocol import Granted
from qompr.protocol import HelperResponse
from qompr.protocol import Identify
from qompr.protocol import Negotiated
from qompr.protocol import State
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

if TYPE_CHECKING:
    from qompr.daemon._server import HelperServer
    from qompr.daemon._server import _Client
    from qompr.linux import PeerCredentials
    from qompr.managers import PRManager
    from qompr.scsi import Nexus

__all__ = ["ROOT_UID", "extension_reply", "grant", "identify", "may_name"]

log = logging.getLogger("qompr.daemon")

#: Root may always name its initiator (it could run any command on the device anyway).
ROOT_UID = 0

_GOOD = HelperResponse(ScsiStatus.GOOD)
_REFUSED = HelperResponse(ScsiStatus.CHECK_CONDITION, SenseCode.INVALID_PARAM.to_bytes())


def may_name(peer: PeerCredentials | None, naming_uids: Collection[int]) -> bool:
    """Whether *peer* may name its initiator: root, or a listed uid."""
    return peer is not None and (peer.uid == ROOT_UID or peer.uid in naming_uids)


def grant(requested: int, peer: PeerCredentials | None, naming_uids: Collection[int]) -> Granted:
    """The part of a request for qompr's extension that *peer* gets.

    :param requested: the bits asked for (a subset of qompr's, checked by the core).
    :param peer: the client's credentials (``None``: unknown, so never trusted to name).
    :param naming_uids: ``--allow-naming-uid``.
    """
    allowed = Feature.QOMPR_TEST_UNIT_READY
    if may_name(peer, naming_uids):
        allowed |= Feature.QOMPR_NAMING
    elif requested & Feature.QOMPR_NAMING:
        uid = "unknown" if peer is None else peer.uid
        log.info("uid %s may not name its initiator (not root, not --allow-naming-uid)", uid)
    return Granted(Feature(requested) & allowed)


def identify(
    backend: PRManager, peer: PeerCredentials, message: Identify, cid: int
) -> tuple[Nexus | None, HelperResponse]:
    """The nexus a named client's commands carry from now on, and the answer to send.

    A backend that does not emulate initiators (``nexus_for_client`` answers ``None``: the
    device knows its own) cannot honour a name, so it is refused, never ignored:
    CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, and the connection
    keeps its credentials' nexus.

    :returns: the new nexus (``None`` when refused) and the response.
    """
    client = ClientIdentity(
        peer.pid,
        peer.uid,
        peer.gid,
        initiator=message.initiator,
        target_port=message.target_port,
    )
    try:
        nexus = backend.nexus_for_client(client)
    except Exception:
        log.exception("connection %d: naming initiator %r failed", cid, message.initiator)
        return None, _REFUSED
    if nexus is None:
        log.info(
            "connection %d: initiator %r refused: the backend's device knows its own",
            cid,
            message.initiator,
        )
        return None, _REFUSED
    log.info("connection %d (pid %d, uid %d) is initiator %s", cid, peer.pid, peer.uid, nexus)
    return nexus, _GOOD


def extension_reply(
    server: HelperServer, client: _Client, event: Negotiated | Identify
) -> tuple[bytes, Nexus | None]:
    """The server's answer to a handshake or an identify, and the client's nexus after it.

    :returns: the bytes to send (none after a plain QEMU handshake) and the nexus.
    """
    conn = client.conn
    if isinstance(event, Negotiated):
        if conn.state is not State.SEND_GRANT:  # QEMU's handshake: nothing more to say
            return b"", client.nexus
        return conn.send(grant(event.features, client.peer, server.allow_naming_uids)), client.nexus
    peer = client.peer
    assert peer is not None  # naming is granted only to a peer with credentials
    nexus, answer = identify(server.backend, peer, event, client.id)
    return conn.send(answer), nexus or client.nexus
