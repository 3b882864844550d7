# SPDX-License-Identifier: MIT
"""``pr-manager-emulated``: a complete software SPC-4 persistent-reservation engine.

Layers, each importing only those before it::

    _policy    where LIO departs from SPC-4, one switch per departure
    _state     the state of one logical unit and the changes a command makes
    _access    which commands a reservation lets through (tables)
    _outcome   the engine's configuration and answer (EngineConfig, EngineOutcome)
    _decode    PR IN/OUT CDBs read on the fast path, cached fixed answers
    _actions   the PR OUT service actions (REGISTER ... REGISTER AND MOVE)
    _engine    the device server: state + command -> result + changes (no I/O)
    _store     the store contract and the memory store (one transaction per command)
    _sqlite    the SQLite store (a file shared by processes)
    _codec     one logical unit's state as a JSON document (for shared stores)
    _postgres  the PostgreSQL store (shared by hosts; imported only when used)
    _open      which store a ``state`` value means (plugins: ``qompr_emulated_store``)
    _identity  logical unit behind an fd, initiator behind a client process
    _luid      the ``lu-id`` rules: inode, path, wwn (VPD page 83h)
    _manager   the QOM type

SPC-4 clause numbers follow revision 37, as everywhere in qompr (persistent reservations
§5.12, PR IN §6.15, PR OUT §6.16; ``docs/reference/README.md``).  See ``docs/emulated.md``.
"""

from typing import TYPE_CHECKING
from typing import Any

from qompr._lazy import load as _load
from qompr.managers.emulated._access import AccessClass as AccessClass
from qompr.managers.emulated._access import classify as classify
from qompr.managers.emulated._engine import Engine as Engine
from qompr.managers.emulated._engine import EngineConfig as EngineConfig
from qompr.managers.emulated._identity import InitiatorRule as InitiatorRule
from qompr.managers.emulated._identity import initiator_name as initiator_name
from qompr.managers.emulated._identity import lu_identity as lu_identity
from qompr.managers.emulated._identity import nexus_for_peer as nexus_for_peer
from qompr.managers.emulated._identity import nexus_for_pid as nexus_for_pid
from qompr.managers.emulated._identity import vm_name as vm_name
from qompr.managers.emulated._luid import LuIdRule as LuIdRule
from qompr.managers.emulated._luid import wwn_from_vpd83 as wwn_from_vpd83
from qompr.managers.emulated._manager import DEFAULT_MAX_REGISTRATIONS as DEFAULT_MAX_REGISTRATIONS
from qompr.managers.emulated._manager import DEFAULT_TIMEOUT_MS as DEFAULT_TIMEOUT_MS
from qompr.managers.emulated._manager import PRManagerEmulated as PRManagerEmulated
from qompr.managers.emulated._open import open_store as open_store
from qompr.managers.emulated._outcome import EngineOutcome as EngineOutcome
from qompr.managers.emulated._policy import LIO as LIO
from qompr.managers.emulated._policy import SPC4 as SPC4
from qompr.managers.emulated._policy import Mode as Mode
from qompr.managers.emulated._policy import Policy as Policy
from qompr.managers.emulated._state import POWER_ON_OCCURRED as POWER_ON_OCCURRED
from qompr.managers.emulated._state import Changes as Changes
from qompr.managers.emulated._state import LUState as LUState
from qompr.managers.emulated._state import Registration as Registration
from qompr.managers.emulated._state import Reservation as Reservation
from qompr.managers.emulated._state import StateSnapshot as StateSnapshot
from qompr.managers.emulated._store import MemoryStore as MemoryStore
from qompr.managers.emulated._store import StateFileError as StateFileError
from qompr.managers.emulated._store import Store as Store
from qompr.managers.emulated._store import StoreError as StoreError
from qompr.managers.emulated._store import StoreFailureError as StoreFailureError
from qompr.managers.emulated._store import StoreOptions as StoreOptions
from qompr.managers.emulated._store import StoreUnavailableError as StoreUnavailableError

if TYPE_CHECKING:
    from qompr.linux._peer import PeerCredentials as PeerCredentials
    from qompr.linux._peer import peer_credentials as peer_credentials
    from qompr.managers.emulated._sqlite import SqliteStore as SqliteStore

__all__ = [
    "DEFAULT_MAX_REGISTRATIONS",
    "DEFAULT_TIMEOUT_MS",
    "LIO",
    "POWER_ON_OCCURRED",
    "SPC4",
    "AccessClass",
    "Changes",
    "Engine",
    "EngineConfig",
    "EngineOutcome",
    "InitiatorRule",
    "LUState",
    "LuIdRule",
    "MemoryStore",
    "Mode",
    "PRManagerEmulated",
    "PeerCredentials",
    "Policy",
    "Registration",
    "Reservation",
    "SqliteStore",
    "StateFileError",
    "StateSnapshot",
    "Store",
    "StoreError",
    "StoreFailureError",
    "StoreOptions",
    "StoreUnavailableError",
    "classify",
    "initiator_name",
    "lu_identity",
    "nexus_for_peer",
    "nexus_for_pid",
    "open_store",
    "peer_credentials",
    "vm_name",
    "wwn_from_vpd83",
]

# Loaded on first use (PEP 562): a manager in memory (``qompr persist --object``) imports
# neither sqlite3 nor the peer credentials' socket.
_LAZY = {
    "PeerCredentials": "qompr.linux._peer",
    "peer_credentials": "qompr.linux._peer",
    "SqliteStore": "qompr.managers.emulated._sqlite",
}


def __getattr__(name: str) -> Any:
    return _load(__name__, _LAZY, name)
