# SPDX-License-Identifier: MIT
"""What the suite asks about dm-multipath maps: the key multipathd enforces, and the set-up.

With ``reservation_key 0x...`` in multipath.conf, libmpathpersist refuses any other key
("configured reservation key doesn't match"), so a node on such a map must register exactly
that key; with ``reservation_key file`` any key goes and multipathd remembers it.  Without
``reservation_key`` multipathd does not register the key on paths that appear or come back
later (multipath.conf(5)), so a path failover loses the node's registration: the multipath
check reports that, with ``qompr doctor``'s findings and hints.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qompr.errors import ConnectError

__all__ = ["DEFAULT_MULTIPATH_CONF", "configured_key", "map_name", "multipath_findings"]

#: Where multipath-tools reads its configuration.
DEFAULT_MULTIPATH_CONF = "/etc/multipath.conf"


def map_name(device: str) -> str | None:
    """The device-mapper name of *device* (``mpatha``), from sysfs; ``None`` if unknown."""
    try:
        st = os.stat(device)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    sysfs = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/dm/name")
    try:
        return sysfs.read_text().strip() or None
    except OSError:
        return None


def configured_key(device: str) -> int | None:
    """The reservation key multipathd holds for the map *device* (``getprkey``), or ``None``
    when there is none (no ``reservation_key``, or ``file`` with nothing registered yet) or
    multipathd does not answer."""
    from qompr.managers.multipath import multipathd_command

    name = map_name(device)
    if name is None:
        return None
    try:
        answer = multipathd_command(f"getprkey map {name}").strip()
    except ConnectError:
        return None
    text = answer.split(":", 1)[0].strip()
    if not text.lower().startswith("0x"):
        return None
    try:
        key = int(text, 16)
    except ValueError:
        return None
    return key or None


def multipath_findings(device: str, config: str) -> list[tuple[str, bool, str, str | None]]:
    """``qompr doctor``'s checks for the map *device*: (name, ok, detail, hint) each."""
    from qompr.managers.multipath import doctor_checks

    return [(c.name, c.ok, c.detail, c.hint) for c in doctor_checks(device, config=config)]
