# SPDX-License-Identifier: MIT
"""Bytes as sg3_utils prints them: ``hex2stdout`` dumps, ``hex2str`` lines, C strings."""

from __future__ import annotations

__all__ = ["cstr", "hex_dump", "hex_str"]


def hex_dump(data: bytes, no_ascii: int) -> str:
    """sg3_utils' ``hex2stdout`` / ``dStrHex`` text of *data*.

    :param no_ascii: above 0, each line has the offset then up to 16 hex bytes; 0 adds the
        bytes as ASCII on the right; below 0, only the hex bytes.
    """
    lines: list[str] = []
    if not data:
        return ""
    if no_ascii < 0:
        for at in range(0, len(data), 16):
            chunk = data[at : at + 16]
            text = " ".join(f"{b:02x}" for b in chunk[:8])
            if len(chunk) > 8:
                text += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
            lines.append(text)
        return "".join(line + "\n" for line in lines)
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        buff = [" "] * 80
        address = f"{at:02x}"
        buff[1 : 1 + len(address)] = address
        bpos = 5
        for i, byte in enumerate(chunk):
            bpos += 3
            if bpos == 5 + 27:
                bpos += 1
            buff[bpos : bpos + 2] = f"{byte:02x}"
            if not no_ascii:
                buff[60 + i] = chr(byte) if 0x20 <= byte < 0x7F else "."
        line = "".join(buff[: 60 + len(chunk)])
        lines.append(line.rstrip(" ") if no_ascii else line[:76])
    return "".join(line + "\n" for line in lines)


def hex_str(data: bytes, leadin: str = "", *, ascii: bool = False) -> str:
    """sg3_utils' ``hex2str``: 16 hex bytes a line, each line after *leadin*.

    :param ascii: add the bytes as ASCII on the right (``format`` 0 in sg3_utils).
    """
    leadin = leadin[:60]
    out = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = " ".join(f"{b:02x}" for b in chunk[:8])
        if len(chunk) > 8:
            text += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        if ascii:
            chars = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
            text = text.ljust(52) + chars.ljust(16)
        out.append(leadin + text + "\n")
    return "".join(out)


def cstr(data: bytes, limit: int) -> str:
    """``printf("%.*s", limit, data)``: up to *limit* bytes, stopping at a NUL."""
    chunk = data[: max(limit, 0)]
    end = chunk.find(0)
    if end >= 0:
        chunk = chunk[:end]
    return chunk.decode("utf-8", "replace")
