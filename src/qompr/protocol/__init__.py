# SPDX-License-Identifier: MIT
"""The qemu-pr-helper socket protocol as a sans-IO core (no sockets, no threads, no asyncio).

:class:`HelperConnection` plays either role; the adapters in :mod:`qompr.transport` move its
bytes and file descriptors over real sockets.  See :mod:`qompr.protocol.helper` for the wire
format and :mod:`qompr.protocol._state` for the transition tables.
"""

from qompr.protocol import helper as _helper
from qompr.protocol._state import Role as Role
from qompr.protocol._state import State as State
from qompr.protocol._state import state_diagram as state_diagram
from qompr.protocol.helper import DATA_SIZE as DATA_SIZE
from qompr.protocol.helper import EOF_MESSAGE as EOF_MESSAGE
from qompr.protocol.helper import MAX_FDS as MAX_FDS
from qompr.protocol.helper import NEED_DATA as NEED_DATA
from qompr.protocol.helper import RESPONSE_HEADER_SIZE as RESPONSE_HEADER_SIZE
from qompr.protocol.helper import SENSE_SIZE as SENSE_SIZE
from qompr.protocol.helper import ConnectionClosed as ConnectionClosed
from qompr.protocol.helper import Event as Event
from qompr.protocol.helper import Feature as Feature
from qompr.protocol.helper import Granted as Granted
from qompr.protocol.helper import Handshake as Handshake
from qompr.protocol.helper import HelperConnection as HelperConnection
from qompr.protocol.helper import HelperRequest as HelperRequest
from qompr.protocol.helper import HelperResponse as HelperResponse
from qompr.protocol.helper import Identify as Identify
from qompr.protocol.helper import NeedData as NeedData
from qompr.protocol.helper import Negotiated as Negotiated
from qompr.protocol.helper import ReadSpec as ReadSpec

# The wire names are helper's own list; this package adds the state machine's.
__all__ = ["Role", "State", "state_diagram"]
__all__ += _helper.__all__
