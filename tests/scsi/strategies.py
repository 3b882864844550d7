# SPDX-License-Identifier: MIT
"""Hypothesis strategies for every qompr.scsi value (as attrs' tests/strategies.py)."""

from __future__ import annotations

from hypothesis import strategies as st

from qompr.scsi import FullStatusDescriptor
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import SenseCode
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.scsi._transport_id import ISCSI_NAME_MAX
from qompr.scsi._transport_id import ISID_SEPARATOR

__all__ = [
    "full_status_data",
    "full_status_descriptors",
    "generations",
    "keys",
    "pr_in_cdbs",
    "pr_out_cdbs",
    "pr_out_parameters",
    "read_keys_data",
    "read_reservation_data",
    "register_and_move_parameters",
    "report_capabilities_data",
    "sense_codes",
    "sense_data",
    "transport_ids",
]

keys = st.integers(0, 2**64 - 1)
generations = st.integers(0, 2**32 - 1)
nibbles = st.integers(0, 15)
bytes8 = st.integers(0, 255)
uint16 = st.integers(0, 0xFFFF)

_IQN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.-:"
# Printable ASCII outside the iSCSI set plus 2-, 3- and 4-byte UTF-8 characters.  A fixed
# alphabet keeps generation fast (st.characters() builds Hypothesis' Unicode cache first).
_ODD_CHARS = _IQN_CHARS + "ABZ _,/\\\x7f\x01é€中𝄞"


#: Realistic iSCSI names, odd ones (no NUL; 55 characters are at most 220 UTF-8 bytes), and
#: names near the 223-byte limit.
iscsi_names = st.one_of(
    st.text(_IQN_CHARS, min_size=1, max_size=60).map(lambda s: "iqn.2003-01.org.example:" + s),
    st.text(_ODD_CHARS, min_size=1, max_size=55),
    st.text(_IQN_CHARS, min_size=ISCSI_NAME_MAX - 8, max_size=ISCSI_NAME_MAX),
)
isids = st.integers(0, 2**48 - 1)

transport_ids: st.SearchStrategy[TransportID] = st.one_of(
    keys.map(TransportID.fc),
    keys.map(TransportID.sas),
    iscsi_names.map(TransportID.iscsi),
    st.builds(
        TransportID.iscsi, iscsi_names.filter(lambda name: ISID_SEPARATOR not in name), isids
    ),
)

sense_codes: st.SearchStrategy[SenseCode] = st.one_of(
    st.sampled_from(list(SenseCode.names().values())),
    st.builds(SenseCode, nibbles, bytes8, bytes8),
)
sense_data: st.SearchStrategy[SenseData] = st.builds(
    SenseData, nibbles, bytes8, bytes8, deferred=st.booleans()
)

_PRIN_RESERVED = 0xE0_FF_FF_FF_FF_FF
_PROUT_RESERVED = 0xE0_00_FF_FF

pr_in_cdbs: st.SearchStrategy[PrInCdb] = st.builds(
    PrInCdb,
    st.integers(0, 31),
    uint16,
    control=bytes8,
    reserved=st.one_of(st.just(0), st.integers(0, 2**48 - 1).map(lambda v: v & _PRIN_RESERVED)),
)
pr_out_cdbs: st.SearchStrategy[PrOutCdb] = st.builds(
    PrOutCdb,
    st.integers(0, 31),
    nibbles,
    nibbles,
    st.integers(0, 2**32 - 1),
    control=bytes8,
    reserved=st.one_of(st.just(0), st.integers(0, 2**32 - 1).map(lambda v: v & _PROUT_RESERVED)),
)


@st.composite
def pr_out_parameters(draw: st.DrawFn) -> PrOutParameters:
    """Basic parameter lists, with and without SPEC_I_PT TransportIDs."""
    spec_i_pt = draw(st.booleans())
    tids = draw(st.lists(transport_ids, max_size=4)) if spec_i_pt else []
    return PrOutParameters(
        reservation_key=draw(keys),
        sa_key=draw(keys),
        spec_i_pt=spec_i_pt,
        all_tg_pt=draw(st.booleans()),
        aptpl=draw(st.booleans()),
        transport_ids=tids,
    )


register_and_move_parameters: st.SearchStrategy[RegisterAndMoveParameters] = st.builds(
    RegisterAndMoveParameters,
    transport_id=transport_ids,
    reservation_key=keys,
    sa_key=keys,
    unreg=st.booleans(),
    aptpl=st.booleans(),
    relative_target_port=uint16,
)

read_keys_data: st.SearchStrategy[ReadKeysData] = st.builds(
    ReadKeysData, generations, st.lists(keys, max_size=20).map(tuple)
)


@st.composite
def read_reservation_data(draw: st.DrawFn) -> ReadReservationData:
    """READ RESERVATION data with or without a reservation (any TYPE and SCOPE nibble)."""
    generation = draw(generations)
    if draw(st.booleans()):
        return ReadReservationData(generation)
    return ReadReservationData(
        generation, type=draw(nibbles), reservation_key=draw(keys), scope=draw(nibbles)
    )


report_capabilities_data: st.SearchStrategy[ReportCapabilitiesData] = st.builds(
    ReportCapabilitiesData,
    rlr_c=st.booleans(),
    crh=st.booleans(),
    sip_c=st.booleans(),
    atp_c=st.booleans(),
    ptpl_c=st.booleans(),
    tmv=st.booleans(),
    allow_commands=st.integers(0, 7),
    ptpl_a=st.booleans(),
    type_mask=uint16,
)

full_status_descriptors: st.SearchStrategy[FullStatusDescriptor] = st.builds(
    FullStatusDescriptor,
    keys,
    transport_ids,
    all_tg_pt=st.booleans(),
    r_holder=st.booleans(),
    scope=nibbles,
    type=nibbles,
    relative_target_port=uint16,
)
full_status_data: st.SearchStrategy[ReadFullStatusData] = st.builds(
    ReadFullStatusData, generations, st.lists(full_status_descriptors, max_size=5).map(tuple)
)
