# SPDX-License-Identifier: MIT
"""``pr-manager-multipath``: persistent reservations on dm-multipath devices (libmpathpersist).

General layout (the modules are private; every public name is re-exported here):

* ``_abi``: libmpathpersist's constants, return codes and ctypes structs (checked against
  ``mpath_persist.h`` by the tests);
* ``_translate``: pure translation of CDBs to library calls and of return codes to answers,
  as qemu-pr-helper's multipath path does it, without its defects;
* ``_library``: the lazily loaded ctypes binding and the :class:`MpathPersistApi` interface;
* ``_manager``: the QOM type :class:`PRManagerMultipath`;
* ``_sgio``: the TEST UNIT READY of the sense reconstruction (on :mod:`qompr.linux.sgio`);
* ``_multipathd``: a client of multipathd's control socket;
* ``_doctor``: the ``qompr doctor`` checks (:func:`doctor_checks`);
* :func:`is_multipath` and :func:`open_control` come from :mod:`qompr.linux.devmapper`.

Importing this package loads no shared library.
"""

from qompr.linux.devmapper import is_multipath as is_multipath
from qompr.linux.devmapper import open_control as open_control
from qompr.managers.multipath._abi import MPATH_MAX_PARAM_LEN as MPATH_MAX_PARAM_LEN
from qompr.managers.multipath._abi import MPATH_MX_TIDS as MPATH_MX_TIDS
from qompr.managers.multipath._abi import MpathReturn as MpathReturn
from qompr.managers.multipath._abi import PrinResp as PrinResp
from qompr.managers.multipath._abi import ProutParamDescriptor as ProutParamDescriptor
from qompr.managers.multipath._abi import ProutParamStorage as ProutParamStorage
from qompr.managers.multipath._abi import TransportIDStruct as TransportIDStruct
from qompr.managers.multipath._doctor import DoctorCheck as DoctorCheck
from qompr.managers.multipath._doctor import doctor_checks as doctor_checks
from qompr.managers.multipath._doctor import parse_multipath_conf as parse_multipath_conf
from qompr.managers.multipath._doctor import reservation_keys as reservation_keys
from qompr.managers.multipath._library import LibMpathPersist as LibMpathPersist
from qompr.managers.multipath._library import MpathPersistApi as MpathPersistApi
from qompr.managers.multipath._manager import PRManagerMultipath as PRManagerMultipath
from qompr.managers.multipath._multipathd import multipathd_command as multipathd_command
from qompr.managers.multipath._translate import PrInRequest as PrInRequest
from qompr.managers.multipath._translate import PrOutRequest as PrOutRequest
from qompr.managers.multipath._translate import RawTransportID as RawTransportID
from qompr.managers.multipath._translate import decode_pr_in as decode_pr_in
from qompr.managers.multipath._translate import decode_pr_out as decode_pr_out
from qompr.managers.multipath._translate import reconstruct_answer as reconstruct_answer

__all__ = [
    "MPATH_MAX_PARAM_LEN",
    "MPATH_MX_TIDS",
    "DoctorCheck",
    "LibMpathPersist",
    "MpathPersistApi",
    "MpathReturn",
    "PRManagerMultipath",
    "PrInRequest",
    "PrOutRequest",
    "PrinResp",
    "ProutParamDescriptor",
    "ProutParamStorage",
    "RawTransportID",
    "TransportIDStruct",
    "decode_pr_in",
    "decode_pr_out",
    "doctor_checks",
    "is_multipath",
    "multipathd_command",
    "open_control",
    "parse_multipath_conf",
    "reservation_keys",
]
