# SPDX-License-Identifier: MIT
"""PR IN data as sg_persist prints it (its ``prin_work``), and TransportIDs as sg3_utils'
``sg_decode_transportid_str`` prints them.

The texts are sg3_utils' (BSD-licensed, (c) Douglas Gilbert), reproduced so the output
matches; see :mod:`qompr.cli.sglib`.
"""

from __future__ import annotations

from qompr.cli.sglib.hexdump import cstr
from qompr.cli.sglib.hexdump import hex_dump
from qompr.cli.sglib.hexdump import hex_str
from qompr.cli.sglib.numbers import be
from qompr.cli.sglib.numbers import int32

__all__ = ["PRIN_SA_TEXT", "PR_TYPE_TEXT", "Malformed", "format_prin", "transport_id_text"]

_TID_MIN_LEN = 24

PRIN_SA_TEXT = ("Read keys", "Read reservation", "Report capabilities", "Read full status")
# sg_persist's PRIN_*_SA numbers (SPC-4 §6.15.1), in PRIN_SA_TEXT's order: qompr.scsi's enums
# would be built at every start for these three comparisons (tests/cli checks they agree).
_READ_KEYS, _READ_RESERVATION, _REPORT_CAPABILITIES = range(3)
PR_TYPE_TEXT = (
    "obsolete [0]",
    "Write Exclusive",
    "obsolete [2]",
    "Exclusive Access",
    "obsolete [4]",
    "Write Exclusive, registrants only",
    "Exclusive Access, registrants only",
    "Write Exclusive, all registrants",
    "Exclusive Access, all registrants",
    "obsolete [9]",
    "obsolete [0xa]",
    "obsolete [0xb]",
    "obsolete [0xc]",
    "obsolete [0xd]",
    "obsolete [0xe]",
    "obsolete [0xf]",
)


def transport_id_text(leadin: str, data: bytes, length: int, *, only_one: bool = True) -> str:
    """sg3_utils' ``sg_decode_transportid_str`` for the TransportID(s) in *data*.

    :param length: the length the caller gives (sg_persist: the ADDITIONAL DESCRIPTOR LENGTH);
        bytes past the end of *data* read as zero.
    :param only_one: decode the first TransportID only.
    """
    out: list[str] = []
    at = 0
    first = True
    while length > 0:
        if not first and only_one:
            break
        first = False
        tid = data[at : at + max(length, _TID_MIN_LEN)].ljust(_TID_MIN_LEN, b"\0")
        if length < _TID_MIN_LEN or length % 4:
            # sg3_utils prints the size of its text buffer here, always 1024 in sg_persist.
            out.append(f"{leadin}Transport Id short or not multiple of 4 [length=1024]:\n")
        else:
            out.append(f"{leadin}Transport Id of initiator:\n")
        fmt, proto = tid[0] >> 6, tid[0] & 0x0F
        normal = min(length, _TID_MIN_LEN)
        bump = _TID_MIN_LEN
        unexpected = f"{leadin}  [Unexpected TPID format: {fmt}]\n" if fmt else ""
        if proto == 0x0:
            out += [f"{leadin}  FCP-2 World Wide Name:\n", unexpected]
            out.append(hex_str(tid[8:16], leadin))
        elif proto == 0x1:
            out.append(f"{leadin}  Parallel SCSI initiator SCSI address: 0x{be(tid, 2, 2):x}\n")
            out.append(unexpected)
            out.append(
                f"{leadin}  relative port number (of corresponding target): 0x{be(tid, 6, 2):x}\n"
            )
        elif proto == 0x2:
            out.append(f"{leadin}  SSA (transport id not defined):\n")
            out.append(f"{leadin}  TPID format: {fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        elif proto == 0x3:
            out += [f"{leadin}  IEEE 1394 EUI-64 name:\n", unexpected]
            out.append(hex_str(tid[8:16], leadin))
        elif proto == 0x4:
            out += [f"{leadin}  RDMA initiator port identifier:\n", unexpected]
            out.append(hex_str(tid[8:24], leadin))
        elif proto == 0x5:
            num = be(tid, 2, 2)
            body = data[at + 4 : at + 4 + num]
            if fmt == 0:
                out.append(f"{leadin}  iSCSI name: {cstr(body, num)}\n")
            elif fmt == 1:
                out.append(f"{leadin}  iSCSI world wide unique port id: {cstr(body, num)}\n")
            else:
                out.append(f"{leadin}  iSCSI   [Unexpected TPID format: {fmt}]\n")
                raw = data[at : at + num + 4].ljust(num + 4, b"\0")
                out.append(hex_str(raw, leadin, ascii=True))
            bump = max(num + 4, _TID_MIN_LEN)
        elif proto == 0x6:
            out.append(f"{leadin}  SAS address: 0x{be(tid, 4, 8):x}\n")
            out.append(unexpected)
        elif proto in (0x7, 0x8, 0x9, 0xB):
            name = {0x7: "ADT", 0x8: "ATAPI", 0x9: "UAS", 0xB: "PCIE"}[proto]
            out.append(f"{leadin}  {name}:\n{leadin}  TPID format: {fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        elif proto == 0xA:
            if fmt == 0:
                out.append(f"{leadin}  SOP Routing ID: 0x{be(tid, 2, 2):x}\n")
            else:
                out.append(f"{leadin}  SOP   [Unexpected TPID format: {fmt}]\n")
                out.append(hex_str(tid[:normal], leadin))
        elif proto == 0xF:
            out.append(f"{leadin}  No specified protocol\n")
        else:
            out.append(f"{leadin}  unknown protocol id=0x{proto:x}  TPID format={fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        at += bump
        length -= bump
    return "".join(out)


def _scope_type(byte: int, indent: str) -> str:
    scope = byte >> 4
    head = f"{indent}scope: LU_SCOPE, " if scope == 0 else f"{indent}scope: {scope} "
    return f"{head} type: {PR_TYPE_TEXT[byte & 0x0F]}\n"


def _format_capabilities(buf: bytes) -> str:
    flags = (
        ("Replace Lost Reservation Capable(RLR_C)", buf[2] & 0x80),
        ("Compatible Reservation Handling(CRH)", buf[2] & 0x10),
        ("Specify Initiator Ports Capable(SIP_C)", buf[2] & 0x08),
        ("All Target Ports Capable(ATP_C)", buf[2] & 0x04),
        ("Persist Through Power Loss Capable(PTPL_C)", buf[2] & 0x01),
        ("Type Mask Valid(TMV)", buf[3] & 0x80),
    )
    text = "Report capabilities response:\n"
    text += "".join(f"  {name}: {int(bool(bit))}\n" for name, bit in flags)
    text += f"  Allow Commands: {(buf[3] >> 4) & 0x7}\n"
    text += f"  Persist Through Power Loss Active(PTPL_A): {buf[3] & 0x01}\n"
    if buf[3] & 0x80:
        text += "    Support indicated in Type mask:\n"
        for pr_type, byte, bit in ((7, 4, 0x80), (6, 4, 0x40), (5, 4, 0x20), (3, 4, 0x08)):
            text += f"      {PR_TYPE_TEXT[pr_type]}: {int(bool(buf[byte] & bit))}\n"
        text += f"      {PR_TYPE_TEXT[1]}: {int(bool(buf[4] & 0x02))}\n"
        text += f"      {PR_TYPE_TEXT[8]}: {buf[5] & 0x01}\n"
    return text


def _format_full_status(buf: bytes, add_len: int, verbose: int) -> str:
    text = ""
    if add_len == 0:
        text += "  No full status descriptors\n"
        if verbose:
            text += "  So there are no registered IT nexuses\n"
    at = 8
    while at - 8 < add_len and at < len(buf):
        desc_len = int32(be(buf, at + 20, 4))
        text += f"    Key=0x{be(buf, at, 8):x}\n"
        flags = buf[at + 12] if at + 12 < len(buf) else 0
        if flags & 0x02:
            text += "      All target ports bit set\n"
        else:
            text += "      All target ports bit clear\n"
            text += f"      Relative port address: 0x{be(buf, at + 18, 2):x}\n"
        if flags & 0x01:
            text += "      << Reservation holder >>\n"
            text += _scope_type(be(buf, at + 13, 1), "      ")
        else:
            text += "      not reservation holder\n"
        if desc_len > 0:
            text += transport_id_text("      ", buf[at + 24 :], desc_len)
        if 24 + desc_len <= 0:
            break  # sg_persist would loop for ever on this descriptor
        at += 24 + desc_len
    return text


def format_prin(sa: int, buf: bytes, alloc_len: int, hex_level: int, verbose: int) -> str:
    """sg_persist's text for PR IN data (``prin_work``), *buf* holding at least 8 bytes.

    :raises Malformed: a REPORT CAPABILITIES response whose LENGTH is not 8.
    """
    if sa == _REPORT_CAPABILITIES:
        if buf[1] != 8:
            raise Malformed(hex_dump(buf[: buf[1]], 1) if hex_level else "")
        return hex_dump(buf[:8], 1) if hex_level else _format_capabilities(buf)
    generation = be(buf, 0, 4)
    add_len = int32(be(buf, 4, 4))
    if hex_level > 1:
        return hex_dump(buf[: max(add_len + 8, 0)], 1 if hex_level == 2 else -1)
    head = f"  PR generation=0x{generation:x}"
    if hex_level:
        text = head + ", "
        if add_len <= 0:
            text += f"Additional length={add_len}\n"
        if add_len & 0xFFFF_FFFF > (alloc_len - 8) & 0xFFFF_FFFF:
            text += f"Additional length too large={add_len}, truncate\n"
            return text + hex_dump(buf[8:alloc_len], 1)
        return text + f"Additional length={add_len}\n" + hex_dump(buf[8 : 8 + add_len], 1)
    if sa == _READ_KEYS:
        count = add_len // 8 if add_len > 0 else 0
        if count <= 0:
            return head + ", there are NO registered reservation keys\n"
        follows = (
            "1 registered reservation key follows"
            if count == 1
            else (f"{count} registered reservation keys follow")
        )
        shown = min(count, (len(buf) - 8) // 8)
        keys = "".join(f"    0x{be(buf, 8 + 8 * k, 8):x}\n" for k in range(shown))
        return f"{head}, {follows}:\n{keys}"
    if sa == _READ_RESERVATION:
        if add_len // 16 <= 0:
            return head + ", there is NO reservation held\n"
        key = f"    Key=0x{be(buf, 8, 8):x}\n"
        return head + ", Reservation follows:\n" + key + _scope_type(buf[21], "    ")
    return head + "\n" + _format_full_status(buf, add_len, verbose)


class Malformed(Exception):  # noqa: N818  (an internal signal, not an error type)
    """REPORT CAPABILITIES data sg_persist refuses; carries the stdout text (hex or empty)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
