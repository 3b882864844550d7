# SPDX-License-Identifier: MIT
"""The libmpathpersist ABI: constants, return codes and the ctypes structs.

Written from ``docs/reference/libmpathpersist.md`` (multipath-tools ``mpath_persist.h``) and
checked against the installed header by ``tests/managers/test_multipath.py``, which compiles a
C program printing ``sizeof`` / ``offsetof`` for every struct and field declared here.  Sizes
and offsets below are those of x86-64 (natural alignment, 8-byte pointers).

Byte order, as the library hands values over (it converts the wire format on the way in):

* ``prgeneration``, ``additional_length`` (READ KEYS / READ RESERVATION), ``length`` and
  ``pr_type_mask`` (REPORT CAPABILITIES) are in *host* order;
* keys (``key_list``, ``key``, ``sa_key``) and TransportID payloads stay as wire bytes.
"""

from __future__ import annotations

import ctypes
import enum

__all__ = [
    "MPATH_MAX_PARAM_LEN",
    "MPATH_MX_TIDS",
    "MPATH_MX_TID_LEN",
    "MpathReturn",
    "PrinCapDescr",
    "PrinFullDescr",
    "PrinReadDescr",
    "PrinResp",
    "PrinRespUnion",
    "PrinResvDescr",
    "PrintFulldescrList",
    "ProutParamDescriptor",
    "ProutParamStorage",
    "TransportIDPayload",
    "TransportIDStruct",
]

#: Largest parameter / response buffer the library handles (bytes).
MPATH_MAX_PARAM_LEN = 8192
#: Most TransportIDs a PR OUT parameter descriptor may carry.
MPATH_MX_TIDS = 32
#: Size of the iSCSI name member of ``struct transportid``.
MPATH_MX_TID_LEN = 256


class MpathReturn(enum.IntEnum):
    """Return codes of ``mpath_persistent_reserve_in`` / ``_out`` (``MPATH_PR_*``)."""

    SKIP = -1
    SUCCESS = 0
    SYNTAX_ERROR = 1
    SENSE_NOT_READY = 2
    SENSE_MEDIUM_ERROR = 3
    SENSE_HARDWARE_ERROR = 4
    ILLEGAL_REQ = 5
    SENSE_UNIT_ATTENTION = 6
    SENSE_INVALID_OP = 7
    SENSE_ABORTED_COMMAND = 8
    NO_SENSE = 9
    SENSE_MALFORMED = 10
    RESERV_CONFLICT = 11
    FILE_ERROR = 12
    DMMP_ERROR = 13
    THREAD_ERROR = 14
    OTHER = 15
    #: Internal to the library (0.12/0.13); never meant to reach a caller.
    RETRYABLE_ERROR = 16
    #: Internal to the library (0.13); never meant to reach a caller.
    SUCCESS_UNREGISTER = 17


class PrinReadDescr(ctypes.Structure):
    """``struct prin_readdescr``: READ KEYS (and, overlaid, READ RESERVATION)."""

    _fields_ = (
        ("prgeneration", ctypes.c_uint32),
        ("additional_length", ctypes.c_uint32),
        ("key_list", ctypes.c_uint8 * MPATH_MAX_PARAM_LEN),
    )


class PrinResvDescr(ctypes.Structure):
    """``struct prin_resvdescr``: READ RESERVATION; the SPC wire layout after the header."""

    _fields_ = (
        ("prgeneration", ctypes.c_uint32),
        ("additional_length", ctypes.c_uint32),
        ("key", ctypes.c_uint8 * 8),
        ("_obsolete", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint8),
        ("scope_type", ctypes.c_uint8),
        ("_obsolete1", ctypes.c_uint16),
    )


class PrinCapDescr(ctypes.Structure):
    """``struct prin_capdescr``: REPORT CAPABILITIES."""

    _fields_ = (
        ("length", ctypes.c_uint16),
        ("flags", ctypes.c_uint8 * 2),
        ("pr_type_mask", ctypes.c_uint16),
        ("_reserved", ctypes.c_uint16),
    )


class TransportIDPayload(ctypes.Union):
    """The anonymous union of ``struct transportid``."""

    _fields_ = (
        ("n_port_name", ctypes.c_uint8 * 8),
        ("sas_address", ctypes.c_uint8 * 8),
        ("iscsi_name", ctypes.c_uint8 * MPATH_MX_TID_LEN),
    )


class TransportIDStruct(ctypes.Structure):
    """``struct transportid`` (258 bytes, byte-aligned).

    For iSCSI, ``iscsi_name`` holds the wire TransportID from its byte 2 on: the big-endian
    ADDITIONAL LENGTH, then the name (this is how qemu-pr-helper fills it and how the library
    writes it back out).
    """

    _anonymous_ = ("u",)
    _fields_ = (
        ("format_code", ctypes.c_uint8),
        ("protocol_id", ctypes.c_uint8),
        ("u", TransportIDPayload),
    )


class PrinFullDescr(ctypes.Structure):
    """``struct prin_fulldescr``: one READ FULL STATUS descriptor as the library decodes it."""

    _fields_ = (
        ("key", ctypes.c_uint8 * 8),
        ("flag", ctypes.c_uint8),
        ("scope_type", ctypes.c_uint8),
        ("rtpi", ctypes.c_uint16),
        ("trnptid", TransportIDStruct),
    )


class PrintFulldescrList(ctypes.Structure):
    """``struct print_fulldescr_list`` (sic): READ FULL STATUS; ends in a flexible array."""

    _fields_ = (
        ("prgeneration", ctypes.c_uint32),
        ("number_of_descriptor", ctypes.c_uint32),
        ("private_buffer", ctypes.c_uint8 * MPATH_MAX_PARAM_LEN),
        ("descriptors", ctypes.POINTER(PrinFullDescr) * 0),
    )


class PrinRespUnion(ctypes.Union):
    """The ``prin_descriptor`` union of ``struct prin_resp``."""

    _fields_ = (
        ("prin_readkeys", PrinReadDescr),
        ("prin_readresv", PrinResvDescr),
        ("prin_readcap", PrinCapDescr),
        ("prin_readfd", PrintFulldescrList),
    )


class PrinResp(ctypes.Structure):
    """``struct prin_resp``: what ``mpath_persistent_reserve_in`` fills in (8200 bytes)."""

    _fields_ = (("prin_descriptor", PrinRespUnion),)


_PROUT_HEAD = (
    ("key", ctypes.c_uint8 * 8),
    ("sa_key", ctypes.c_uint8 * 8),
    ("_obsolete", ctypes.c_uint32),
    ("sa_flags", ctypes.c_uint8),
    ("_reserved", ctypes.c_uint8),
    ("_obsolete1", ctypes.c_uint16),
    ("private_buffer", ctypes.c_uint8 * MPATH_MAX_PARAM_LEN),
    ("num_transportid", ctypes.c_uint32),
)


class ProutParamDescriptor(ctypes.Structure):
    """``struct prout_param_descriptor`` exactly as declared: ``trnptid_list`` is flexible.

    The caller must allocate room for the pointers; :class:`ProutParamStorage` does.
    """

    _fields_ = (*_PROUT_HEAD, ("trnptid_list", ctypes.POINTER(TransportIDStruct) * 0))


class ProutParamStorage(ctypes.Structure):
    """:class:`ProutParamDescriptor` with room for :data:`MPATH_MX_TIDS` TransportID pointers.

    qemu-pr-helper allocates the same (``sizeof`` the struct plus 32 pointers, since QEMU 5.0
    and 4.2.1).  The field offsets are those of :class:`ProutParamDescriptor` (tested), so a
    pointer to this struct is a valid ``struct prout_param_descriptor *``.
    """

    _fields_ = (*_PROUT_HEAD, ("trnptid_list", ctypes.POINTER(TransportIDStruct) * MPATH_MX_TIDS))
