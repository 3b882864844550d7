# SPDX-License-Identifier: MIT
"""The state of one logical unit as a JSON document, for stores that keep it whole.

A shared store (PostgreSQL, or a plugin's etcd or Kubernetes store) keeps each logical
unit's state as one value that one transaction reads and replaces, so that every command on
the logical unit is serialized by one lock or one compare-and-swap.  The document::

    {"v": 1,
     "generation": 3,                       PRgeneration
     "aptpl": false,                        the last valid APTPL bit
     "registrations": [                     in registration order
         {"nexus": [1, "<TransportID hex>", "vm:alpha"], "key": "000000000000abcd",
          "all_tg_pt": false, "aptpl": false}],
     "reservation": {"type": 5, "scope": 0, "holder": [1, "...", "vm:alpha"]} | null,
     "legacy_holder": [1, "...", "vm:beta"] | null,
     "unit_attentions": [[[1, "...", "vm:beta"], [[6, 42, 3]]]]}

An I_T nexus is ``[RELATIVE TARGET PORT IDENTIFIER, TransportID bytes in hex, initiator
label]`` (the label is what READ FULL STATUS cannot show: the name a rule gave the initiator);
a reservation key is 16 hex digits (JSON numbers lose 64-bit precision in many readers); a
sense code is ``[key, ASC, ASCQ]``.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import Final

from qompr.managers.emulated._state import LUState
from qompr.managers.emulated._state import Registration
from qompr.managers.emulated._state import Reservation
from qompr.scsi import Nexus
from qompr.scsi import PrType
from qompr.scsi import SenseCode
from qompr.scsi import TransportID

__all__ = ["DOCUMENT_VERSION", "CodecError", "state_from_document", "state_to_document"]

#: The document's layout (``"v"``).
DOCUMENT_VERSION: Final = 1

NexusDoc = list[Any]


class CodecError(ValueError):
    """A document that is not a logical unit's state of a known layout."""


@functools.lru_cache(maxsize=65536)
def _nexus_doc(nexus: Nexus) -> tuple[int, str, str]:
    return (nexus.target_port, nexus.transport_id.to_bytes().hex(), nexus.initiator)


@functools.lru_cache(maxsize=65536)
def _doc_nexus(port: int, tid: str, label: str) -> Nexus:
    transport_id = TransportID.from_bytes(bytes.fromhex(tid))
    return Nexus(label or transport_id.identifier, port, transport_id=transport_id)


def _nexus(doc: Any) -> Nexus:
    port, tid, label = doc
    return _doc_nexus(int(port), str(tid), str(label))


def state_to_document(state: LUState) -> dict[str, Any]:
    """The JSON-able document of *state* (see the module docstring)."""
    res = state.reservation
    return {
        "v": DOCUMENT_VERSION,
        "generation": state.generation,
        "aptpl": state.aptpl,
        "registrations": [
            {
                "nexus": _nexus_doc(nexus),
                "key": f"{reg.key:016x}",
                "all_tg_pt": reg.all_tg_pt,
                "aptpl": reg.aptpl,
            }
            for nexus, reg in state.registrations.items()
        ],
        "reservation": None
        if res is None
        else {"type": int(res.type), "scope": res.scope, "holder": _nexus_doc(res.holder)},
        "legacy_holder": None if state.legacy_holder is None else _nexus_doc(state.legacy_holder),
        "unit_attentions": [
            [_nexus_doc(nexus), [[int(c.key), c.asc, c.ascq] for c in queue]]
            for nexus, queue in state.unit_attentions.items()
            if queue
        ],
    }


def state_from_document(doc: Any) -> LUState:
    """The state a document holds; ``{}`` (a logical unit just created) is the empty state.

    :raises CodecError: if *doc* is not such a document.
    """
    if doc == {}:
        return LUState()
    try:
        if doc["v"] != DOCUMENT_VERSION:
            raise CodecError(f"state document layout {doc['v']} is not supported")
        res = doc["reservation"]
        legacy = doc["legacy_holder"]
        return LUState(
            generation=int(doc["generation"]),
            registrations={
                _nexus(r["nexus"]): Registration(
                    int(r["key"], 16), all_tg_pt=bool(r["all_tg_pt"]), aptpl=bool(r["aptpl"])
                )
                for r in doc["registrations"]
            },
            reservation=None
            if res is None
            else Reservation(PrType(res["type"]), _nexus(res["holder"]), scope=int(res["scope"])),
            aptpl=bool(doc["aptpl"]),
            legacy_holder=None if legacy is None else _nexus(legacy),
            unit_attentions={
                _nexus(n): [SenseCode(int(k), int(a), int(q)) for k, a, q in codes]
                for n, codes in doc["unit_attentions"]
            },
        )
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"not a PR state document: {exc!r}") from exc
