# SPDX-License-Identifier: MIT
"""``qompr doctor`` checks for multipath persistent reservations.

Three questions, each a :class:`DoctorCheck`:

``libmpathpersist``
    Does ``libmpathpersist.so.0`` load, with the ``libmpathpersist_init`` API (0.8.6+)?
``multipathd``
    Does multipathd answer on its control socket (abstract ``@/org/kernel/linux/storage/
    multipathd``, or ``/run/multipathd.socket`` since 0.12.0)?
``reservation_key``
    Does multipath.conf set ``reservation_key`` (in ``defaults``, ``overrides``, or the
    ``multipaths`` entry of the device)?  Without it multipathd does not register the key on
    paths that appear, or come back, after the REGISTER (multipath.conf(5);
    docs/reference/libmpathpersist.md §5).  With a device, multipathd's own view (``getprkey map
    NAME``) is reported too.

The checks only read: nothing is initialised, and multipathd is asked only ``show``-style
questions.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import attrs

from qompr._compat import override
from qompr.errors import ConnectError
from qompr.managers.multipath._library import LIBRARY_NAME
from qompr.managers.multipath._library import load_library
from qompr.managers.multipath._multipathd import connect_multipathd
from qompr.managers.multipath._multipathd import multipathd_command

__all__ = [
    "DEFAULT_CONFIG",
    "ConfSection",
    "DoctorCheck",
    "KeySetting",
    "doctor_checks",
    "parse_multipath_conf",
    "reservation_keys",
]

#: Where multipath-tools reads its configuration.
DEFAULT_CONFIG = "/etc/multipath.conf"
_DEFAULT_CONFIG_DIR = "/etc/multipath/conf.d"


@attrs.frozen
class DoctorCheck:
    """The outcome of one check.

    :param name: what was checked (``libmpathpersist``, ``multipathd``, ``reservation_key``).
    :param ok: whether it is fine.
    :param detail: what was found, in one line.
    :param hint: what to do about it, when not ok.
    """

    name: str
    ok: bool
    detail: str
    hint: str | None = None


# -- multipath.conf ----------------------------------------------------------------------------


@attrs.define
class ConfSection:
    """One ``name { ... }`` block of multipath.conf: its keywords and its sub-sections.

    :param name: the section name (``defaults``, ``multipaths``, ``multipath`` ...).
    :param values: keyword → value, the last one winning, as libmultipath reads them.
    :param sections: the nested sections in file order.
    """

    name: str
    values: dict[str, str] = attrs.Factory(dict)
    sections: list[ConfSection] = attrs.Factory(list)

    def children(self, name: str) -> Iterator[ConfSection]:
        """The sub-sections called *name*."""
        return (s for s in self.sections if s.name == name)


_TOKEN = re.compile(r'"([^"]*)"?|([{}])|([^\s{}"]+)')


def _tokens(line: str) -> Iterator[str]:
    for match in _TOKEN.finditer(line):
        quoted, brace, word = match.groups()
        if word is not None and word[0] in "#!":
            return  # a comment runs to the end of the line
        yield quoted if quoted is not None else (brace or word)


def parse_multipath_conf(text: str, root: ConfSection | None = None) -> ConfSection:
    """Parse multipath.conf text into sections (lenient: unknown keywords are kept).

    :param text: the file's contents.
    :param root: a root to add to (several files, as with ``config_dir``), else a new one.
    :returns: the root section (name ``""``), whose sub-sections are the top-level blocks.
    """
    root = root if root is not None else ConfSection("")
    stack = [root]
    for line in text.splitlines():
        words = list(_tokens(line))
        if not words:
            continue
        if words[0] == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if len(words) >= 2 and words[1] == "{":
            section = ConfSection(words[0])
            stack[-1].sections.append(section)
            stack.append(section)
            continue
        stack[-1].values[words[0]] = " ".join(words[1:])
    return root


def _read_config(path: str) -> tuple[ConfSection, list[str]]:
    """The parsed configuration and the files read (multipath.conf, then config_dir/*.conf)."""
    root = ConfSection("")
    read: list[str] = []
    try:
        parse_multipath_conf(Path(path).read_text(errors="replace"), root)
        read.append(path)
    except OSError:
        pass
    config_dir = _DEFAULT_CONFIG_DIR
    for defaults in root.children("defaults"):
        config_dir = defaults.values.get("config_dir", config_dir)
    for extra in sorted(glob.glob(os.path.join(config_dir, "*.conf"))):
        try:
            parse_multipath_conf(Path(extra).read_text(errors="replace"), root)
            read.append(extra)
        except OSError:
            continue
    return root, read


@attrs.frozen
class KeySetting:
    """One ``reservation_key`` found in the configuration.

    :param section: ``defaults``, ``overrides`` or ``multipath``.
    :param value: the value as written (``0x123abc``, ``file``, with an optional ``:aptpl``).
    :param wwid: for a ``multipath`` entry, its wwid.
    :param alias: for a ``multipath`` entry, its alias.
    """

    section: str
    value: str
    wwid: str | None = None
    alias: str | None = None

    def applies_to(self, name: str | None, wwid: str | None) -> bool:
        """Whether this setting applies to the map called *name* with *wwid*."""
        if self.section != "multipath":
            return True
        return (wwid is not None and self.wwid == wwid) or (name is not None and self.alias == name)

    @override
    def __str__(self) -> str:
        if self.section != "multipath":
            return f"{self.section}: {self.value}"
        who = self.alias or self.wwid or "?"
        return f"multipaths/{who}: {self.value}"


def reservation_keys(root: ConfSection) -> list[KeySetting]:
    """Every ``reservation_key`` of a parsed configuration, in file order."""
    found: list[KeySetting] = []
    for name in ("defaults", "overrides"):
        for section in root.children(name):
            if "reservation_key" in section.values:
                found.append(KeySetting(name, section.values["reservation_key"]))
    for multipaths in root.children("multipaths"):
        for entry in multipaths.children("multipath"):
            if "reservation_key" in entry.values:
                found.append(
                    KeySetting(
                        "multipath",
                        entry.values["reservation_key"],
                        wwid=entry.values.get("wwid"),
                        alias=entry.values.get("alias"),
                    )
                )
    return found


# -- the device --------------------------------------------------------------------------------


def _map_of(device: str) -> tuple[str | None, str | None]:
    """(map name, wwid) of a device-mapper device node, from sysfs; Nones if unknown."""
    try:
        st = os.stat(device)
    except OSError:
        return None, None
    if not stat.S_ISBLK(st.st_mode):
        return None, None
    sysfs = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/dm")
    try:
        name = (sysfs / "name").read_text().strip()
        uuid = (sysfs / "uuid").read_text().strip()
    except OSError:
        return None, None
    # multipath maps have the dm uuid "mpath-<wwid>".
    wwid = uuid[len("mpath-") :] if uuid.startswith("mpath-") else None
    return name, wwid


# -- the checks --------------------------------------------------------------------------------


def _check_library() -> DoctorCheck:
    try:
        lib = load_library(LIBRARY_NAME)
    except ConnectError as exc:
        return DoctorCheck("libmpathpersist", False, exc.message, exc.hint)
    path = LIBRARY_NAME
    try:
        info = _dl_path(lib)
        if info:
            path = info
    except OSError:
        pass
    return DoctorCheck("libmpathpersist", True, f"{path} loads (libmpathpersist_init API)")


def _dl_path(lib: ctypes.CDLL) -> str | None:
    """The file a loaded library came from, from /proc/self/maps."""
    handle_name = os.path.basename(lib._name)
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and os.path.basename(parts[5]).startswith(handle_name):
                return parts[5]
    return None


def _check_multipathd() -> tuple[DoctorCheck, bool]:
    try:
        sock, address = connect_multipathd()
    except ConnectError as exc:
        return DoctorCheck("multipathd", False, exc.message, exc.hint), False
    sock.close()
    return DoctorCheck("multipathd", True, f"multipathd answers on {address}"), True


def _check_key(config: str, device: str | None, multipathd_up: bool) -> DoctorCheck:
    root, read = _read_config(config)
    hint = (
        f"Add 'reservation_key 0x<key>' (or 'reservation_key file') to the defaults or the "
        f"device's multipaths entry in {config}, then 'multipathd reconfigure'"
    )
    if not read:
        return DoctorCheck("reservation_key", False, f"{config} does not exist", hint)
    settings = reservation_keys(root)
    if device is None:
        if not settings:
            return DoctorCheck(
                "reservation_key", False, f"no reservation_key in {', '.join(read)}", hint
            )
        listed = "; ".join(str(s) for s in settings)
        return DoctorCheck("reservation_key", True, f"reservation_key set ({listed})")
    name, wwid = _map_of(device)
    if name is None:
        return DoctorCheck(
            "reservation_key",
            False,
            f"{device} is not a device-mapper device",
            "Pass the multipath map (/dev/mapper/NAME)",
        )
    applying = [s for s in settings if s.applies_to(name, wwid)]
    # A multipaths entry wins over the defaults (libmultipath's property selection).
    applying.sort(key=lambda s: s.section != "multipath")
    known = ""
    if multipathd_up:
        try:
            known = f"; multipathd: {multipathd_command(f'getprkey map {name}').strip()}"
        except ConnectError as exc:
            known = f"; multipathd: {exc.message}"
    if not applying:
        return DoctorCheck(
            "reservation_key", False, f"no reservation_key applies to {name}{known}", hint
        )
    return DoctorCheck(
        "reservation_key", True, f"{name} uses reservation_key from {applying[0]}{known}"
    )


def doctor_checks(device: str | None = None, *, config: str = DEFAULT_CONFIG) -> list[DoctorCheck]:
    """Run the multipath checks.

    :param device: a multipath map (``/dev/mapper/mpatha``) whose ``reservation_key`` to
        check; without it, any ``reservation_key`` in the configuration counts.
    :param config: the multipath.conf to read.
    :returns: the ``libmpathpersist``, ``multipathd`` and ``reservation_key`` checks.
    """
    library = _check_library()
    daemon, up = _check_multipathd()
    return [library, daemon, _check_key(config, device, up)]
