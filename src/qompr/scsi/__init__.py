# SPDX-License-Identifier: MIT
"""SCSI values shared by every layer above the object model (pure: no I/O).

General layout (every name is re-exported here; the modules are private):

* ``_constants``: :class:`Opcode`, :class:`PrInAction`, :class:`PrOutAction`, :class:`PrType`,
  :class:`PrTypeMask`, :class:`PrScope`, :class:`SenseKey`, :class:`Asc`, :class:`HostStatus`,
  :class:`ProtocolId` and friends;
* ``_sense``: :class:`SenseCode` (QEMU's named codes) and :class:`SenseData` (fixed and
  descriptor sense bytes);
* ``_status``: :class:`ScsiStatus` and :class:`ScsiResult`, the value every command returns;
* ``_errors``: the decoding errors, each carrying the sense an engine should answer with;
* ``_cdb``: :class:`PrInCdb` and :class:`PrOutCdb`;
* ``_xfer``: QEMU's :func:`transfer_length` and the CDB sizes (the helper protocol needs no
  more of CDBs);
* ``_params``: the PR OUT parameter lists;
* ``_prin``: the PR IN parameter data;
* ``_transport_id``: :class:`TransportID` (FC, SAS, iSCSI);
* ``_nexus``: :class:`Nexus`, the I_T nexus.

Each module loads on first use of one of its names (PEP 562): a program that only needs
statuses and sense (``qompr-pr-helper`` serving SG_IO) does not build the parameter-list and
PR IN data classes.

Decoding hostile bytes raises nothing but :class:`qompr.errors.ScsiError` (or a subclass).
SPC-4 clause numbers in the docstrings follow revision 37 (PR IN is §6.15, PR OUT §6.16); the
byte layouts themselves come from ``docs/reference/spc4-pr.md`` §1 and QEMU's facts in
``docs/reference/qemu-pr-helper.md``.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from qompr._lazy import load as _load

if _TYPE_CHECKING:
    from qompr.scsi._cdb import PrInCdb as PrInCdb
    from qompr.scsi._cdb import PrOutCdb as PrOutCdb
    from qompr.scsi._constants import Asc as Asc
    from qompr.scsi._constants import HostStatus as HostStatus
    from qompr.scsi._constants import MaintenanceInAction as MaintenanceInAction
    from qompr.scsi._constants import Opcode as Opcode
    from qompr.scsi._constants import PrInAction as PrInAction
    from qompr.scsi._constants import ProtocolId as ProtocolId
    from qompr.scsi._constants import PrOutAction as PrOutAction
    from qompr.scsi._constants import PrScope as PrScope
    from qompr.scsi._constants import PrType as PrType
    from qompr.scsi._constants import PrTypeMask as PrTypeMask
    from qompr.scsi._constants import SenseKey as SenseKey
    from qompr.scsi._constants import ServiceActionIn16 as ServiceActionIn16
    from qompr.scsi._errors import CdbError as CdbError
    from qompr.scsi._errors import ParameterListError as ParameterListError
    from qompr.scsi._errors import ParameterListLengthError as ParameterListLengthError
    from qompr.scsi._errors import TransportIDError as TransportIDError
    from qompr.scsi._errors import TransportIDLengthError as TransportIDLengthError
    from qompr.scsi._nexus import DERIVED_IQN_PREFIX as DERIVED_IQN_PREFIX
    from qompr.scsi._nexus import Nexus as Nexus
    from qompr.scsi._nexus import derive_transport_id as derive_transport_id
    from qompr.scsi._params import BASIC_PARAMETER_LIST_SIZE as BASIC_PARAMETER_LIST_SIZE
    from qompr.scsi._params import PrOutParameters as PrOutParameters
    from qompr.scsi._params import RegisterAndMoveParameters as RegisterAndMoveParameters
    from qompr.scsi._params import decode_pr_out_parameters as decode_pr_out_parameters
    from qompr.scsi._prin import FullStatusDescriptor as FullStatusDescriptor
    from qompr.scsi._prin import PrInData as PrInData
    from qompr.scsi._prin import ReadFullStatusData as ReadFullStatusData
    from qompr.scsi._prin import ReadKeysData as ReadKeysData
    from qompr.scsi._prin import ReadReservationData as ReadReservationData
    from qompr.scsi._prin import ReportCapabilitiesData as ReportCapabilitiesData
    from qompr.scsi._prin import decode_pr_in_data as decode_pr_in_data
    from qompr.scsi._sense import SenseCode as SenseCode
    from qompr.scsi._sense import SenseData as SenseData
    from qompr.scsi._sense import sense_length as sense_length
    from qompr.scsi._status import CommandFailed as CommandFailed
    from qompr.scsi._status import ScsiResult as ScsiResult
    from qompr.scsi._status import ScsiStatus as ScsiStatus
    from qompr.scsi._transport_id import TransportID as TransportID
    from qompr.scsi._xfer import HELPER_CDB_SIZE as HELPER_CDB_SIZE
    from qompr.scsi._xfer import PR_CDB_SIZE as PR_CDB_SIZE
    from qompr.scsi._xfer import transfer_length as transfer_length

__all__ = [
    "BASIC_PARAMETER_LIST_SIZE",
    "DERIVED_IQN_PREFIX",
    "HELPER_CDB_SIZE",
    "PR_CDB_SIZE",
    "Asc",
    "CdbError",
    "CommandFailed",
    "FullStatusDescriptor",
    "HostStatus",
    "MaintenanceInAction",
    "Nexus",
    "Opcode",
    "ParameterListError",
    "ParameterListLengthError",
    "PrInAction",
    "PrInCdb",
    "PrInData",
    "PrOutAction",
    "PrOutCdb",
    "PrOutParameters",
    "PrScope",
    "PrType",
    "PrTypeMask",
    "ProtocolId",
    "ReadFullStatusData",
    "ReadKeysData",
    "ReadReservationData",
    "RegisterAndMoveParameters",
    "ReportCapabilitiesData",
    "ScsiResult",
    "ScsiStatus",
    "SenseCode",
    "SenseData",
    "SenseKey",
    "ServiceActionIn16",
    "TransportID",
    "TransportIDError",
    "TransportIDLengthError",
    "decode_pr_in_data",
    "decode_pr_out_parameters",
    "derive_transport_id",
    "sense_length",
    "transfer_length",
]

# Each public name, by the module that defines it (loaded on first access).
_LAZY = {
    "HELPER_CDB_SIZE": "qompr.scsi._xfer",
    "PR_CDB_SIZE": "qompr.scsi._xfer",
    "PrInCdb": "qompr.scsi._cdb",
    "PrOutCdb": "qompr.scsi._cdb",
    "transfer_length": "qompr.scsi._xfer",
    "Asc": "qompr.scsi._constants",
    "HostStatus": "qompr.scsi._constants",
    "MaintenanceInAction": "qompr.scsi._constants",
    "Opcode": "qompr.scsi._constants",
    "PrInAction": "qompr.scsi._constants",
    "ProtocolId": "qompr.scsi._constants",
    "PrOutAction": "qompr.scsi._constants",
    "PrScope": "qompr.scsi._constants",
    "PrType": "qompr.scsi._constants",
    "PrTypeMask": "qompr.scsi._constants",
    "SenseKey": "qompr.scsi._constants",
    "ServiceActionIn16": "qompr.scsi._constants",
    "CdbError": "qompr.scsi._errors",
    "ParameterListError": "qompr.scsi._errors",
    "ParameterListLengthError": "qompr.scsi._errors",
    "TransportIDError": "qompr.scsi._errors",
    "TransportIDLengthError": "qompr.scsi._errors",
    "DERIVED_IQN_PREFIX": "qompr.scsi._nexus",
    "Nexus": "qompr.scsi._nexus",
    "derive_transport_id": "qompr.scsi._nexus",
    "BASIC_PARAMETER_LIST_SIZE": "qompr.scsi._params",
    "PrOutParameters": "qompr.scsi._params",
    "RegisterAndMoveParameters": "qompr.scsi._params",
    "decode_pr_out_parameters": "qompr.scsi._params",
    "FullStatusDescriptor": "qompr.scsi._prin",
    "PrInData": "qompr.scsi._prin",
    "ReadFullStatusData": "qompr.scsi._prin",
    "ReadKeysData": "qompr.scsi._prin",
    "ReadReservationData": "qompr.scsi._prin",
    "ReportCapabilitiesData": "qompr.scsi._prin",
    "decode_pr_in_data": "qompr.scsi._prin",
    "SenseCode": "qompr.scsi._sense",
    "SenseData": "qompr.scsi._sense",
    "sense_length": "qompr.scsi._sense",
    "CommandFailed": "qompr.scsi._status",
    "ScsiResult": "qompr.scsi._status",
    "ScsiStatus": "qompr.scsi._status",
    "TransportID": "qompr.scsi._transport_id",
}


def __getattr__(name: str) -> _Any:
    return _load(__name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted(__all__)
