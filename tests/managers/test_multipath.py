# SPDX-License-Identifier: MIT
"""``pr-manager-multipath``: CDB and parameter translation, answers, ABI layouts, helpers.

The translation is tested against :class:`FakeLibMpathPersistForUnitTests`, a Python stand-in
for the library's three calls that reads the ctypes structs the way libmpathpersist reads them
and fills the response the way it fills it (host-order header fields, wire-order keys).  It is
injected through the manager's ``library`` attribute; the real library is never initialised
here (tests/vm/test_multipath.py runs the real one against LIO).

The struct layouts are checked against the installed ``mpath_persist.h`` by compiling a C
program that prints ``sizeof`` and ``offsetof`` (multipath-tools ships the header on Debian).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from qompr.errors import ConnectError
from qompr.errors import ObjectError
from qompr.errors import StateError
from qompr.linux import devmapper as _dm
from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.managers import PRManagerMultipath
from qompr.managers.multipath import MPATH_MX_TIDS
from qompr.managers.multipath import LibMpathPersist
from qompr.managers.multipath import MpathReturn
from qompr.managers.multipath import PrinResp
from qompr.managers.multipath import ProutParamDescriptor
from qompr.managers.multipath import ProutParamStorage
from qompr.managers.multipath import RawTransportID
from qompr.managers.multipath import TransportIDStruct
from qompr.managers.multipath import _abi
from qompr.managers.multipath import _doctor
from qompr.managers.multipath import _multipathd
from qompr.managers.multipath import _sgio
from qompr.managers.multipath import decode_pr_out
from qompr.managers.multipath import doctor_checks
from qompr.managers.multipath import is_multipath
from qompr.managers.multipath import multipathd_command
from qompr.managers.multipath import parse_multipath_conf
from qompr.managers.multipath import reservation_keys
from qompr.managers.multipath._doctor import KeySetting
from qompr.qom import ObjectTree
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import TransportID

KEY = 0x123ABC
OTHER = 0xBBB


# -- the fake library ---------------------------------------------------------------------------


@attrs.define
class OutCall:
    """What one ``mpath_persistent_reserve_out`` call received, read back from the structs."""

    fd: int
    service_action: int
    scope: int
    type: int
    key: bytes
    sa_key: bytes
    sa_flags: int
    transport_ids: list[RawTransportID]
    noisy: bool
    verbose: int


class FakeLibMpathPersistForUnitTests:
    """A stand-in for libmpathpersist, for unit tests only (never a manager's default).

    ``rc`` is what the next calls return.  PR IN fills the response as the library does after
    its own conversions: PRGENERATION, ADDITIONAL LENGTH, LENGTH and the type mask in host
    order; keys as wire bytes.
    """

    def __init__(self) -> None:
        self.rc = 0
        self.generation = 7
        self.keys: list[int] = []
        self.reservation: tuple[int, int] | None = None  # (key, scope_type)
        self.capabilities = (8, 0x1D, 0x90, 0xEA01)
        self.additional_length: int | None = None  # overrides the computed one
        self.init_error: ConnectError | None = None
        self.multipathd_error: ConnectError | None = None
        self.init_calls = 0
        self.in_calls: list[tuple[int, int, bool, int]] = []
        self.out_calls: list[OutCall] = []

    def init(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def check_multipathd(self) -> str:
        if self.multipathd_error is not None:
            raise self.multipathd_error
        return "@fake"

    def reserve_in(
        self, fd: int, service_action: int, resp: PrinResp, *, noisy: bool, verbose: int
    ) -> int:
        self.in_calls.append((fd, service_action, noisy, verbose))
        # The library leaves the buffer alone on failure: fill it with junk to prove that
        # nothing of it leaks into a failed answer.
        ctypes.memset(ctypes.addressof(resp), 0xA5, ctypes.sizeof(resp))
        if self.rc != 0:
            return self.rc
        union = resp.prin_descriptor
        if service_action == PrInAction.REPORT_CAPABILITIES:
            ctypes.memset(ctypes.addressof(resp), 0, ctypes.sizeof(resp))
            length, flag0, flag1, mask = self.capabilities
            union.prin_readcap.length = length
            union.prin_readcap.flags[0] = flag0
            union.prin_readcap.flags[1] = flag1
            union.prin_readcap.pr_type_mask = mask
            return 0
        ctypes.memset(ctypes.addressof(resp), 0, ctypes.sizeof(resp))
        if service_action == PrInAction.READ_KEYS:
            body = b"".join(key.to_bytes(8, "big") for key in self.keys)
        else:
            body = b""
            if self.reservation is not None:
                key, scope_type = self.reservation
                body = key.to_bytes(8, "big") + bytes(5) + bytes((scope_type,)) + bytes(2)
        union.prin_readkeys.prgeneration = self.generation
        length = len(body) if self.additional_length is None else self.additional_length
        union.prin_readkeys.additional_length = length
        ctypes.memmove(ctypes.addressof(union.prin_readkeys.key_list), body, len(body))
        return 0

    def reserve_out(
        self,
        fd: int,
        service_action: int,
        *,
        scope: int,
        type: int,
        param: ProutParamStorage,
        noisy: bool,
        verbose: int,
    ) -> int:
        tids = [
            RawTransportID.from_struct(param.trnptid_list[n].contents)
            for n in range(param.num_transportid)
        ]
        self.out_calls.append(
            OutCall(
                fd,
                service_action,
                scope,
                type,
                bytes(param.key),
                bytes(param.sa_key),
                param.sa_flags,
                tids,
                noisy,
                verbose,
            )
        )
        return self.rc


@pytest.fixture
def fake() -> FakeLibMpathPersistForUnitTests:
    return FakeLibMpathPersistForUnitTests()


@pytest.fixture
def tur_calls() -> list[int]:
    return []


@pytest.fixture
def manager(
    tree: ObjectTree, fake: FakeLibMpathPersistForUnitTests, tur_calls: list[int]
) -> PRManagerMultipath:
    obj = tree.object_add("pr-manager-multipath", "mp0", complete=False)
    assert isinstance(obj, PRManagerMultipath)
    obj.library = fake

    def tur(fd: int) -> ScsiResult:
        tur_calls.append(fd)
        return ScsiResult.good()

    obj.tur_sender = tur
    tree.complete(obj)
    return obj


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    """A read-write fd (the fake does not care what it refers to)."""
    path = tmp_path / "disk"
    path.write_bytes(bytes(512))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def pr_in(action: int, alloc: int = 8192) -> bytes:
    return PrInCdb(action, alloc).to_bytes()


def pr_out_cdb(action: int, length: int, *, scope: int = 0, pr_type: int = 0) -> bytes:
    return PrOutCdb(action, scope, pr_type, length).to_bytes()


def basic_list(rk: int = 0, sark: int = 0, flags: int = 0) -> bytes:
    return rk.to_bytes(8, "big") + sark.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))


def tid_list(*tids: bytes, flags: int = 0x08, rk: int = 0, sark: int = KEY) -> bytes:
    data = b"".join(tids)
    return basic_list(rk, sark, flags) + len(data).to_bytes(4, "big") + data


def out(manager: PRManagerMultipath, fd: int, action: int, data: bytes, **cdb: Any) -> ScsiResult:
    return manager.run(fd, pr_out_cdb(action, len(data), **cdb), data)


def fc(wwpn: int = 0x2100_0024_FF31_4159) -> bytes:
    return TransportID.fc(wwpn).to_bytes()


def sas(address: int = 0x5001_4050_0000_B002) -> bytes:
    return TransportID.sas(address).to_bytes()


def iscsi(name: str = "iqn.2024-01.org.example:host1", first: int = 0x05) -> bytes:
    body = name.encode() + b"\0"
    length = (len(body) + 3) & ~3
    return bytes((first, 0)) + length.to_bytes(2, "big") + body.ljust(length, b"\0")


# -- ABI layouts --------------------------------------------------------------------------------

#: sizeof / offsetof on x86-64, from docs/reference/libmpathpersist.md §4 and <linux/dm-ioctl.h>.
EXPECTED_LAYOUT: dict[str, int] = {
    "prin_readdescr": 8200,
    "prin_readdescr.prgeneration": 0,
    "prin_readdescr.additional_length": 4,
    "prin_readdescr.key_list": 8,
    "prin_resvdescr": 24,
    "prin_resvdescr.prgeneration": 0,
    "prin_resvdescr.additional_length": 4,
    "prin_resvdescr.key": 8,
    "prin_resvdescr._obsolete": 16,
    "prin_resvdescr._reserved": 20,
    "prin_resvdescr.scope_type": 21,
    "prin_resvdescr._obsolete1": 22,
    "prin_capdescr": 8,
    "prin_capdescr.length": 0,
    "prin_capdescr.flags": 2,
    "prin_capdescr.pr_type_mask": 4,
    "prin_capdescr._reserved": 6,
    "transportid": 258,
    "transportid.format_code": 0,
    "transportid.protocol_id": 1,
    "transportid.n_port_name": 2,
    "transportid.sas_address": 2,
    "transportid.iscsi_name": 2,
    "prin_fulldescr": 270,
    "prin_fulldescr.key": 0,
    "prin_fulldescr.flag": 8,
    "prin_fulldescr.scope_type": 9,
    "prin_fulldescr.rtpi": 10,
    "prin_fulldescr.trnptid": 12,
    "print_fulldescr_list": 8200,
    "print_fulldescr_list.prgeneration": 0,
    "print_fulldescr_list.number_of_descriptor": 4,
    "print_fulldescr_list.private_buffer": 8,
    "print_fulldescr_list.descriptors": 8200,
    "prin_resp": 8200,
    "prin_resp.prin_descriptor": 0,
    "prout_param_descriptor": 8224,
    "prout_param_descriptor.key": 0,
    "prout_param_descriptor.sa_key": 8,
    "prout_param_descriptor._obsolete": 16,
    "prout_param_descriptor.sa_flags": 20,
    "prout_param_descriptor._reserved": 21,
    "prout_param_descriptor._obsolete1": 22,
    "prout_param_descriptor.private_buffer": 24,
    "prout_param_descriptor.num_transportid": 8216,
    "prout_param_descriptor.trnptid_list": 8224,
    "dm_ioctl": 312,
    "dm_ioctl.data_size": 12,
    "dm_ioctl.data_start": 16,
    "dm_ioctl.target_count": 20,
    "dm_ioctl.flags": 28,
    "dm_ioctl.dev": 40,
    "dm_ioctl.name": 48,
    "dm_ioctl.uuid": 176,
    "dm_ioctl.data": 305,
    "dm_target_spec": 40,
    "dm_target_spec.status": 16,
    "dm_target_spec.target_type": 24,
}

CTYPES_OF: dict[str, type[ctypes.Structure]] = {
    "prin_readdescr": _abi.PrinReadDescr,
    "prin_resvdescr": _abi.PrinResvDescr,
    "prin_capdescr": _abi.PrinCapDescr,
    "transportid": _abi.TransportIDStruct,
    "prin_fulldescr": _abi.PrinFullDescr,
    "print_fulldescr_list": _abi.PrintFulldescrList,
    "prin_resp": _abi.PrinResp,
    "prout_param_descriptor": _abi.ProutParamDescriptor,
    "dm_ioctl": _dm.DmIoctl,
    "dm_target_spec": _dm.DmTargetSpec,
}


def ctypes_layout(name: str) -> int:
    """sizeof(struct) or offsetof(struct, field) of our ctypes mirror."""
    struct_name, _, field = name.partition(".")
    cls = CTYPES_OF[struct_name]
    if not field:
        return ctypes.sizeof(cls)
    if struct_name == "transportid" and field not in ("format_code", "protocol_id"):
        # the anonymous union: every member starts where the union does
        return int(cls.u.offset)
    return int(getattr(cls, field).offset)


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUT))
def test_ctypes_layout_matches_the_documented_abi(name: str) -> None:
    assert ctypes_layout(name) == EXPECTED_LAYOUT[name]


def test_every_libmpathpersist_field_is_in_the_layout_table() -> None:
    for struct_name, cls in CTYPES_OF.items():
        if struct_name in ("dm_ioctl", "dm_target_spec"):
            continue  # kernel structs: only the fields qompr reads or writes are listed
        for field_name, *_ in cls._fields_:
            if field_name != "u":  # the anonymous union, listed through its members
                assert f"{struct_name}.{field_name}" in EXPECTED_LAYOUT, (struct_name, field_name)


def test_storage_variant_has_the_descriptor_layout_plus_32_pointers() -> None:
    for field_name, *_ in ProutParamDescriptor._fields_:
        assert (
            getattr(ProutParamStorage, field_name).offset
            == getattr(ProutParamDescriptor, field_name).offset
        )
    assert ctypes.sizeof(ProutParamStorage) == ctypes.sizeof(ProutParamDescriptor) + 32 * 8


C_PROGRAM = r"""
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <mpath_persist.h>
#include <linux/dm-ioctl.h>
#define S(t) printf(#t " %zu\n", sizeof(struct t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f));
int main(void) {
    printf("MPATH_MAX_PARAM_LEN %d\nMPATH_MX_TIDS %d\nMPATH_MX_TID_LEN %d\n",
           MPATH_MAX_PARAM_LEN, MPATH_MX_TIDS, MPATH_MX_TID_LEN);
    printf("MPATH_PR_OTHER %d\nMPATH_PR_RESERV_CONFLICT %d\nMPATH_PR_SENSE_INVALID_OP %d\n",
           MPATH_PR_OTHER, MPATH_PR_RESERV_CONFLICT, MPATH_PR_SENSE_INVALID_OP);
    printf("DM_TABLE_STATUS %lu\n", (unsigned long)DM_TABLE_STATUS);
    %BODY%
    return 0;
}
"""


def _c_body() -> str:
    lines = []
    for name in EXPECTED_LAYOUT:
        struct_name, _, field = name.partition(".")
        if field:
            lines.append(f"O({struct_name}, {field})")
        else:
            lines.append(f"S({struct_name})")
    return "\n    ".join(lines)


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """sizeof/offsetof as the C compiler sees the installed headers."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    # scripts/run-tests extracts the header when multipath-tools is not installed.
    extra = [d for d in [os.environ.get("QOMPR_MPATH_INCLUDE", "")] if d]
    if compiler is None or not any(
        Path(d, "mpath_persist.h").exists() for d in [*extra, "/usr/include"]
    ):
        pytest.skip("needs a C compiler and mpath_persist.h (Debian: multipath-tools)")
    work = tmp_path_factory.mktemp("abi")
    source = work / "layout.c"
    source.write_text(C_PROGRAM.replace("%BODY%", _c_body()))
    build = subprocess.run(
        [compiler, *(f"-I{d}" for d in extra), "-o", str(work / "layout"), str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    text = subprocess.run([str(work / "layout")], check=True, capture_output=True, text=True)
    return {k: int(v) for k, v in (line.split() for line in text.stdout.splitlines())}


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUT))
def test_ctypes_layout_matches_the_installed_headers(c_layout: dict[str, int], name: str) -> None:
    assert ctypes_layout(name) == c_layout[name]


def test_constants_match_the_installed_headers(c_layout: dict[str, int]) -> None:
    assert c_layout["MPATH_MAX_PARAM_LEN"] == _abi.MPATH_MAX_PARAM_LEN
    assert c_layout["MPATH_MX_TIDS"] == MPATH_MX_TIDS
    assert c_layout["MPATH_MX_TID_LEN"] == _abi.MPATH_MX_TID_LEN
    assert c_layout["MPATH_PR_OTHER"] == MpathReturn.OTHER
    assert c_layout["MPATH_PR_RESERV_CONFLICT"] == MpathReturn.RESERV_CONFLICT
    assert c_layout["MPATH_PR_SENSE_INVALID_OP"] == MpathReturn.SENSE_INVALID_OP
    assert c_layout["DM_TABLE_STATUS"] == _dm.DM_TABLE_STATUS


# -- loading ------------------------------------------------------------------------------------


def test_importing_qompr_loads_no_libmpathpersist() -> None:
    code = (
        "import qompr, qompr.managers, qompr.managers.multipath\n"
        "qompr.new_tree(load_entrypoints=False)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('libmpathpersist' in maps, 'libmultipath' in maps)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]


def test_a_missing_library_is_a_connect_error_with_a_hint() -> None:
    with pytest.raises(ConnectError) as info:
        LibMpathPersist("libqompr-does-not-exist.so.0").init()
    assert "Cannot load libqompr-does-not-exist.so.0" in info.value.message
    assert info.value.hint is not None and "multipath-tools" in info.value.hint
    assert isinstance(info.value, OSError)


def test_a_library_without_the_init_api_is_refused() -> None:
    with pytest.raises(ConnectError, match="older than 0.8.6"):
        LibMpathPersist("libc.so.6").init()


# -- the QOM type -------------------------------------------------------------------------------


def test_type_is_registered_with_its_properties(tree: ObjectTree) -> None:
    names = {t["name"] for t in tree.qom_list_types(implements="pr-manager")}
    assert "pr-manager-multipath" in names
    props = {p["name"]: p for p in tree.qom_list_properties("pr-manager-multipath")}
    assert props["verbose"]["default-value"] == 1
    assert props["noisy"]["default-value"] is False


def test_creation_initialises_the_library_and_checks_multipathd(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests
) -> None:
    assert fake.init_calls == 1
    assert manager.is_connected()
    fake.multipathd_error = ConnectError("multipathd is not reachable")
    assert not manager.is_connected()


@pytest.mark.parametrize("what", ["library", "multipathd"])
def test_creation_fails_cleanly_without_library_or_multipathd(tree: ObjectTree, what: str) -> None:
    fake = FakeLibMpathPersistForUnitTests()
    error = ConnectError(f"no {what}", hint="install it")
    if what == "library":
        fake.init_error = error
    else:
        fake.multipathd_error = error
    obj = tree.object_add("pr-manager-multipath", "mp0", complete=False)
    assert isinstance(obj, PRManagerMultipath)
    obj.library = fake
    with pytest.raises(ConnectError, match=f"no {what}"):
        tree.complete(obj)
    assert tree.find_object("mp0") is None


def test_creation_without_multipathd_when_not_required(
    tree: ObjectTree, caplog: pytest.LogCaptureFixture
) -> None:
    # qompr-pr-helper's default backend: qemu-pr-helper does not ask multipathd at start-up
    fake = FakeLibMpathPersistForUnitTests()
    fake.multipathd_error = ConnectError("multipathd is not reachable")
    obj = tree.object_add("pr-manager-multipath", "mp0", complete=False, require_multipathd=False)
    assert isinstance(obj, PRManagerMultipath)
    obj.library = fake
    tree.complete(obj)
    assert tree.find_object("mp0") is obj and not obj.is_connected()
    assert "mp0: multipathd is not reachable" in caplog.text


def test_run_before_completion_is_a_state_error(tree: ObjectTree, fd: int) -> None:
    obj = tree.object_add("pr-manager-multipath", "mp0", complete=False)
    assert isinstance(obj, PRManagerMultipath)
    with pytest.raises(StateError):
        obj.run(fd, pr_in(PrInAction.READ_KEYS))


def test_verbosity_properties_reach_the_library(
    tree: ObjectTree, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    obj = tree.object_add("pr-manager-multipath", "mp0", complete=False, verbose=3, noisy=True)
    assert isinstance(obj, PRManagerMultipath)
    obj.library = fake
    tree.complete(obj)
    obj.run(fd, pr_in(PrInAction.READ_KEYS))
    out(obj, fd, PrOutAction.REGISTER, basic_list(0, KEY))
    assert fake.in_calls == [(fd, 0, True, 3)]
    assert (fake.out_calls[0].noisy, fake.out_calls[0].verbose) == (True, 3)
    with pytest.raises(ObjectError):
        tree.object_add("pr-manager-multipath", "mp1", verbose=5)


def test_other_opcodes_are_invalid_opcode(manager: PRManagerMultipath, fd: int) -> None:
    result = manager.run(fd, bytes(10))  # TEST UNIT READY
    assert result.sense_code == SenseCode.INVALID_OPCODE


# -- PR IN --------------------------------------------------------------------------------------


def test_read_keys(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    fake.keys = [KEY, KEY, OTHER]
    fake.generation = 0x01020304
    result = manager.run(fd, pr_in(PrInAction.READ_KEYS, 100))
    assert result.status == ScsiStatus.GOOD
    expected = bytes.fromhex("01020304 00000018") + b"".join(
        k.to_bytes(8, "big") for k in (KEY, KEY, OTHER)
    )
    # qemu-pr-helper answers the whole allocation length, zero-filled after the data
    assert result.data == expected.ljust(100, b"\0")
    assert fake.in_calls == [(fd, PrInAction.READ_KEYS, False, 1)]


@pytest.mark.parametrize(("alloc", "size"), [(0, 0), (12, 12), (8192, 8192), (0xFFFF, 8192)])
def test_pr_in_answers_min_of_allocation_length_and_8192(
    manager: PRManagerMultipath,
    fake: FakeLibMpathPersistForUnitTests,
    fd: int,
    alloc: int,
    size: int,
) -> None:
    fake.keys = [KEY]
    result = manager.run(fd, pr_in(PrInAction.READ_KEYS, alloc))
    assert result.ok and len(result.data) == size
    assert (
        result.data
        == (bytes.fromhex("00000007 00000008") + KEY.to_bytes(8, "big")).ljust(8192, b"\0")[:size]
    )


def test_read_keys_with_an_oversized_length_copies_what_fits(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    fake.keys = [KEY] * 1023  # fills the 8184 bytes of key_list
    fake.additional_length = 0xFFFF_FFF8
    result = manager.run(fd, pr_in(PrInAction.READ_KEYS))
    assert result.ok and len(result.data) == 8192
    assert result.data[4:8] == b"\xff\xff\xff\xf8"
    assert result.data[8:] == KEY.to_bytes(8, "big") * 1023


def test_read_reservation_held_and_not_held(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    fake.reservation = (KEY, 0x03)
    held = manager.run(fd, pr_in(PrInAction.READ_RESERVATION, 24))
    assert held.data == bytes.fromhex("00000007 00000010") + KEY.to_bytes(8, "big") + bytes.fromhex(
        "00000000 00 03 0000"
    )
    fake.reservation = None
    free = manager.run(fd, pr_in(PrInAction.READ_RESERVATION, 24))
    assert free.data == bytes.fromhex("00000007 00000000") + bytes(16)


def test_report_capabilities_is_six_bytes_big_endian(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    fake.capabilities = (8, 0x1D, 0x90, 0xEA01)
    result = manager.run(fd, pr_in(PrInAction.REPORT_CAPABILITIES, 8))
    # LIO's own answer on a path is 00 08 1d 90 ea 01 00 00 (observed in the VM test bed)
    assert result.data == bytes.fromhex("0008 1d 90 ea01 0000")


def test_read_full_status_is_refused_as_qemu_pr_helper_refuses_it(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    result = manager.run(fd, pr_in(PrInAction.READ_FULL_STATUS))
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == SenseCode.INVALID_FIELD.to_bytes()
    assert result.data == b""
    assert fake.in_calls == []


@pytest.mark.parametrize("byte1", [0x04, 0x1F, 0x20, 0x21, 0xE2])
def test_pr_in_unknown_or_reserved_service_action_is_invalid_field(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, byte1: int
) -> None:
    cdb = bytearray(pr_in(0))
    cdb[1] = byte1  # qemu-pr-helper does not mask byte 1
    result = manager.run(fd, bytes(cdb))
    assert result.sense_code == SenseCode.INVALID_FIELD
    assert fake.in_calls == []


def test_short_pr_in_cdb_reads_as_zero_padded(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    result = manager.run(fd, bytes((0x5E, 0)))  # READ KEYS, ALLOCATION LENGTH 0
    assert result.ok and result.data == b""
    assert fake.in_calls[0][1] == PrInAction.READ_KEYS


# -- PR OUT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", range(7))
def test_pr_out_actions_0_to_6_reach_the_library(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, action: int
) -> None:
    data = bytearray(basic_list(KEY, OTHER, 0x05))
    data[16:20] = b"\xff" * 4  # obsolete: ignored
    data[21:24] = b"\xff" * 3  # reserved and obsolete: ignored
    result = out(manager, fd, action, bytes(data), pr_type=3)
    assert result == ScsiResult.good()
    (call,) = fake.out_calls
    assert (call.fd, call.service_action, call.scope, call.type) == (fd, action, 0, 3)
    assert call.key == KEY.to_bytes(8, "big")
    assert call.sa_key == OTHER.to_bytes(8, "big")
    assert call.sa_flags == 0x05
    assert call.transport_ids == []


def test_scope_and_type_are_passed_unchecked(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    out(manager, fd, PrOutAction.RESERVE, basic_list(KEY), scope=2, pr_type=0xF)
    assert (fake.out_calls[0].scope, fake.out_calls[0].type) == (2, 0xF)


@pytest.mark.parametrize("byte1", [0x07, 0x08, 0x1F, 0x20, 0xE0])
def test_pr_out_unsupported_service_action_is_invalid_field(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, byte1: int
) -> None:
    cdb = bytearray(pr_out_cdb(0, 24))
    cdb[1] = byte1  # REGISTER AND MOVE, REPLACE LOST, reserved, reserved bits
    result = manager.run(fd, bytes(cdb), basic_list(KEY))
    assert result.sense == SenseCode.INVALID_FIELD.to_bytes()
    assert fake.out_calls == []


@pytest.mark.parametrize("size", [0, 1, 23, 25, 27])
def test_short_parameter_lists_are_parameter_list_length_errors(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, size: int
) -> None:
    data = (basic_list(KEY) + bytes(4))[:size]
    result = out(manager, fd, PrOutAction.REGISTER, data)
    assert result.sense_code == SenseCode.INVALID_PARAM_LEN
    assert fake.out_calls == []


def test_length_is_checked_before_the_service_action(manager: PRManagerMultipath, fd: int) -> None:
    result = out(manager, fd, PrOutAction.REGISTER_AND_MOVE, bytes(10))
    assert result.sense_code == SenseCode.INVALID_PARAM_LEN


def test_only_the_cdb_parameter_list_length_counts(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    data = tid_list(fc())
    # the CDB announces 24 bytes: the TransportIDs after them are not part of the list
    result = manager.run(fd, pr_out_cdb(PrOutAction.REGISTER, 24), data)
    assert result.ok and fake.out_calls[0].transport_ids == []
    # a list shorter than announced is the list there is
    short = manager.run(fd, pr_out_cdb(PrOutAction.REGISTER, 24), basic_list()[:20])
    assert short.sense_code == SenseCode.INVALID_PARAM_LEN


def test_read_only_fd_is_refused_first(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, tmp_path: Path
) -> None:
    path = tmp_path / "ro"
    path.write_bytes(b"")
    ro = os.open(path, os.O_RDONLY)
    try:
        result = out(manager, ro, PrOutAction.REGISTER, bytes(3))  # also too short
        assert result.sense == SenseCode.INVALID_OPCODE.to_bytes()
        assert fake.out_calls == []
        assert manager.run(ro, pr_in(PrInAction.READ_KEYS)).ok  # PR IN is fine
    finally:
        os.close(ro)


# -- TransportIDs -------------------------------------------------------------------------------


def test_fc_sas_and_iscsi_transport_ids_reach_the_library_intact(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    port = iscsi("iqn.2024-01.org.example:host2,i,0x23d000000001", first=0x45)
    tids = (fc(), sas(), iscsi(), port)
    result = out(manager, fd, PrOutAction.REGISTER, tid_list(*tids))
    assert result.ok
    got = fake.out_calls[0].transport_ids
    assert [(t.format_code, t.protocol_id) for t in got] == [(0, 0), (0, 6), (0, 5), (0x40, 5)]
    assert got[0].payload == (0x2100_0024_FF31_4159).to_bytes(8, "big")
    assert got[1].payload == (0x5001_4050_0000_B002).to_bytes(8, "big")
    assert got[2].payload == iscsi()[2:]
    # what the library rebuilds from the structs is the TransportID list that came in
    assert [t.to_wire() for t in got] == list(tids)
    assert fake.out_calls[0].sa_flags == 0x08


def test_transport_ids_are_read_whatever_spec_i_pt_says(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    result = out(manager, fd, PrOutAction.REGISTER, tid_list(sas(), flags=0))
    assert result.ok
    assert len(fake.out_calls[0].transport_ids) == 1
    assert fake.out_calls[0].sa_flags == 0


def test_empty_transport_id_list_and_trailing_bytes(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    assert out(manager, fd, PrOutAction.REGISTER, tid_list()).ok
    trailing = tid_list(fc()) + b"\xff" * 5  # after the TransportID data: ignored
    assert out(manager, fd, PrOutAction.REGISTER, trailing).ok
    assert [len(c.transport_ids) for c in fake.out_calls] == [0, 1]


def test_reserved_bits_of_byte_0_are_ignored(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    tid = bytearray(fc())
    tid[0] |= 0x30
    assert out(manager, fd, PrOutAction.REGISTER, tid_list(bytes(tid))).ok
    assert fake.out_calls[0].transport_ids[0].protocol_id == 0


def test_32_transport_ids_are_accepted(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    tids = [TransportID.fc(0x2100_0000_0000_0000 + n).to_bytes() for n in range(32)]
    assert out(manager, fd, PrOutAction.REGISTER, tid_list(*tids)).ok
    got = fake.out_calls[0].transport_ids
    assert len(got) == MPATH_MX_TIDS
    assert [int.from_bytes(t.payload, "big") & 0xFF for t in got] == list(range(32))


@pytest.mark.parametrize("count", [33, 340])
def test_more_than_32_transport_ids_is_an_answer_not_an_abort(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, count: int
) -> None:
    # qemu-pr-helper asserts (and aborts) here; 340 FC TransportIDs fit in 8192 bytes
    tids = [TransportID.fc(n + 1).to_bytes() for n in range(count)]
    data = tid_list(*tids)
    assert len(data) <= 8192
    result = out(manager, fd, PrOutAction.REGISTER, data)
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == SenseCode.INVALID_PARAM.to_bytes()
    assert fake.out_calls == []
    assert out(manager, fd, PrOutAction.REGISTER, basic_list(0, KEY)).ok  # still serving


def _bad_iscsi(length: int, body: bytes, first: int = 0x05) -> bytes:
    return bytes((first, 0)) + length.to_bytes(2, "big") + body


MALFORMED = {
    "unknown protocol (1)": bytes((0x01,)) + bytes(23),
    "SRP (4)": bytes((0x04,)) + bytes(23),
    "FC format 01": bytes((0x40,)) + bytes(23),
    "SAS format 01": bytes((0x46,)) + bytes(23),
    "iSCSI format 10": _bad_iscsi(20, b"iqn.x\0".ljust(20, b"\0"), first=0x85),
    "FC cut off": fc()[:20],
    "SAS cut off": sas()[:23],
    "iSCSI header cut off": bytes((0x05, 0)),
    "iSCSI length not a multiple of 4": _bad_iscsi(18, b"iqn.x\0".ljust(18, b"\0")),
    "iSCSI length over 252": _bad_iscsi(256, b"iqn.x\0".ljust(256, b"\0")),
    "iSCSI length past the end": _bad_iscsi(32, b"iqn.x\0".ljust(20, b"\0")),
    "iSCSI name without NUL": _bad_iscsi(8, b"iqn.abcd"),
    "iSCSI length 0": _bad_iscsi(0, b""),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_transport_ids_are_invalid_field_in_parameter_list(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int, name: str
) -> None:
    result = out(manager, fd, PrOutAction.REGISTER, tid_list(fc(), MALFORMED[name]))
    assert result.sense == SenseCode.INVALID_PARAM.to_bytes()
    assert fake.out_calls == []


def test_iscsi_name_of_252_bytes_is_the_longest_accepted(
    manager: PRManagerMultipath, fake: FakeLibMpathPersistForUnitTests, fd: int
) -> None:
    longest = _bad_iscsi(252, b"n" * 251 + b"\0")
    assert out(manager, fd, PrOutAction.REGISTER, tid_list(longest)).ok
    (tid,) = fake.out_calls[0].transport_ids
    assert tid.payload == longest[2:] and tid.to_wire() == longest


@pytest.mark.parametrize(
    ("tid_length", "sense"),
    [
        (25, SenseCode.INVALID_PARAM),  # one byte past the end of the list
        (0xFFFF_FFFF, SenseCode.INVALID_PARAM),  # no 32-bit wrap-around
        (0xFFFF_FFE4, SenseCode.INVALID_PARAM),  # + 28 would wrap to 0 in 32 bits
    ],
)
def test_transport_id_length_past_the_list(
    manager: PRManagerMultipath,
    fake: FakeLibMpathPersistForUnitTests,
    fd: int,
    tid_length: int,
    sense: SenseCode,
) -> None:
    data = basic_list(0, KEY, 0x08) + tid_length.to_bytes(4, "big") + fc()
    assert out(manager, fd, PrOutAction.REGISTER, data).sense_code == sense
    assert fake.out_calls == []


def test_decode_pr_out_agrees_with_the_scsi_codec_on_well_formed_lists() -> None:
    params = PrOutParameters(
        reservation_key=KEY,
        sa_key=OTHER,
        spec_i_pt=True,
        all_tg_pt=True,
        transport_ids=(TransportID.iscsi("iqn.2024-01.org.example:a", "23d000000001"),),
    )
    data = params.to_bytes()
    request = decode_pr_out(pr_out_cdb(PrOutAction.REGISTER, len(data)), data)
    assert not isinstance(request, ScsiResult)
    assert request.sa_flags == 0x0C
    assert [t.to_wire() for t in request.transport_ids] == [params.transport_ids[0].to_bytes()]


def test_transport_id_struct_round_trip() -> None:
    tid = RawTransportID(0x40, 5, iscsi()[2:])
    raw = tid.to_struct()
    assert isinstance(raw, TransportIDStruct)
    assert (raw.format_code, raw.protocol_id) == (0x40, 5)
    assert RawTransportID.from_struct(raw) == tid


# -- answers ------------------------------------------------------------------------------------

TUR_CODES = {
    MpathReturn.SENSE_NOT_READY: SenseCode.NOT_READY,
    MpathReturn.SENSE_MEDIUM_ERROR: SenseCode.READ_ERROR,
    MpathReturn.SENSE_HARDWARE_ERROR: SenseCode.TARGET_FAILURE,
    MpathReturn.SENSE_ABORTED_COMMAND: SenseCode.IO_ERROR,
}
FIXED_ANSWERS: dict[int, tuple[ScsiStatus, SenseCode | None]] = {
    MpathReturn.SUCCESS: (ScsiStatus.GOOD, None),
    MpathReturn.SENSE_UNIT_ATTENTION: (ScsiStatus.CHECK_CONDITION, SenseCode.SCSI_BUS_RESET),
    MpathReturn.SENSE_INVALID_OP: (ScsiStatus.CHECK_CONDITION, SenseCode.INVALID_OPCODE),
    MpathReturn.ILLEGAL_REQ: (ScsiStatus.CHECK_CONDITION, SenseCode.INVALID_PARAM),
    MpathReturn.NO_SENSE: (ScsiStatus.CHECK_CONDITION, SenseCode.NO_SENSE),
    MpathReturn.RESERV_CONFLICT: (ScsiStatus.RESERVATION_CONFLICT, None),
}
COMM_FAILURE_CODES = [-1, 1, 10, 12, 13, 14, 15, 16, 17, 99, -22]


def _answer_cases() -> list[tuple[int, ScsiStatus, SenseCode | None]]:
    cases = [(rc, status, sense) for rc, (status, sense) in FIXED_ANSWERS.items()]
    cases += [(rc, ScsiStatus.CHECK_CONDITION, sense) for rc, sense in TUR_CODES.items()]
    cases += [
        (rc, ScsiStatus.CHECK_CONDITION, SenseCode.LUN_COMM_FAILURE) for rc in COMM_FAILURE_CODES
    ]
    return cases


@pytest.mark.parametrize(
    "case",
    [(direction, *case) for direction in ("in", "out") for case in _answer_cases()],
    ids=lambda case: f"{case[0]}-rc{case[1]}",
)
def test_every_return_code_maps_as_qemu_pr_helper_maps_it(
    manager: PRManagerMultipath,
    fake: FakeLibMpathPersistForUnitTests,
    tur_calls: list[int],
    fd: int,
    case: tuple[str, int, ScsiStatus, SenseCode | None],
) -> None:
    direction, rc, status, sense = case
    fake.rc = rc
    if direction == "in":
        result = manager.run(fd, pr_in(PrInAction.READ_KEYS, 64))
    else:
        result = out(manager, fd, PrOutAction.RESERVE, basic_list(KEY), pr_type=1)
    assert result.status == status
    if sense is None:
        assert result.sense == b""
    else:
        assert result.sense == sense.to_bytes()  # fixed format, as qemu-pr-helper builds it
    if direction == "in" and status != ScsiStatus.GOOD:
        assert result.data == b""  # qemu-pr-helper sets sz = 0
    # TEST UNIT READY is sent for the four sense-eating codes only, on the same fd
    assert tur_calls == ([fd] if rc in TUR_CODES else [])


@pytest.mark.parametrize("rc", sorted(TUR_CODES))
@pytest.mark.parametrize(
    "tur",
    [
        ScsiResult(ScsiStatus.CHECK_CONDITION, SenseCode.NO_MEDIUM.to_bytes(fixed=False)),
        ScsiResult(ScsiStatus.BUSY),
        ScsiResult.conflict(),
    ],
)
def test_a_failing_test_unit_ready_gives_its_own_answer(
    manager: PRManagerMultipath,
    fake: FakeLibMpathPersistForUnitTests,
    fd: int,
    rc: int,
    tur: ScsiResult,
) -> None:
    manager.tur_sender = lambda _fd: tur
    fake.rc = rc
    result = out(manager, fd, PrOutAction.REGISTER, basic_list(0, KEY))
    assert (result.status, result.sense) == (tur.status, tur.sense)


# -- SG_IO (TEST UNIT READY) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (SgIoOutcome(0), ScsiResult.good()),
        (SgIoOutcome(errno.EDOM), ScsiResult(ScsiStatus.TASK_SET_FULL)),
        (SgIoOutcome(errno.EBADE), ScsiResult.conflict()),
        (SgIoOutcome(0, host_status=0x02), ScsiResult(ScsiStatus.BUSY)),
        (SgIoOutcome(0, host_status=0x07), ScsiResult.good()),  # QEMU's fall-through
        (SgIoOutcome(0, driver_status=0x06), ScsiResult(ScsiStatus.BUSY)),
        (SgIoOutcome(0, status=0x18, sense=bytes(96)), ScsiResult.conflict()),
        (SgIoOutcome(0, status=0x7E), ScsiResult.check(SenseCode.IO_ERROR)),  # not a status
    ],
)
def test_test_unit_ready_outcomes_without_sense(outcome: SgIoOutcome, expected: ScsiResult) -> None:
    assert _sgio.outcome_answer(outcome) == expected


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (SgIoOutcome(errno.ENOMEDIUM), SenseCode.NO_MEDIUM),
        (SgIoOutcome(errno.ENOTTY), SenseCode.IO_ERROR),
        (SgIoOutcome(0, host_status=0x0E), SenseCode.I_T_NEXUS_LOSS),
        (SgIoOutcome(0, status=0x02, sense=SenseCode.LUN_NOT_READY.to_bytes()), None),
    ],
)
def test_test_unit_ready_check_condition_keeps_96_bytes_of_sense(
    outcome: SgIoOutcome, code: SenseCode | None
) -> None:
    answer = _sgio.outcome_answer(outcome)
    assert answer.status == ScsiStatus.CHECK_CONDITION
    assert len(answer.sense) == 96  # as qemu-pr-helper sends it
    assert answer.sense_code == (code or SenseCode.LUN_NOT_READY)


def test_test_unit_ready_goes_out_with_a_6_byte_cdb(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, Direction, int | None]] = []

    def fake_sg_io(
        fd: int, cdb: bytes, direction: Direction, *, cmd_len: int | None, timeout_ms: int
    ) -> SgIoOutcome:
        seen.append((cdb, direction, cmd_len))
        return SgIoOutcome(0)

    monkeypatch.setattr(_sgio, "sg_io", fake_sg_io)
    assert _sgio.send_test_unit_ready(5).ok
    # qemu-pr-helper says cmd_len 16 for its 6-byte array (docs/reference/qemu-pr-helper.md §14)
    assert seen == [(bytes(6), Direction.NONE, 6)]


def test_test_unit_ready_on_a_file_is_an_io_error_answer(fd: int) -> None:
    # a regular file has no SG_IO (ENOTTY): an answer, not an exception
    answer = _sgio.send_test_unit_ready(fd)
    assert answer.status == ScsiStatus.CHECK_CONDITION
    assert answer.sense_code == SenseCode.IO_ERROR


# -- is_multipath -------------------------------------------------------------------------------


def test_is_multipath_is_false_for_files_and_character_devices(fd: int) -> None:
    assert is_multipath(fd) is False
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        assert is_multipath(null) is False
    finally:
        os.close(null)


def test_is_multipath_is_false_for_a_non_dm_block_device() -> None:
    if not os.path.exists("/dev/loop0"):
        pytest.skip("no /dev/loop0 on this machine")
    loop = os.open("/dev/loop0", os.O_RDONLY)
    try:
        # the sysfs answer, without opening /dev/mapper/control (a bogus node here)
        assert is_multipath(loop, control="/nonexistent/control") is False
    finally:
        os.close(loop)


# -- multipathd client --------------------------------------------------------------------------


@pytest.fixture
def fake_multipathd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """A unix socket speaking multipathd's framing; the real addresses are replaced by it."""
    path = str(tmp_path / "multipathd.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    seen: list[bytes] = []
    size_t = struct.Struct("@N")

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(size_t.size, socket.MSG_WAITALL)
                if len(head) < size_t.size:
                    continue
                (length,) = size_t.unpack(head)
                command = conn.recv(length, socket.MSG_WAITALL)
                seen.append(command)
                reply = b"0x123abc\n\0" if command.startswith(b"getprkey") else b"ok\n\0"
                conn.sendall(size_t.pack(len(reply)) + reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setattr(
        _multipathd,
        "_addresses",
        lambda: (("\0qompr-test-no-such-abstract-socket", "@none"), (path, path)),
    )
    yield seen
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(5)


def test_multipathd_command_framing(fake_multipathd: list[bytes]) -> None:
    assert multipathd_command("getprkey map mpatha") == "0x123abc\n"
    assert fake_multipathd == [b"getprkey map mpatha\0"]  # size_t length counts the NUL


def test_multipathd_unreachable_names_both_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _multipathd,
        "_addresses",
        lambda: (("\0qompr-test-none", "@qompr-test-none"), ("/nonexistent/s", "/nonexistent/s")),
    )
    with pytest.raises(ConnectError) as info:
        multipathd_command("show daemon")
    assert "@qompr-test-none" in info.value.message
    assert "/nonexistent/s" in info.value.message
    assert info.value.hint is not None


def test_real_addresses_are_the_abstract_then_the_pathname_socket() -> None:
    assert [shown for _, shown in _multipathd._addresses()] == [
        "@/org/kernel/linux/storage/multipathd",
        "/run/multipathd.socket",
    ]


# -- doctor -------------------------------------------------------------------------------------

CONF = """\
# comment
defaults {
    user_friendly_names yes
    find_multipaths "no"     # trailing comment
}
blacklist {
    devnode "^sd[x-z]"
}
multipaths {
    multipath {
        wwid 36001405bed0000d00000000000000000
        alias shared0
        reservation_key 0xabc:aptpl
    }
    multipath {
        wwid 3600140500000000000000000000000ff
    }
}
"""


def test_parse_multipath_conf_sections_values_and_comments() -> None:
    root = parse_multipath_conf(CONF)
    assert [s.name for s in root.sections] == ["defaults", "blacklist", "multipaths"]
    (defaults,) = root.children("defaults")
    assert defaults.values == {"user_friendly_names": "yes", "find_multipaths": "no"}
    (blacklist,) = root.children("blacklist")
    assert blacklist.values == {"devnode": "^sd[x-z]"}
    entries = list(next(root.children("multipaths")).children("multipath"))
    assert [e.values.get("alias") for e in entries] == ["shared0", None]


def test_reservation_keys_found_per_section() -> None:
    conf = CONF.replace("find_multipaths", "reservation_key file\n    find_multipaths")
    conf += "overrides {\n  reservation_key 0x1\n}\n"
    keys = reservation_keys(parse_multipath_conf(conf))
    assert keys == [
        KeySetting("defaults", "file"),
        KeySetting("overrides", "0x1"),
        KeySetting(
            "multipath", "0xabc:aptpl", wwid="36001405bed0000d00000000000000000", alias="shared0"
        ),
    ]
    entry = keys[2]
    assert entry.applies_to("shared0", None)
    assert entry.applies_to("mpathb", "36001405bed0000d00000000000000000")
    assert not entry.applies_to("mpathb", "3600140500000000000000000000000ff")
    assert keys[0].applies_to(None, None)


def test_doctor_reservation_key_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_doctor, "_DEFAULT_CONFIG_DIR", str(tmp_path / "conf.d"))
    conf = tmp_path / "multipath.conf"
    conf.write_text("defaults {\n  user_friendly_names yes\n}\n")
    missing = _doctor._check_key(str(conf), None, False)
    assert (missing.name, missing.ok) == ("reservation_key", False)
    assert missing.hint is not None and "reservation_key" in missing.hint
    absent = _doctor._check_key(str(tmp_path / "none.conf"), None, False)
    assert not absent.ok and "does not exist" in absent.detail
    # a conf.d file counts, as multipath-tools reads config_dir too
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "pr.conf").write_text("defaults {\n  reservation_key 0x42\n}\n")
    found = _doctor._check_key(str(conf), None, False)
    assert found.ok and "defaults: 0x42" in found.detail
    not_dm = _doctor._check_key(str(conf), "/dev/null", False)
    assert not not_dm.ok and "not a device-mapper device" in not_dm.detail


def test_doctor_checks_report_three_named_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _multipathd, "_addresses", lambda: (("\0qompr-test-none", "@qompr-test-none"),)
    )
    monkeypatch.setattr(_doctor, "LIBRARY_NAME", "libqompr-does-not-exist.so.0")
    checks = doctor_checks(config=str(tmp_path / "multipath.conf"))
    assert [c.name for c in checks] == ["libmpathpersist", "multipathd", "reservation_key"]
    assert [c.ok for c in checks] == [False, False, False]
    assert all(c.hint for c in checks)


def test_doctor_library_check_on_this_machine() -> None:
    check = _doctor._check_library()
    try:
        ctypes.CDLL("libmpathpersist.so.0")
    except OSError:
        assert not check.ok and "Cannot load" in check.detail
    else:
        assert check.ok and "libmpathpersist.so.0" in check.detail
