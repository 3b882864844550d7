# SPDX-License-Identifier: MIT
"""Fields of sense data that sg3_utils reads beyond the key and ASC/ASCQ (SPC-4 §4.5).

The INFORMATION field and the progress indication, in fixed (70h/71h) and descriptor
(72h/73h) format, as sg3_utils' ``sg_get_sense_info_fld`` and ``sg_get_sense_progress_fld``
find them: ``qompr turs`` prints a logical unit's estimate of when it will be ready and, with
``-p``, the progress of a format or sanitize.
"""

from __future__ import annotations

from qompr.cli.sglib.numbers import be

__all__ = ["information", "progress"]

_NO_SENSE = 0x0
_NOT_READY = 0x2


def _descriptor(sense: bytes, kind: int) -> bytes | None:
    """The first sense data descriptor of type *kind* (SPC-4 §4.5.2.1), if any."""
    if len(sense) < 8 or not sense[7] or sense[0] not in (0x72, 0x73):
        return None
    end = 8 + min(sense[7], len(sense) - 8)
    at = 8
    while at < end:
        if sense[at] == kind:
            return sense[at:end]
        if at + 1 >= end:  # a descriptor cut after its type byte
            break
        at += sense[at + 1] + 2
    return None


def information(sense: bytes) -> int | None:
    """The INFORMATION field when its VALID bit is set, else ``None``.

    Fixed format: bytes 3-6 with VALID in byte 0 (SPC-4 §4.5.3); descriptor format: the
    information descriptor (type 00h, SPC-4 §4.5.2.2) with VALID in its byte 2.
    """
    if len(sense) < 7:
        return None
    code = sense[0] & 0x7F
    if code in (0x70, 0x71):
        return be(sense, 3, 4) if sense[0] & 0x80 else None
    if code in (0x72, 0x73):
        desc = _descriptor(sense, 0x00)
        if desc is not None and desc[1:2] == b"\x0a" and len(desc) > 2 and desc[2] & 0x80:
            return be(desc, 4, 8)
    return None


def progress(sense: bytes) -> int | None:
    """The PROGRESS INDICATION (0 to 65535), or ``None`` when the sense carries none.

    In the sense-key specific field with SKSV set, for NO SENSE and NOT READY (SPC-4
    §4.5.2.4.4), fixed format bytes 15-17 or the descriptor of type 02h; or in a progress
    indication descriptor (type 0Ah, SPC-4 §4.5.2.6), whatever the sense key.
    """
    if len(sense) < 7:
        return None
    code = sense[0] & 0x7F
    if code in (0x70, 0x71):
        key = sense[2] & 0x0F
        if len(sense) < 18 or key not in (_NO_SENSE, _NOT_READY) or not sense[15] & 0x80:
            return None
        return be(sense, 16, 2)
    if code not in (0x72, 0x73):
        return None
    if sense[1] & 0x0F in (_NO_SENSE, _NOT_READY):
        desc = _descriptor(sense, 0x02)
        if desc is not None and desc[1:2] == b"\x06" and len(desc) > 4 and desc[4] & 0x80:
            return be(desc, 5, 2)
    desc = _descriptor(sense, 0x0A)
    if desc is not None and desc[1:2] == b"\x06":
        return be(desc, 6, 2)
    return None
