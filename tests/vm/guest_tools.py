# SPDX-License-Identifier: MIT
"""Guest-side helpers for VM test bed scripts (standard library only; no qompr import).

In a guest script::

    "$VMBED_PYTHON" - <<'PY'
    import os, sys
    sys.path.insert(0, os.environ["VMBED_VMDIR"])
    from guest_tools import read_keys, write_result
    write_result("keys.json", {"keys": read_keys(os.environ["VMBED_DEV2"])[1]})
    PY

and on the host ``result.json("keys.json")``.  The SCSI pieces here are deliberately
independent of qompr's own codecs: they are the yardstick the bed checks qompr against.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HelperResponse",
    "PRHelperClient",
    "SgResult",
    "parse_read_keys",
    "pr_in_cdb",
    "pr_out_cdb",
    "pr_out_params",
    "read_keys",
    "sg_io",
    "write_result",
]

SG_IO = 0x2285
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
#: qemu-pr-helper protocol sizes (CDB padded to 16 bytes, sense buffer of 96 bytes).
HELPER_CDB_SIZE = 16
HELPER_SENSE_SIZE = 96


class _SgIoHdr(ctypes.Structure):
    """``struct sg_io_hdr`` from <scsi/sg.h>."""

    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


@dataclass(frozen=True)
class SgResult:
    """What SG_IO returned: SCSI status, sense bytes, data in, host/driver status."""

    status: int
    sense: bytes
    data: bytes
    host_status: int
    driver_status: int


def sg_io(
    device: str | int,
    cdb: bytes,
    *,
    data_out: bytes = b"",
    data_in_len: int = 0,
    timeout_ms: int = 30000,
    into: ctypes.Array[ctypes.c_char] | None = None,
) -> SgResult:
    """Send one CDB with SG_IO to a /dev/sdX or /dev/sgN (path or open fd).

    The data-in buffer is a new zeroed one, or *into* (at least *data_in_len* bytes) as the
    caller left it: what a device does not write in it stays.
    """
    fd = os.open(device, os.O_RDWR | os.O_NONBLOCK) if isinstance(device, str) else device
    try:
        cdb_buf = ctypes.create_string_buffer(bytes(cdb), len(cdb))
        sense = ctypes.create_string_buffer(HELPER_SENSE_SIZE)
        if data_out:
            buf = ctypes.create_string_buffer(bytes(data_out), len(data_out))
            direction, length = SG_DXFER_TO_DEV, len(data_out)
        elif data_in_len:
            buf = ctypes.create_string_buffer(data_in_len) if into is None else into
            direction, length = SG_DXFER_FROM_DEV, data_in_len
        else:
            buf = ctypes.create_string_buffer(1)
            direction, length = SG_DXFER_NONE, 0
        hdr = _SgIoHdr(
            interface_id=ord("S"),
            dxfer_direction=direction,
            cmd_len=len(cdb),
            mx_sb_len=len(sense),
            dxfer_len=length,
            dxferp=ctypes.cast(buf, ctypes.c_void_p),
            cmdp=ctypes.cast(cdb_buf, ctypes.c_void_p),
            sbp=ctypes.cast(sense, ctypes.c_void_p),
            timeout=timeout_ms,
        )
        fcntl.ioctl(fd, SG_IO, hdr)
        data = buf.raw[: max(0, length - hdr.resid)] if direction == SG_DXFER_FROM_DEV else b""
        return SgResult(
            hdr.status, sense.raw[: hdr.sb_len_wr], data, hdr.host_status, hdr.driver_status
        )
    finally:
        if isinstance(device, str):
            os.close(fd)


def pr_in_cdb(action: int, alloc_len: int = 8192) -> bytes:
    """PERSISTENT RESERVE IN (0x5E) with a service action (0 = READ KEYS)."""
    return struct.pack(">BB5xHB", 0x5E, action & 0x1F, alloc_len, 0)


def pr_out_cdb(action: int, pr_type: int = 0, param_len: int = 24) -> bytes:
    """PERSISTENT RESERVE OUT (0x5F) with a service action and LU scope + type."""
    return struct.pack(">BBB2xIB", 0x5F, action & 0x1F, pr_type & 0x0F, param_len, 0)


def pr_out_params(key: int = 0, sa_key: int = 0, *, aptpl: bool = False) -> bytes:
    """The basic 24-byte PR OUT parameter list."""
    return struct.pack(">QQ4xB3x", key, sa_key, 1 if aptpl else 0)


def parse_read_keys(data: bytes) -> tuple[int, list[int]]:
    """(generation, keys) from READ KEYS parameter data."""
    generation, length = struct.unpack_from(">II", data)
    count = min(length, len(data) - 8) // 8
    return generation, [struct.unpack_from(">Q", data, 8 + 8 * i)[0] for i in range(count)]


def read_keys(device: str | int) -> tuple[int, list[int]]:
    """READ KEYS through SG_IO: (generation, keys); raises on a non-GOOD status."""
    result = sg_io(device, pr_in_cdb(0, 8192), data_in_len=8192)
    if result.status != 0 or result.host_status or result.driver_status:
        raise OSError(f"READ KEYS failed: {result}")
    return parse_read_keys(result.data)


@dataclass(frozen=True)
class HelperResponse:
    """One qemu-pr-helper answer: SCSI status, sense bytes and PR IN data."""

    result: int
    sense: bytes
    data: bytes


class PRHelperClient:
    """Minimal client of the qemu-pr-helper socket protocol.

    After connecting, the helper sends a 4-byte big-endian feature word and the client answers
    with the features it wants (none).  A request is the CDB padded to 16 bytes, sent with the
    device fd as SCM_RIGHTS; a PR OUT is followed by its parameter list, exactly as long as
    the CDB's PARAMETER LIST LENGTH says (no length word).  The answer is result and size
    (4 bytes big-endian each), 96 bytes of sense, then ``size`` bytes of data for a PR IN.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        (self.features,) = struct.unpack(">I", self._recv(4))
        self.sock.sendall(struct.pack(">I", 0))

    def _recv(self, size: int) -> bytes:
        buf = b""
        while len(buf) < size:
            chunk = self.sock.recv(size - len(buf))
            if not chunk:
                raise ConnectionError("qemu-pr-helper closed the connection")
            buf += chunk
        return buf

    def run(self, fd: int, cdb: bytes, data_out: bytes = b"") -> HelperResponse:
        """Send one PR IN / PR OUT for the device open as ``fd``."""
        socket.send_fds(self.sock, [cdb.ljust(HELPER_CDB_SIZE, b"\0")], [fd])
        if cdb[0] == 0x5F:
            (param_len,) = struct.unpack_from(">I", cdb, 5)
            if len(data_out) != param_len:
                raise ValueError(f"PR OUT data is {len(data_out)} bytes, the CDB says {param_len}")
            self.sock.sendall(data_out)
        result, size = struct.unpack(">ii", self._recv(8))
        sense = self._recv(HELPER_SENSE_SIZE)
        data = self._recv(size) if cdb[0] == 0x5E and size > 0 else b""
        return HelperResponse(result, sense, data)

    def close(self) -> None:
        self.sock.close()


def write_result(name: str, obj: Any) -> str:
    """Write ``obj`` as JSON to ``$VMBED_RESULT_DIR/name``; return the path."""
    path = os.path.join(os.environ["VMBED_RESULT_DIR"], name)
    with open(path, "w") as out:
        json.dump(obj, out, indent=1, sort_keys=True)
    return path
