# SPDX-License-Identifier: MIT
"""The I_T nexus value other layers key PR state by."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qompr.scsi import DERIVED_IQN_PREFIX
from qompr.scsi import Nexus
from qompr.scsi import TransportID
from qompr.scsi import derive_transport_id


def test_defaults() -> None:
    nexus = Nexus("A")
    assert nexus.initiator == "A"
    assert nexus.target_port == 1
    assert nexus.transport_id == TransportID.iscsi("iqn.2026-11.org.qompr:a")
    assert DERIVED_IQN_PREFIX == "iqn.2026-11.org.qompr:"


@pytest.mark.parametrize(
    "name",
    ["iqn.1994-05.com.redhat:client", "IQN.1994-05.COM.X:Y", "eui.0123456789ABCDEF", "naa.5001405"],
)
def test_iscsi_names_are_used_as_given(name: str) -> None:
    assert Nexus(name).transport_id == TransportID.iscsi(name)


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Host A_1/x", "iqn.2026-11.org.qompr:host-a-1-x"),
        ("vm-01.example:disk", "iqn.2026-11.org.qompr:vm-01.example:disk"),
        ("βeta", "iqn.2026-11.org.qompr:-eta"),
        ("iqnfoo", "iqn.2026-11.org.qompr:iqnfoo"),  # no dot: not an iqn. name
    ],
)
def test_sanitised_names(label: str, name: str) -> None:
    assert Nexus(label).transport_id.iscsi_name == name
    assert derive_transport_id(label) == TransportID.iscsi(name)


def test_explicit_transport_id() -> None:
    tid = TransportID.fc(0x21000024FF000001)
    nexus = Nexus("host", 2, transport_id=tid)
    assert nexus.transport_id is tid
    assert nexus.target_port == 2


def test_identity_is_transport_id_and_port() -> None:
    tid = TransportID.iscsi("iqn.2003-01.org.linux:abc", 0x400001370000)
    assert Nexus("A") == Nexus("A")
    assert hash(Nexus("A")) == hash(Nexus("A"))
    assert Nexus("A") != Nexus("B")
    assert Nexus("A") != Nexus("A", 2)
    assert Nexus("x", transport_id=tid) == Nexus("y", transport_id=tid)
    # A new ISID is a different I_T nexus (docs/reference/spc4-pr.md §2.1).
    assert Nexus("x", transport_id=tid) != Nexus("x", transport_id=tid.without_isid())
    assert Nexus("A") == Nexus("other label", transport_id=derive_transport_id("A"))
    assert len({Nexus("A"), Nexus("A"), Nexus("B")}) == 2


def test_repr_and_str() -> None:
    nexus = Nexus("A")
    assert repr(nexus).startswith("Nexus('A', 1, transport_id=TransportID(")
    assert str(nexus) == "A (iqn.2026-11.org.qompr:a) via target port 1"


def test_validators() -> None:
    with pytest.raises(ValueError, match="initiator"):
        Nexus("")
    with pytest.raises(TypeError, match="initiator"):
        Nexus(b"A")  # type: ignore[arg-type]
    for port in (0, 0x10000):
        with pytest.raises(ValueError, match="target_port"):
            Nexus("A", port)
    with pytest.raises(TypeError, match="transport_id"):
        Nexus("A", transport_id="iqn.x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Nexus("A", 1, TransportID.fc(1))  # type: ignore[call-arg]  # keyword-only
    with pytest.raises(ValueError):
        Nexus("x" * 300)  # derived name longer than 223 bytes


def test_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Nexus("A").target_port = 2  # type: ignore[misc]


@given(st.text(min_size=1, max_size=100).filter(lambda s: "\0" not in s))
def test_derived_names_are_stable_and_clean(label: str) -> None:
    tid = Nexus(label).transport_id
    assert tid == Nexus(label).transport_id
    assert tid.isid is None
    name = tid.iscsi_name
    assert name is not None
    if not label.lower().startswith(("iqn.", "eui.", "naa.")):
        assert name.startswith(DERIVED_IQN_PREFIX)
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789.:-")
    assert TransportID.from_bytes(tid.to_bytes()) == tid


def test_evolve_derives_afresh() -> None:
    tid = TransportID.fc(1)
    nexus = Nexus("A")
    assert attrs.evolve(nexus, initiator="B") == Nexus("B")
    assert attrs.evolve(nexus, target_port=3) == Nexus("A", 3)
    assert attrs.evolve(nexus, transport_id=tid).transport_id is tid
    assert attrs.evolve(Nexus("A", transport_id=tid), initiator="B").transport_id is tid
