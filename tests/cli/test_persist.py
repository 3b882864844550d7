# SPDX-License-Identifier: MIT
"""``qompr persist``: sg_persist's command line, text and exit statuses, through qompr's managers.

The expected texts are sg_persist's formats (sg3_utils 1.46, sg_persist 0.67: its
``prin_work``, ``sg_decode_transportid_str``, ``sg_get_sense_str`` and exit-status table), with
the values the emulated manager answers.  Where ``sg_persist`` itself is installed the
``interop`` tests run it next to ``qompr persist`` on the same answers (an ``LD_PRELOAD`` library
stands in for the SCSI device behind ``SG_IO``) and require identical stdout, stderr (but for
the program name) and exit status.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

import qompr
from qompr.cli.main import main
from qompr.cli.persist.options import MX_ALLOC_LEN
from qompr.cli.persist.prin import transport_id_text
from qompr.cli.persist.session import prin_cdb
from qompr.cli.sglib.hexdump import hex_dump
from qompr.cli.sglib.hexdump import hex_str
from qompr.cli.sglib.numbers import get_num
from qompr.cli.sglib.numbers import scan_hex
from qompr.cli.sglib.texts import exit_text
from qompr.cli.sglib.texts import sense_text
from qompr.managers import PRManager
from qompr.options import process
from qompr.qom import IntProperty
from qompr.qom import Object
from qompr.scsi import Nexus
from qompr.scsi import PrInCdb
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from tests._support import SGIO_SHIM_C

SG_PERSIST = shutil.which("sg_persist")
CC = shutil.which("cc") or shutil.which("gcc")
CAPS_LIO = """\
Report capabilities response:
  Replace Lost Reservation Capable(RLR_C): 0
  Compatible Reservation Handling(CRH): 1
  Specify Initiator Ports Capable(SIP_C): 1
  All Target Ports Capable(ATP_C): 1
  Persist Through Power Loss Capable(PTPL_C): 1
  Type Mask Valid(TMV): 1
  Allow Commands: 1
  Persist Through Power Loss Active(PTPL_A): {ptpl_a}
    Support indicated in Type mask:
      Write Exclusive, all registrants: 1
      Exclusive Access, registrants only: 1
      Write Exclusive, registrants only: 1
      Exclusive Access: 1
      Write Exclusive: 1
      Exclusive Access, all registrants: 1
"""


@pytest.fixture(autouse=True)
def _no_third_party_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QOMPR_LOAD_PLUGINS", "")
    monkeypatch.delenv("SG_PERSIST_IN_RDONLY", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["persist", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def disk(tmp_path: Path) -> str:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    return str(path)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[str]:
    """A state file another user (a running VM's manager) holds open.

    The state lives from one ``qompr persist`` run to the next, as on a running system; with
    this holder even ``start=power-cycle`` runs would not power-cycle it.
    """
    path = str(tmp_path / "pr.db")
    tree = qompr.new_tree(load_entrypoints=False)
    process(tree, [f"pr-manager-emulated,id=holder,state={path}"])
    yield path
    tree.object_del("holder")


class Emulated:
    """``qompr persist --object pr-manager-emulated,...`` on one disk and state file."""

    def __init__(self, capsys: pytest.CaptureFixture[str], state: str, disk: str) -> None:
        self.capsys = capsys
        self.spec = f"pr-manager-emulated,id=emu0,state={state}"
        self.disk = disk

    def __call__(self, *args: str, initiator: str | None = None) -> tuple[int, str, str]:
        who = ["--initiator", initiator] if initiator else []
        return run(self.capsys, "--object", self.spec, *who, *args, self.disk)

    def ok(self, *args: str, initiator: str | None = None) -> str:
        """Run a command that must succeed silently on stderr; its stdout."""
        code, out, err = self(*args, initiator=initiator)
        assert (code, err) == (0, ""), (args, code, err)
        return out


@pytest.fixture
def emu(capsys: pytest.CaptureFixture[str], state: str, disk: str) -> Emulated:
    return Emulated(capsys, state, disk)


def iqn(name: str) -> str:
    return f"iqn.2026-11.org.qompr:{name}"


def full_status_entry(key: int, name: str, *, holder: str | None = None, port: int = 1) -> str:
    """One registration as sg_persist's READ FULL STATUS prints it."""
    text = f"    Key=0x{key:x}\n      All target ports bit clear\n"
    text += f"      Relative port address: 0x{port:x}\n"
    if holder:
        text += f"      << Reservation holder >>\n      scope: LU_SCOPE,  type: {holder}\n"
    else:
        text += "      not reservation holder\n"
    return text + f"      Transport Id of initiator:\n        iSCSI name: {iqn(name)}\n"


# -- numbers and texts, as sg3_utils reads and writes them --------------------------------------


@pytest.mark.parametrize(
    ("text", "bits", "value"),
    [
        ("123abc", 64, 0x123ABC),
        ("0x123abc", 64, 0x123ABC),
        ("0X1F", 64, 0x1F),
        ("12h", 64, 0x12),  # sscanf stops at the 'h': "trailing h" hex reads right
        ("0x12h", 64, 0x12),
        ("  +ff", 64, 0xFF),
        ("-1", 64, (1 << 64) - 1),
        ("-1", 32, 0xFFFF_FFFF),
        ("fffffffffffffffffffff", 64, (1 << 64) - 1),  # glibc saturates
        ("fffffffffffffffffffff", 32, 0xFFFF_FFFF),
        ("0x", 64, 0),
        ("1 2", 64, 1),
        ("x1", 64, None),
        ("", 64, None),
        (" ", 64, None),
    ],
)
def test_scan_hex_is_sscanf_percent_x(text: str, bits: int, value: int | None) -> None:
    # Values checked against glibc's sscanf("%lx") / ("%x") through ctypes.
    assert scan_hex(text, bits) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8192", 8192),
        ("8k", 8192),
        ("2000h", 8192),
        ("0x2000", 8192),
        ("0X10", 16),
        (" 12", 12),
        ("12,3", 12),
        ("1kb", 1000),
        ("1kib", 1024),
        ("1KiB", 1024),
        ("1m", 1 << 20),
        ("10h", 16),
        ("ffh", 255),
        ("2x3", 6),
        ("1w", 2),
        ("1b", 512),
        ("1c", 1),
        ("4096#", 4096),
        ("abc", -1),
        ("", -1),
        ("0x", -1),
        ("-5", -1),
        ("1z", -1),
    ],
)
def test_get_num_is_sg_get_num(text: str, value: int) -> None:
    # Values checked against libsgutils2-1.46's sg_get_num through ctypes.
    assert get_num(text) == value


def test_hex_dump_layouts() -> None:
    data = bytes(range(0x41, 0x41 + 20))
    assert hex_dump(data, 1) == (
        " 00     41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50\n 10     51 52 53 54\n"
    )
    assert hex_dump(data, -1) == ("41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50\n51 52 53 54\n")
    assert hex_dump(data, 0) == (
        " 00     41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50    ABCDEFGHIJKLMNOP\n"
        " 10     51 52 53 54                                         QRST\n"
    )
    assert hex_dump(b"", 0) == ""


def test_hex_str_with_leadin_and_ascii() -> None:
    data = bytes(range(0x41, 0x41 + 20))
    assert hex_str(data, "  ") == (
        "  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50\n  51 52 53 54\n"
    )
    second = hex_str(data, ascii=True).splitlines()[1]
    assert second == "51 52 53 54" + " " * 41 + "QRST" + " " * 12


@pytest.mark.parametrize(
    ("tid", "text"),
    [
        (
            TransportID.iscsi("iqn.2000-01.com.x:y"),
            "      Transport Id of initiator:\n        iSCSI name: iqn.2000-01.com.x:y\n",
        ),
        (
            TransportID.iscsi("iqn.2000-01.com.x:y", 0x123456789ABC),
            "      Transport Id of initiator:\n"
            "        iSCSI world wide unique port id: iqn.2000-01.com.x:y,i,0x123456789abc\n",
        ),
        (
            TransportID.fc(0x21000024FF3A5B6C),
            "      Transport Id of initiator:\n        FCP-2 World Wide Name:\n"
            "      21 00 00 24 ff 3a 5b 6c\n",
        ),
        (
            TransportID.sas(0x5000C50005B32001),
            "      Transport Id of initiator:\n        SAS address: 0x5000c50005b32001\n",
        ),
        # sg3_utils 1.46 prints SAS addresses without leading zeros.
        (TransportID.sas(1), "      Transport Id of initiator:\n        SAS address: 0x1\n"),
    ],
)
def test_transport_id_text_is_sg_decode_transportid_str(tid: TransportID, text: str) -> None:
    raw = tid.to_bytes()
    assert transport_id_text("      ", raw, len(raw)) == text


def test_transport_id_text_flags_short_ids_and_unknown_protocols() -> None:
    short = bytes((0x05, 0, 0, 8)) + b"iqn.a\0\0\0"
    assert transport_id_text("", short, len(short)) == (
        # sg3_utils prints its text buffer size (1024) as the length here.
        "Transport Id short or not multiple of 4 [length=1024]:\n  iSCSI name: iqn.a\n"
    )
    odd = bytes((0x4D,)) + bytes(range(1, 24))
    assert transport_id_text("", odd, 24).splitlines()[1:] == [
        "  unknown protocol id=0xd  TPID format=1",
        "4d 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f",
        "10 11 12 13 14 15 16 17",
    ]


def test_sense_text_is_sg_get_sense_str() -> None:
    ua = SenseCode.REGISTRATIONS_PREEMPTED.to_bytes()
    assert sense_text(ua) == (
        "Fixed format, current; Sense key: Unit Attention\n"
        "Additional sense: Registrations preempted\n"
    )
    assert sense_text(SenseCode.INVALID_FIELD.to_bytes(fixed=False), raw=True) == (
        "Descriptor format, current; Sense key: Illegal Request\n"
        "Additional sense: Invalid field in cdb\n"
        " Raw sense data (in hex), sb_len=8, embedded_len=8\n"
        "        72 05 24 00 00 00 00 00\n"
    )
    vendor = bytes((0x71, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x99, 0x77, 0, 0, 0, 0))
    assert sense_text(vendor) == (
        "Fixed format, <<<deferred>>>; Sense key: Unit Attention\n"
        "vendor specific ASC=99, ASCQ=77 (hex)\n"
    )


@pytest.mark.parametrize(
    ("status", "short", "longer"),
    [
        (24, "Reservation conflict", "Reservation conflict, type: SCSI status"),
        (5, "Illegal request", "Illegal request, type: sense key, apart from Invalid opcode"),
        (2, "Device not ready", "Device not ready, type: sense key"),
        (75, "Inappropriate ioctl for device", "OS error: Inappropriate ioctl for device"),
        (50, "An OS error occurred", "An OS error occurred, (errno > 46 or negative)"),
        (35, None, None),
    ],
)
def test_exit_text_is_sg_exit2str(status: int, short: str | None, longer: str | None) -> None:
    assert exit_text(status) == short
    assert exit_text(status, longer=True) == longer


# -- the command line, as sg_persist's --------------------------------------------------------


def test_no_device_is_a_syntax_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-k")
    assert (code, out) == (1, "")
    assert err.startswith("No device name given\nUsage: qompr persist [OPTIONS] [DEVICE]\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-i", "-o", "-G"], "choose '--in' _or_ '--out' (not both)\n"),
        (
            ["-o"],
            ">> For Persistent Reserve Out one and only one appropriate\n"
            ">> service action must be chosen (e.g. '--register')\n",
        ),
        (
            ["-o", "-G", "-R"],
            ">> For Persistent Reserve Out one and only one appropriate\n"
            ">> service action must be chosen (e.g. '--register')\n",
        ),
        (
            ["-G", "-S", "1"],
            ">> When a service action for Persistent Reserve Out is chosen the\n"
            ">> '--out' option must be given (as a safeguard)\n",
        ),
        (["-k", "-r"], "Too many service actions given; choose one only\n"),
        (
            ["-o", "-G", "-U"],
            "--unreg or --relative-target-port only useful with --register-move\n",
        ),
        (
            ["-o", "-M", "-K", "1"],
            "with --register-move one (and only one) --transport-id should be given\n",
        ),
        (["--initiator", "a", "-k"], "--initiator and --target-port need a manager"),
    ],
)
def test_contradicting_options_exit_31(
    capsys: pytest.CaptureFixture[str], disk: str, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, disk)
    assert (code, out) == (31, "")
    assert err.startswith(message)


def test_helper_with_a_port_but_no_initiator_is_refused_not_ignored(
    capsys: pytest.CaptureFixture[str], disk: str
) -> None:
    code, out, err = run(capsys, "--helper", "/run/x.sock", "--target-port", "2", "-k", disk)
    assert (code, out) == (31, "")
    assert err == "--target-port with --helper needs --initiator: the helper names the client\n"


def test_helper_and_object_are_alternatives(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, _, err = run(
        capsys, "--helper", "/run/x.sock", "--object", "pr-manager-emulated,id=e", "-k", disk
    )
    assert code == 31
    assert err == "--helper and --object are alternatives: give one of them\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-K", "zz"], "bad argument to '--param-rk'\n"),
        (["--param-sark=g"], "bad argument to '--param-sark'\n"),
        (["-T", "q"], "bad argument to '--prout-type'\n"),
        (["-Q", "10000"], "argument to '--relative-target-port' 0 to ffff inclusive\n"),
        (["-l", "2001"], "'--alloc-length' argument exceeds maximum value (8192)\n"),
        (["-m", "9k"], "'--maxlen' argument exceeds maximum value (8192)\n"),
        (["-m", "bad"], "bad argument to '--maxlen'\n"),
        (
            ["-X", "1,1ff"],
            "unable to parse symbolic TransportID: 1,1ff\n"
            "build_transportid: hex number larger than 0xff at pos 3\n"
            "bad argument to '--transport-id'\n",
        ),
        (
            ["-X", "sas,123"],
            "badly formed symbolic SAS TransportID: 123\n"
            "build_transportid: error at pos 1\n"
            "bad argument to '--transport-id'\n",
        ),
        (["--target-port", "0"], "bad argument to '--target-port'\n"),
        (["--initiator", ""], "bad argument to '--initiator'\n"),
    ],
)
def test_bad_option_values_exit_1(
    capsys: pytest.CaptureFixture[str], disk: str, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, disk)
    assert (code, out, err) == (1, "", message)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], "qompr persist: invalid option -- 'x'\n"),
        (["--foo=1"], "qompr persist: unrecognized option '--foo=1'\n"),
        (["-K"], "qompr persist: option requires an argument -- 'K'\n"),
        (["--param-rk"], "qompr persist: option '--param-rk' requires an argument\n"),
        (["--clear=3"], "qompr persist: option '--clear' doesn't allow an argument\n"),
        (
            ["--read-"],
            "qompr persist: option '--read-' is ambiguous; possibilities: "
            "'--read-full-status' '--read-keys' '--read-reservation'\n",
        ),
    ],
)
def test_getopt_errors_print_usage_and_exit_0_as_sg_persist_does(
    capsys: pytest.CaptureFixture[str], disk: str, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, disk, *argv)
    assert (code, out) == (0, "")
    assert err.startswith(message + "Usage: qompr persist [OPTIONS] [DEVICE]\n")


def test_help_levels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-h")
    assert (code, out) == (0, "")
    assert "    --register|-G              PR Out: Register\n" in err
    assert "--object=SPEC" in err
    code, _, err = run(capsys, "-hh")
    assert code == 0
    assert "  5:    write exclusive, registrants only\n" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-V")
    assert (code, out) == (0, "")
    assert err == f"version: 0.67 20190913 (qompr {qompr.__version__})\n"


def test_extra_operand_is_a_syntax_error(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, _, err = run(capsys, "-k", disk, "extra")
    assert code == 1
    assert err.startswith("Unexpected extra argument: extra\nUsage:")


def test_sg_persist_abbreviations_keep_their_meaning(emu: Emulated) -> None:
    # "--o" is sg_persist's --out even though qompr adds --object.
    emu.ok("--o", "--register-i", "--param_sark", "7", initiator="a")
    assert (
        emu.ok("--read-k")
        == "  PR generation=0x1, 1 registered reservation key follows:\n    0x7\n"
    )


# -- through pr-manager-emulated ---------------------------------------------------------------


def test_register_reserve_and_read(emu: Emulated) -> None:
    assert emu.ok("-o", "-G", "-S", "0x1", initiator="host-a") == ""
    assert emu.ok("--out", "--register", "--param-sark=2", initiator="host-b") == ""
    assert emu.ok("-k") == (
        "  PR generation=0x2, 2 registered reservation keys follow:\n    0x1\n    0x2\n"
    )
    assert emu.ok("-r") == "  PR generation=0x2, there is NO reservation held\n"
    emu.ok("-o", "-R", "-K", "1", "-T", "5", initiator="host-a")
    assert emu.ok("-r") == (
        "  PR generation=0x2, Reservation follows:\n"
        "    Key=0x1\n"
        "    scope: LU_SCOPE,  type: Write Exclusive, registrants only\n"
    )
    assert emu.ok("-s") == (
        "  PR generation=0x2\n"
        + full_status_entry(1, "host-a", holder="Write Exclusive, registrants only")
        + full_status_entry(2, "host-b")
    )


def test_empty_state(emu: Emulated) -> None:
    assert emu.ok("-k") == "  PR generation=0x0, there are NO registered reservation keys\n"
    assert emu.ok("-s") == "  PR generation=0x0\n  No full status descriptors\n"
    code, out, err = emu("-s", "-v")
    assert (code, err) == (
        0,
        "    Persistent reservation in cdb: [5e 03 00 00 00 00 00 20 00 00]\n",
    )
    assert out == (
        "  PR generation=0x0\n  No full status descriptors\n"
        "  So there are no registered IT nexuses\n"
    )


def test_no_service_action_means_read_keys(emu: Emulated) -> None:
    code, out, err = emu()
    assert (code, out) == (0, "  PR generation=0x0, there are NO registered reservation keys\n")
    assert err == (
        ">> No service action given; assume Persistent Reserve In command\n"
        ">> with Read Keys service action\n"
    )


def test_report_capabilities(emu: Emulated) -> None:
    assert emu.ok("-c") == CAPS_LIO.format(ptpl_a=0)
    emu.ok("-o", "-G", "-S", "1", "-Z", initiator="a")  # APTPL activates PTPL_A
    assert emu.ok("-c") == CAPS_LIO.format(ptpl_a=1)


def test_reservation_conflict_exits_24(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok("-o", "-G", "-S", "2", initiator="host-b")
    emu.ok("-o", "-R", "-K", "1", "-T", "1", initiator="host-a")
    code, out, err = emu("-o", "-R", "-K", "2", "-T", "1", initiator="host-b")
    assert (code, out) == (24, "")
    assert (
        err
        == "PR out (Reserve): Reservation conflict\nqompr persist failed: Reservation conflict\n"
    )
    code, _, err = emu("-v", "-o", "-R", "-K", "2", "-T", "3", initiator="host-b")
    assert code == 24
    assert err == (  # with -v: the CDB, the longer text, and no "failed" line
        "    Persistent reservation out cdb: [5f 01 03 00 00 00 00 00 18 00]\n"
        "PR out (Reserve): Reservation conflict, type: SCSI status\n"
    )


def test_wrong_key_register_conflicts(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    code, _, err = emu("-o", "-G", "-K", "5", "-S", "6", initiator="a")
    assert code == 24
    assert err.startswith("PR out (Register): Reservation conflict\n")


def test_unregistered_reserve_is_not_ready_as_on_lio(emu: Emulated) -> None:
    # pr-manager-emulated answers as LIO: NOT READY, LOGICAL UNIT COMMUNICATION FAILURE.
    code, out, err = emu("-o", "-R", "-K", "1", "-T", "1", initiator="a")
    assert (code, out) == (2, "")
    assert err == "PR out (Reserve): Device not ready\nqompr persist failed: Device not ready\n"


def test_preempt_then_unit_attention_exits_6_once(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok("-o", "-G", "-S", "2", initiator="host-b")
    emu.ok("-o", "-R", "-K", "1", "-T", "5", initiator="host-a")
    emu.ok("-o", "-P", "-K", "2", "-S", "1", "-T", "6", initiator="host-b")
    code, out, err = emu("-k", initiator="host-a")
    assert (code, out) == (6, "")
    assert err == (
        "Persistent reservation in:\n"
        "Fixed format, current; Sense key: Unit Attention\n"
        "Additional sense: Registrations preempted\n"
        "PR in (Read keys): Unit attention\n"
        "qompr persist failed: Unit attention\n"
    )
    assert emu.ok("-k", initiator="host-a") == (
        "  PR generation=0x3, 1 registered reservation key follows:\n    0x2\n"
    )
    assert emu.ok("-s") == (
        "  PR generation=0x3\n"
        + full_status_entry(2, "host-b", holder="Exclusive Access, registrants only")
    )


def test_preempt_and_abort_and_register_ignore(emu: Emulated) -> None:
    emu.ok("-o", "-I", "-S", "a", initiator="host-a")
    emu.ok("-o", "-I", "-S", "b", initiator="host-b")
    emu.ok("-o", "-R", "-K", "a", "-T", "3", initiator="host-a")
    emu.ok("-o", "-A", "-K", "b", "-S", "a", "-T", "3", initiator="host-b")
    assert emu.ok("-r", initiator="host-b") == (
        "  PR generation=0x3, Reservation follows:\n"
        "    Key=0xb\n"
        "    scope: LU_SCOPE,  type: Exclusive Access\n"
    )


def test_clear_removes_everything_and_tells_the_others(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok("-o", "-G", "-S", "2", initiator="host-b")
    emu.ok("-o", "-R", "-K", "1", "-T", "8", initiator="host-a")
    emu.ok("-o", "-C", "-K", "2", initiator="host-b")
    assert emu.ok("-k", initiator="host-b") == (
        "  PR generation=0x3, there are NO registered reservation keys\n"
    )
    code, _, err = emu("-r", initiator="host-a")
    assert code == 6
    assert "Additional sense: Reservations preempted\n" in err


def test_release_with_wrong_type_and_release(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    emu.ok("-o", "-R", "-K", "1", "-T", "1", initiator="a")
    code, _, err = emu("-o", "-L", "-K", "1", "-T", "3", initiator="a")
    assert code == 24  # LIO answers a type mismatch with RESERVATION CONFLICT
    assert err.startswith("PR out (Release): Reservation conflict\n")
    emu.ok("-o", "-L", "-K", "1", "-T", "1", initiator="a")
    assert emu.ok("-r") == "  PR generation=0x1, there is NO reservation held\n"


def test_release_without_type_warns_as_sg_persist(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    emu.ok("-o", "-R", "-K", "1", "-T", "1", initiator="a")
    code, _, err = emu("-o", "-L", "-K", "1", initiator="a")
    assert code == 24
    assert err.startswith("warning>>> --prout-type probably needs to be given\n")


def test_register_and_move(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "a", initiator="host-a")
    emu.ok("-o", "-R", "-K", "a", "-T", "1", initiator="host-a")
    tid = iqn("host-c")
    emu.ok("-o", "-M", "-K", "a", "-S", "3", "-T", "1", "-Q", "1", "-X", tid, initiator="host-a")
    assert emu.ok("-s") == (
        "  PR generation=0x2\n"
        + full_status_entry(0xA, "host-a")
        + full_status_entry(3, "host-c", holder="Write Exclusive")
    )
    # The new holder moves it on and, with --unreg, leaves.
    emu.ok(
        "-o",
        "-M",
        "-K",
        "3",
        "-S",
        "4",
        "-T",
        "1",
        "-Q",
        "1",
        "-U",
        "-X",
        iqn("host-d"),
        initiator="host-c",
    )
    assert emu.ok("-k") == (
        "  PR generation=0x3, 2 registered reservation keys follow:\n    0xa\n    0x4\n"
    )


def test_register_and_move_to_port_0_is_an_illegal_request(emu: Emulated) -> None:
    # sg_persist's -Q defaults to 0, which is no relative target port.
    emu.ok("-o", "-G", "-S", "a", initiator="host-a")
    emu.ok("-o", "-R", "-K", "a", "-T", "1", initiator="host-a")
    code, _, err = emu(
        "-o", "-M", "-K", "a", "-S", "3", "-T", "1", "-X", iqn("c"), initiator="host-a"
    )
    assert code == 5
    assert err == (
        "PR out (register and move): bad field in cdb or parameter list "
        "(perhaps unsupported service action)\nqompr persist failed: Illegal request\n"
    )


_ISCSI_F_BYTES = ",".join(f"{b:x}" for b in TransportID.iscsi(iqn("host-f")).to_bytes())


@pytest.mark.parametrize(
    ("tid", "message"),
    [
        (iqn("host-f"), ""),
        ("file={file}", ""),
        # The same TransportID as hex bytes; sg_persist first tries (and fails) to read it as
        # a transport-specific form, and says so.
        (_ISCSI_F_BYTES, f"unable to parse symbolic TransportID: {_ISCSI_F_BYTES}\n"),
    ],
)
def test_register_with_transport_ids(emu: Emulated, tmp_path: Path, tid: str, message: str) -> None:
    listing = tmp_path / "tids.txt"
    listing.write_text(f"# the initiators to register\n  {iqn('host-f')}  # F\n")
    code, _, err = emu("-o", "-G", "-S", "e", "-X", tid.format(file=listing), initiator="host-e")
    assert (code, err) == (0, message)
    # LIO counts each registration in PRGENERATION.
    assert emu.ok("-k") == (
        "  PR generation=0x2, 2 registered reservation keys follow:\n    0xe\n    0xe\n"
    )
    assert f"        iSCSI name: {iqn('host-f')}\n" in emu.ok("-s")


def test_transport_ids_from_stdin(emu: Emulated, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{iqn('g1')}\n\n{iqn('g2')}\n"))
    emu.ok("-o", "-G", "-S", "5", "-X", "-", initiator="host-e")
    assert emu.ok("-k") == (
        "  PR generation=0x3, 3 registered reservation keys follow:\n    0x5\n    0x5\n    0x5\n"
    )


def test_target_port_is_part_of_the_nexus(emu: Emulated) -> None:
    emu.spec += ",target-ports=2"
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    emu.ok("--target-port", "2", "-o", "-G", "-S", "2", initiator="a")
    text = emu.ok("-s")
    assert text == (
        "  PR generation=0x2\n" + full_status_entry(1, "a") + full_status_entry(2, "a", port=2)
    )


def test_all_target_ports(emu: Emulated) -> None:
    emu.spec += ",target-ports=2"
    emu.ok("-o", "-G", "-S", "1", "-Y", initiator="a")  # registers a through ports 1 and 2
    emu.ok("--target-port", "2", "-o", "-R", "-K", "1", "-T", "1", initiator="a")
    entry = "    Key=0x1\n      All target ports bit set\n"
    tid = f"      Transport Id of initiator:\n        iSCSI name: {iqn('a')}\n"
    assert emu.ok("-s") == (
        "  PR generation=0x2\n"
        + entry
        + "      not reservation holder\n"
        + tid
        + entry
        + "      << Reservation holder >>\n      scope: LU_SCOPE,  type: Write Exclusive\n"
        + tid
    )


def test_aptpl_survives_a_power_cycle(
    capsys: pytest.CaptureFixture[str], disk: str, tmp_path: Path
) -> None:
    # Without another user of the state file, each start=power-cycle run is a power cycle of
    # the emulated LU: only registrations made with APTPL (-Z) survive it.  (The power cycle
    # leaves "a" a POWER ON OCCURRED unit attention, so the APTPL registration is b's.)
    em = Emulated(capsys, str(tmp_path / "alone.db"), disk)
    em.spec += ",start=power-cycle"
    em.ok("-o", "-G", "-S", "1", initiator="a")
    assert em.ok("-k") == "  PR generation=0x0, there are NO registered reservation keys\n"
    em.ok("-o", "-G", "-S", "2", "-Z", initiator="b")
    assert em.ok("-k") == "  PR generation=0x0, 1 registered reservation key follows:\n    0x2\n"


def test_verbose_shows_cdb_parameters_and_success(emu: Emulated) -> None:
    code, out, err = emu("-vv", "-o", "-G", "-S", "123abc", initiator="a")
    assert (code, out) == (0, "")
    assert err == (
        f"open {emu.disk} with flags=0x802\n"
        "    Persistent reservation out cdb: [5f 00 00 00 00 00 00 00 18 00]\n"
        "    Persistent reservation out parameters:\n"
        " 00     00 00 00 00 00 00 00 00  00 00 00 00 00 12 3a bc    ..............:.\n"
        " 10     00 00 00 00 00 00 00 00                             ........\n"
        "PR out: command (Register) successful\n"
    )


def test_hex_output(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    assert emu.ok("-H", "-k") == (
        "  PR generation=0x1, Additional length=8\n 00     00 00 00 00 00 00 00 01\n"
    )
    assert emu.ok("-HH", "-k") == " 00     00 00 00 01 00 00 00 08  00 00 00 00 00 00 00 01\n"
    assert emu.ok("-HHH", "-k") == "00 00 00 01 00 00 00 08  00 00 00 00 00 00 00 01\n"
    assert emu.ok("-H", "-c") == " 00     00 08 1d 90 ea 01 00 00\n"


def test_small_allocation_length(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="a")
    emu.ok("-o", "-G", "-S", "2", initiator="b")
    # 16 bytes hold the header and one key; the count comes from the ADDITIONAL LENGTH.
    assert emu.ok("--maxlen=16", "-k") == (
        "  PR generation=0x2, 2 registered reservation keys follow:\n    0x1\n    0x0\n"
    )
    assert emu.ok("-l", "10", "-k") == emu.ok("-m", "16", "-k")


def test_cut_key_list_prints_only_keys_in_the_response(emu: Emulated) -> None:
    # The deliberate difference (module docstring): for three keys and --maxlen=20,
    # sg_persist 0.67 prints a third key line read from past its 20-byte buffer (on LIO:
    # 0x1110000000000000, tests/vm/test_persist.py); qompr persist stops at 24 bytes, the
    # four the device did not send (the low half of key 2) read as zeros.
    for name, key in (("a", "1"), ("b", "2"), ("c", "3")):
        emu.ok("-o", "-G", "-S", key, initiator=name)
    assert emu.ok("--maxlen=20", "-k") == (
        "  PR generation=0x3, 3 registered reservation keys follow:\n    0x1\n    0x0\n"
    )


def test_read_only_open_for_pr_in(
    emu: Emulated, disk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SG_PERSIST_IN_RDONLY", "1")
    code, _, err = emu("-vv", "-k")
    assert code == 0
    assert err.startswith(f"open {disk} with flags=0x800\n")
    code, _, err = emu("-vv", "-yy", "-k")  # -yy forces read-write
    assert err.startswith(f"open {disk} with flags=0x802\n")


def _read_only_file(disk: str) -> str:
    """A file this process can open only read-only: *disk* made read-only, or as root (who
    opens such files read-write) a read-only sysfs attribute."""
    if os.geteuid() != 0:
        os.chmod(disk, 0o444)
        return disk
    attribute = "/sys/kernel/uevent_seqnum"
    try:
        os.close(os.open(attribute, os.O_RDWR))
    except PermissionError:
        return attribute
    except OSError:
        pass
    else:
        pytest.skip("no read-only file for root")
    pytest.skip(f"{attribute} is not there")


def test_pr_in_falls_back_to_read_only(
    capsys: pytest.CaptureFixture[str], state: str, disk: str
) -> None:
    path = _read_only_file(disk)
    em = Emulated(capsys, state, path)
    code, _, err = em("-vv", "-k")
    assert code == 0
    assert err == (
        f"open {path} with flags=0x802\n"
        f"scsi_pt_open_flags: open({path}, 0x802) failed: Permission denied\n"
        f"open {path} with flags=0x800\n"
        "    Persistent reservation in cdb: [5e 00 00 00 00 00 00 20 00 00]\n"
        "    Persistent reservation in: pass-through requested 8192 bytes (data-in), got  got 8"
        " bytes\n"
    )
    code, _, err = em("-o", "-G", "-S", "1", initiator="a")
    assert code == 63  # 50 + EACCES: PR OUT needs the device open read-write
    assert err == f"qompr persist: error opening file {path} (rw): Permission denied\n"


def test_missing_device(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys, "--object", "pr-manager-emulated,id=e", "-k", str(tmp_path / "none")
    )
    assert (code, out) == (52, "")  # 50 + ENOENT
    assert err == (
        f"qompr persist: error opening file {tmp_path / 'none'} (rw): No such file or directory\n"
    )


def test_bad_object_spec(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, _, err = run(capsys, "--object", "pr-manager-emulated", "-k", disk)
    assert code == 1
    assert err == "qompr persist: -object pr-manager-emulated: Parameter 'id' is missing\n"


def test_object_help(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, out, _ = run(capsys, "--object", "help", "-k", disk)
    assert code == 0
    assert out.startswith("List of user creatable objects:\n")
    assert "  pr-manager-emulated\n" in out


def test_helper_that_is_not_there(
    capsys: pytest.CaptureFixture[str], disk: str, tmp_path: Path
) -> None:
    sock = tmp_path / "none.sock"
    code, out, err = run(capsys, "--helper", str(sock), "-k", disk)
    assert (code, out) == (52, "")
    assert err == f"qompr persist: Failed to connect to '{sock}': No such file or directory\n"


def test_through_a_running_helper(
    capsys: pytest.CaptureFixture[str], helper_socket: str, disk: str
) -> None:
    def helper(*argv: str) -> tuple[int, str, str]:
        return run(capsys, "--helper", helper_socket, *argv, disk)

    assert helper("-o", "-G", "-S", "abc") == (0, "", "")
    assert helper("-o", "-R", "-K", "abc", "-T", "1") == (0, "", "")
    assert helper("-k") == (
        0,
        "  PR generation=0x1, 1 registered reservation key follows:\n    0xabc\n",
        "",
    )
    # Behind the helper, this process is the initiator (the daemon names it by its pid).
    me = f"pid:{os.getpid()}"
    assert helper("-s") == (
        0,
        "  PR generation=0x1\n" + full_status_entry(0xABC, me, holder="Write Exclusive"),
        "",
    )
    assert helper("-o", "-G", "-K", "1", "-S", "2") == (
        24,
        "",
        "PR out (Register): Reservation conflict\nqompr persist failed: Reservation conflict\n",
    )
    report = json.loads(helper("--json", "-r")[1])
    assert (report["backend"], report["manager"]) == ("pr-manager-helper", "helper0")
    assert report["response"]["reservation"]["key"] == "0xabc"


class _Failing(PRManager, qom_type="pr-manager-test-failing"):
    """A manager whose backend is gone: every command fails with the OS error in ``errno``."""

    errno = IntProperty(minimum=1, maximum=200, default=104)

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        raise OSError(self.errno, os.strerror(self.errno))


class _FailingPlugin:
    @qompr.hookimpl
    def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
        register(_Failing)


@pytest.fixture
def failing_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """``qompr`` with the test type ``pr-manager-test-failing`` registered."""

    def with_test_type() -> pluggy.PluginManager:
        pm = qompr.get_plugin_manager(load_entrypoints=False)
        pm.register(_FailingPlugin())
        return pm

    monkeypatch.setattr(
        importlib.import_module("qompr.cli.main"), "get_plugin_manager", with_test_type
    )


@pytest.mark.usefixtures("failing_plugin")
@pytest.mark.parametrize(
    ("err", "status", "text"),
    [
        (104, 50, "An OS error occurred"),  # sg3_utils maps errno 47 and above to 50
        (32, 82, "Broken pipe"),
    ],
)
def test_manager_os_error_is_50_plus_errno(
    capsys: pytest.CaptureFixture[str], disk: str, err: int, status: int, text: str
) -> None:
    spec = f"pr-manager-test-failing,id=f,errno={err}"
    code, out, stderr = run(capsys, "--object", spec, "-o", "-C", disk)
    assert (code, out) == (status, "")
    assert stderr == (
        f"Persistent reservation out: pass-through os error: {os.strerror(err)}\n"
        f"PR out (Clear): {text}\n"
        f"qompr persist failed: {text}\n"
    )


# -- JSON ----------------------------------------------------------------------------------------


def test_json_read_full_status(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok("-o", "-R", "-K", "1", "-T", "5", initiator="host-a")
    report = json.loads(emu.ok("--json", "-s", initiator="host-b"))
    assert report["backend"] == "pr-manager-emulated"
    assert report["nexus"] == {
        "initiator": "host-b",
        "target_port": 1,
        "transport_id": iqn("host-b"),
    }
    assert (report["command"], report["service_action"]) == ("PR IN", "Read full status")
    assert (report["status"], report["exit_status"], report["error"]) == ("GOOD", 0, None)
    assert report["response"] == {
        "generation": 1,
        "registrations": [
            {
                "key": "0x1",
                "all_tg_pt": False,
                "relative_target_port": 1,
                "reservation_holder": True,
                "scope": "LU_SCOPE",
                "type": 5,
                "type_name": "Write Exclusive, registrants only",
                "transport_id": {
                    "protocol": "ISCSI",
                    "identifier": iqn("host-a"),
                    "format_code": 0,
                },
            }
        ],
    }


def test_json_keys_reservation_capabilities(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "ab", initiator="a")
    assert json.loads(emu.ok("--json", "-k"))["response"] == {"generation": 1, "keys": ["0xab"]}
    assert json.loads(emu.ok("--json", "-r"))["response"] == {"generation": 1, "reservation": None}
    caps = json.loads(emu.ok("--json", "-c"))["response"]
    assert caps["tmv"] is True
    assert caps["allow_commands"] == 1
    assert caps["types"] == [
        "Write Exclusive",
        "Exclusive Access",
        "Write Exclusive, registrants only",
        "Exclusive Access, registrants only",
        "Write Exclusive, all registrants",
        "Exclusive Access, all registrants",
    ]


def test_json_failed_command(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    code, out, err = emu("--json", "-o", "-G", "-K", "9", "-S", "2", initiator="host-a")
    assert code == 24
    assert err.endswith("qompr persist failed: Reservation conflict\n")
    report = json.loads(out)
    assert report["status"] == "RESERVATION_CONFLICT"
    assert report["exit_status"] == 24
    assert report["error"] == "Reservation conflict, type: SCSI status"
    assert report["cdb"] == "5f000000000000001800"
    assert report["parameters"] == {
        "reservation_key": "0x9",
        "sa_key": "0x2",
        "aptpl": False,
        "all_tg_pt": False,
        "spec_i_pt": False,
        "transport_ids": [],
    }


def test_json_unit_attention_sense(emu: Emulated) -> None:
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok("-o", "-G", "-S", "2", initiator="host-b")
    emu.ok("-o", "-P", "-K", "2", "-S", "1", "-T", "1", initiator="host-b")
    code, out, _ = emu("--json", "-k", initiator="host-a")
    assert code == 6
    report = json.loads(out)
    assert report["status"] == "CHECK_CONDITION"
    assert report["sense"] == {
        "key": "UNIT ATTENTION",
        "asc": 0x2A,
        "ascq": 0x05,
        "text": "Registrations preempted",
        "deferred": False,
    }


# -- --device: SG_IO on the device itself ----------------------------------------------------


def test_device_that_is_not_scsi(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    # What sg_persist 0.67 prints for a regular file or /dev/null: SG_IO fails with ENOTTY.
    for device in (disk, "/dev/null"):
        code, out, err = run(capsys, "-n", "-k", device)
        assert (code, out) == (75, "")
        assert err == (
            "Persistent reservation in: pass-through os error: Inappropriate ioctl for device\n"
            "PR in (Read keys): Inappropriate ioctl for device\n"
            "qompr persist failed: Inappropriate ioctl for device\n"
        )
        code, out, err = run(capsys, "-k", "--device", device)  # INQUIRY first
        assert (code, out) == (75, f"qompr persist: SCSI INQUIRY failed on {device}\n")
        assert err == "inquiry: pass-through os error: Inappropriate ioctl for device\n"
        code, out, err = run(capsys, "-n", "-o", "-G", "-S", "1", "-v", device)
        assert (code, out) == (75, "")
        assert err == (
            "    Persistent reservation out cdb: [5f 00 00 00 00 00 00 00 18 00]\n"
            "Persistent reservation out: pass-through os error: Inappropriate ioctl for device\n"
            "PR out (Register): OS error: Inappropriate ioctl for device\n"
        )


def test_device_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "none"
    code, _, err = run(capsys, "-k", str(missing))
    assert code == 52
    assert err == f"qompr persist: error opening file (ro): {missing}: No such file or directory\n"
    code, _, err = run(capsys, "-n", "-y", "-k", str(missing))
    assert err == f"qompr persist: error opening file {missing} (ro): No such file or directory\n"


def _sg_persist(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    assert SG_PERSIST is not None
    proc = subprocess.run(
        ["sg_persist", *argv],
        executable=SG_PERSIST,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _normalized(text: str) -> str:
    """Without the program's name, the time a command took (-vvv) and two lines of sg3_utils'
    Linux pass-through internals (-vvvv)."""
    lines = text.replace("sg_persist", "qompr persist").splitlines(keepends=True)
    internal = ("found sg_bsg_major", "check_file_type:")
    lines = [line for line in lines if not line.startswith(internal)]
    return "".join(re.sub(r"^( +duration=)\d+ ms$", r"\1N ms", line) for line in lines)


needs_sg_persist = pytest.mark.skipif(SG_PERSIST is None, reason="sg_persist is not installed")


@pytest.mark.interop
@needs_sg_persist
@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "-k"],
        ["-k"],
        ["-n", "-r", "-v"],
        ["-n", "-c", "-vv"],
        ["-n", "-s"],
        ["-n", "-o", "-G", "-S", "1"],
        ["-n", "-o", "-R", "-K", "1", "-T", "1", "-vv"],
        ["-n", "-o", "-M", "-K", "1", "-S", "2", "-T", "1", "-X", "sas,5000c50005b32001"],
        ["-o", "-C", "-K", "1"],
    ],
)
def test_device_matches_real_sg_persist(
    capsys: pytest.CaptureFixture[str], disk: str, argv: list[str]
) -> None:
    for device in (disk, "/dev/null", disk + ".missing"):
        expected = _sg_persist(*argv, device)
        code, out, err = run(capsys, *argv, device)
        assert (code, _normalized(out), err) == (
            expected[0],
            _normalized(expected[1]),
            _normalized(expected[2]),
        )


# -- real sg_persist and qompr persist on the same device answers ----------------------------
#
# An LD_PRELOAD library replaces ioctl(SG_IO) in both programs: it answers INQUIRY and the PR
# command from files (status, sense, data), logs the CDB and data-out it was sent, and leaves
# every other ioctl alone (tests/_support/sgio_shim.c).


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    if SG_PERSIST is None or CC is None:
        pytest.skip("needs sg_persist and a C compiler")
    where = tmp_path_factory.mktemp("shim")
    lib = where / "shim.so"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(lib), str(SGIO_SHIM_C), "-ldl"], check=True)
    return str(lib)


def _inquiry_data() -> bytes:
    data = bytearray(36)
    data[2], data[4] = 6, 31
    data[8:36] = b"LIO-ORG disk0           4.0 "
    return bytes(data)


def _both(shim: str, tmp_path: Path, argv: list[str], answer: dict[str, bytes | int]) -> None:
    """Run sg_persist and ``qompr persist`` on the same answers; require the same result."""
    device = tmp_path / "lun"
    device.write_bytes(b"")
    results = []
    for name, program, executable in (
        ("sg", ["sg_persist"], SG_PERSIST),
        ("qompr", [sys.executable, "-m", "qompr", "persist"], None),
    ):
        answers = tmp_path / name
        answers.mkdir()
        files: dict[str, bytes | int] = {"inquiry.data": _inquiry_data(), **answer}
        for file, content in files.items():
            raw = content if isinstance(content, bytes) else str(content).encode()
            (answers / file).write_bytes(raw)
        env = dict(os.environ, LD_PRELOAD=shim, SHIM_DIR=str(answers), QOMPR_LOAD_PLUGINS="")
        proc = subprocess.run(
            [*program, *argv, str(device)],
            executable=executable,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        log = (answers / "log").read_text() if (answers / "log").exists() else ""
        stderr = _normalized(proc.stderr).split("Usage: ")[0]
        results.append((proc.returncode, _normalized(proc.stdout), stderr, log))
    assert results[1] == results[0]


def _keys(generation: int, *keys: int) -> bytes:
    return struct.pack(">II", generation, 8 * len(keys)) + b"".join(
        struct.pack(">Q", k) for k in keys
    )


def _descriptor(key: int, tid: bytes, flags: int = 0, scope_type: int = 0, port: int = 1) -> bytes:
    head = struct.pack(">Q4xBB4xH", key, flags, scope_type, port)
    return head + struct.pack(">I", len(tid)) + tid


def _full(generation: int, *descriptors: bytes) -> bytes:
    body = b"".join(descriptors)
    return struct.pack(">II", generation, len(body)) + body


_FC = TransportID.fc(0x21000024FF3A5B6C).to_bytes()
_SAS = TransportID.sas(0x5000C50005B32001).to_bytes()
_ISCSI = TransportID.iscsi("iqn.1994-05.com.redhat:b", 0x23D000000001).to_bytes()
_UA = SenseCode.REGISTRATIONS_PREEMPTED.to_bytes()
_FULL = _full(
    3,
    _descriptor(1, TransportID.iscsi("iqn.2003-01.org.x:a").to_bytes()),
    _descriptor(0x77, _ISCSI, flags=1, scope_type=5),
    _descriptor(5, _FC, flags=2),
    _descriptor(6, _SAS, port=2),
    _descriptor(7, bytes((0x41, 0, 0, 8)) + b"iqn.b\0\0\0"),
    _descriptor(8, bytes((0x0D,)) + bytes(range(1, 24)), flags=1, scope_type=0x12),
)
_DIFFERENTIAL = [
    (["-k"], {"data": _keys(5, 1, 0xABCDEF)}),
    (["-n", "-k"], {"data": _keys(0)}),
    (["-n", "-r"], {"data": struct.pack(">IIQ4xBB2x", 7, 16, 0x123ABC, 0, 5)}),
    (["-n", "-r"], {"data": struct.pack(">II", 7, 0)}),
    (["-n", "-c"], {"data": bytes((0, 8, 0x9D, 0x91, 0xEA, 0x01, 0, 0))}),
    (["-n", "-c"], {"data": bytes((0, 6, 0, 0, 0, 0, 0, 0))}),
    (["-n", "-s"], {"data": _FULL}),
    (["-n", "-s", "-v"], {"data": _full(1)}),
    (["-n", "-H", "-s"], {"data": _FULL}),
    (["-n", "-HH", "-k"], {"data": _keys(2, 3, 4, 5)}),
    (["-n", "-HHH", "-s"], {"data": _FULL}),
    (["-n", "-H", "-k"], {"data": struct.pack(">II", 1, 0xFFFFFFFF)}),
    (["-n", "-vvv", "-k"], {"data": _keys(5, 1)}),
    (["-n", "-vvvv", "-s"], {"data": _FULL}),
    (["-n", "-k"], {"status": 2, "sense": _UA}),
    (["-n", "-vv", "-k"], {"status": 2, "sense": _UA}),
    (["-n", "-r"], {"status": 2, "sense": SenseCode.INVALID_FIELD.to_bytes()}),
    (["-n", "-c"], {"status": 2, "sense": SenseCode.INVALID_OPCODE.to_bytes()}),
    (["-n", "-k"], {"status": 2, "sense": SenseCode.NOT_READY.to_bytes(fixed=False)}),
    (["-n", "-k"], {"status": 2, "sense": SenseCode.TARGET_FAILURE.to_bytes(), "data": b""}),
    (["-n", "-k"], {"status": 8}),
    (["-n", "-k"], {"errno": 6}),
    (["-n", "-vvv", "-k"], {"errno": 6}),
    (["-k"], {"inquiry.status": 2, "inquiry.sense": _UA}),
    (["-n", "-o", "-G", "-S", "1"], {"status": 0x18}),
    (["-n", "-v", "-o", "-G", "-K", "1", "-S", "0"], {}),
    (["-n", "-o", "-R", "-K", "abc", "-T", "1"], {"status": 2, "sense": _UA}),
    (
        ["-n", "-o", "-L", "-K", "0x12h", "-T", "5"],
        {"status": 2, "sense": SenseCode.INVALID_RELEASE.to_bytes()},
    ),
    (["-n", "-o", "-C", "-K", "1"], {"status": 2, "sense": SenseCode.INVALID_PARAM_LEN.to_bytes()}),
    (["-n", "-o", "-P", "-K", "1", "-S", "2", "-T", "8"], {"status": 0x28}),
    (["-n", "-vv", "-o", "-A", "-K", "1", "-S", "2", "-T", "7"], {}),
    (["-n", "-o", "-I", "-S", "ffffffffffffffff", "-Z"], {}),
    (["-n", "-vv", "-o", "-G", "-S", "5", "-Y", "-X", "iqn.2003-01.org.x:a"], {}),
    (["-n", "-vvv", "-o", "-G", "-S", "5", "-X", "6,0,0,0,50,0,c5,0,5,b3,20,1"], {}),
    (
        [
            "-n",
            "-vv",
            "-o",
            "-M",
            "-K",
            "1",
            "-S",
            "2",
            "-T",
            "5",
            "-Q",
            "2",
            "-U",
            "-X",
            "iqn.1994-05.com.redhat:b,i,0x23d000000001",
        ],
        {},
    ),
    (
        ["-n", "-o", "-M", "-K", "1", "-S", "2", "-T", "5", "-X", "fcp,21000024ff3a5b6c"],
        {"status": 2, "sense": SenseCode.INVALID_PARAM.to_bytes()},
    ),
    (
        ["-n", "-o", "-z", "-S", "2", "-T", "5"],
        {"status": 2, "sense": SenseCode.INVALID_OPCODE.to_bytes()},
    ),
    (["-noGS1"], {}),
    (["-n", "--o", "--reg", "--param-s=3"], {}),
    (["-n", "-K", "zz"], {}),
    (["-n", "-x"], {}),
    (["-n", "-o", "-G", "-X", "spi,3,4", "-vvv"], {}),
]


@pytest.mark.interop
@pytest.mark.parametrize(("argv", "answer"), _DIFFERENTIAL)
def test_same_as_sg_persist_on_the_same_answers(
    shim: str, tmp_path: Path, argv: list[str], answer: dict[str, bytes | int]
) -> None:
    _both(shim, tmp_path, argv, answer)


@pytest.mark.interop
@pytest.mark.parametrize("action", ["-k", "-r", "-c", "-s"])
def test_emulated_answers_read_by_sg_persist_as_by_qompr(
    shim: str, emu: Emulated, tmp_path: Path, action: str
) -> None:
    """What the emulated manager answers, sg_persist prints as ``qompr persist`` does."""
    emu.ok("-o", "-G", "-S", "1", initiator="host-a")
    emu.ok(
        "-o", "-G", "-S", "2", "-X", "iqn.1994-05.com.redhat:b,i,0x23d000000001", initiator="host-b"
    )
    emu.ok("-o", "-R", "-K", "1", "-T", "6", initiator="host-a")
    ours = emu.ok(action)
    sa = {"-k": 0, "-r": 1, "-c": 2, "-s": 3}[action]
    tree = qompr.new_tree(load_entrypoints=False)
    objects = process(tree, [emu.spec])
    assert isinstance(objects, list)
    [manager] = objects
    fd = os.open(emu.disk, os.O_RDONLY)
    try:
        assert isinstance(manager, PRManager)
        result = manager.execute(fd, PrInCdb(sa, 8192).to_bytes(), nexus=Nexus("observer"))
    finally:
        os.close(fd)
        tree.object_del("emu0")
    device = tmp_path / "lun"
    device.write_bytes(b"")
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "data").write_bytes(result.data)
    env = dict(os.environ, LD_PRELOAD=shim, SHIM_DIR=str(answers))
    assert SG_PERSIST is not None
    proc = subprocess.run(
        [SG_PERSIST, "-n", action, str(device)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, ours, "")


# -- formatters against libsgutils2 itself ---------------------------------------------------


def _libsgutils() -> ctypes.CDLL | None:
    names = [ctypes.util.find_library("sgutils2")]
    for pattern in ("/usr/lib/*/libsgutils2*.so.*", "/usr/lib*/libsgutils2*.so.*"):
        names += sorted(glob.glob(pattern))
    for name in names:
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


@pytest.mark.interop
def test_formatters_agree_with_libsgutils2() -> None:
    lib = _libsgutils()
    if lib is None:
        pytest.skip("libsgutils2 is not installed")
    lib.hex2str.restype = ctypes.c_int
    lib.hex2str.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    lib.sg_get_num.argtypes = [ctypes.c_char_p]
    lib.sg_decode_transportid_str.restype = ctypes.c_char_p
    lib.sg_decode_transportid_str.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_bool,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    lib.sg_get_sense_str.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_bool,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    buf = ctypes.create_string_buffer(8192)
    for size in (1, 7, 8, 9, 15, 16, 17, 33):
        data = bytes(range(0x30, 0x30 + size))
        for leadin, ascii_ in (("", False), ("    ", False), ("  ", True)):
            lib.hex2str(data, size, leadin.encode(), 0 if ascii_ else 1, len(buf), buf)
            assert hex_str(data, leadin, ascii=ascii_) == buf.value.decode()
    for text in ("8192", "8k", "1kb", "2000h", "0x10", "3x4", "12,3", "-5", "9m", "2g", "1mib"):
        assert get_num(text) == lib.sg_get_num(text.encode()), text
    for raw in (
        _FC,
        _SAS,
        _ISCSI,
        bytes((0x41, 0, 0, 8)) + b"iqn.b\0\0\0",
        bytes((0x0F,)) + bytes(23),
        bytes((0x01, 0, 0, 5, 0, 0, 0, 9)) + bytes(16),
        bytes((0x0A, 0, 1, 2)) + bytes(20),
    ):
        out = lib.sg_decode_transportid_str(b"      ", raw, len(raw), True, 1024, buf)
        assert transport_id_text("      ", raw, len(raw)) == out.decode()
    for code in SenseCode.names().values():
        for fixed in (True, False):
            sense = code.to_bytes(fixed=fixed)
            lib.sg_get_sense_str(None, sense, len(sense), True, len(buf), buf)
            assert sense_text(sense, raw=True) == buf.value.decode()
    for sense in _FIXED_SENSE_FIELDS:
        # sg3_utils dumps the length the sense claims, reading past a shorter buffer.
        for raw_text in (False, True) if 8 + sense[7] <= len(sense) else (False,):
            lib.sg_get_sense_str(None, sense, len(sense), raw_text, len(buf), buf)
            assert sense_text(sense, raw=raw_text) == buf.value.decode(), sense.hex()


def _fixed_sense(key: int, asc: int, ascq: int, **at: int) -> bytes:
    sense = bytearray(18)
    sense[0], sense[2], sense[7], sense[12], sense[13] = 0x70, key, 10, asc, ascq
    for where, value in at.items():
        sense[int(where.removeprefix("b"))] = value
    return bytes(sense)


# Fixed-format fields sg_get_sense_str describes: VALID and INFORMATION, FILEMARK/EOM/ILI,
# FRU code, sense-key specific (progress, field pointer, UA queue overflow), short buffers.
_FIXED_SENSE_FIELDS = [
    _fixed_sense(2, 4, 1, b0=0xF0, b5=0x13, b6=0x88),
    _fixed_sense(0x25, 0x24, 0, b0=0xF0, b6=9),
    _fixed_sense(0x85, 0x24, 0, b6=9),
    _fixed_sense(0x45, 0x24, 0, b0=0xF0, b6=9),
    _fixed_sense(2, 4, 4, b15=0x80, b16=0x80),
    _fixed_sense(0, 0, 0x16, b15=0x80, b16=0x40, b17=0x10),
    _fixed_sense(5, 0x24, 0, b15=0xC0, b17=2),
    _fixed_sense(5, 0x26, 0, b15=0x8B, b17=5),
    _fixed_sense(6, 0x29, 0, b14=7),
    _fixed_sense(6, 0x29, 0, b15=0x80, b17=1),
    _fixed_sense(6, 0x29, 0, b15=0x81),
    _fixed_sense(5, 0x24, 0, b0=0xF0, b6=9, b14=9, b15=0xC0, b17=4),
    _fixed_sense(6, 0x29, 0)[:13],
    _fixed_sense(6, 0x29, 0, b7=5)[:13],
    _fixed_sense(2, 4, 4, b15=0x80, b16=0x80)[:17],
]


@pytest.mark.parametrize("sa", range(4))
def test_the_pr_in_cdb_is_the_codecs(sa: int) -> None:
    # qompr persist writes the PR IN CDB out (no attrs on a PR IN's start-up); the bytes are
    # those of qompr.scsi.PrInCdb for every service action and allocation length it sends.
    for length in (0, 1, 8, 24, 255, 256, 4096, MX_ALLOC_LEN):
        assert prin_cdb(sa, length) == PrInCdb(sa, length).to_bytes()


def test_the_service_action_numbers_are_spc4s() -> None:
    # qompr persist compares service actions as numbers, as sg_persist does (no enum at start).
    from qompr.cli.persist import options
    from qompr.cli.persist import prin
    from qompr.scsi import PrInAction
    from qompr.scsi import PrOutAction

    assert (prin._READ_KEYS, prin._READ_RESERVATION, prin._REPORT_CAPABILITIES) == (
        PrInAction.READ_KEYS,
        PrInAction.READ_RESERVATION,
        PrInAction.REPORT_CAPABILITIES,
    )
    assert prin.PRIN_SA_TEXT[prin._REPORT_CAPABILITIES] == "Report capabilities"
    assert options._REGISTER_AND_MOVE == PrOutAction.REGISTER_AND_MOVE
