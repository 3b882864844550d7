# SPDX-License-Identifier: MIT
"""A second-level guest for the VM test bed: a VM whose disks are the bed's LIO devices.

:func:`build_initramfs` makes a busybox initramfs that loads virtio-scsi, runs a list of
shell steps (sg3-utils programs are copied in with their shared libraries) and powers off;
each step's output and exit status go to the console between markers, which
:func:`parse_console` reads back.  The bed's guest boots it with ``qemu-system-x86_64`` and
``scsi-block`` disks on its own ``/dev/sdX``, so the second-level guest sends real SCSI
commands through QEMU — PERSISTENT RESERVE IN/OUT through QEMU's ``pr-manager`` — to LIO.

TCG inside TCG is slow (a minute or so to boot), so one boot should carry many steps.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .vmbed import VMBedError
from .vmbed import _busybox
from .vmbed import _Cpio
from .vmbed import _decompress_module
from .vmbed import _module_files

__all__ = ["MODULES", "Step", "build_initramfs", "parse_console"]

#: What the second-level guest needs for disks on a virtio-scsi HBA, /dev/sgN included.
MODULES = ("virtio_pci", "virtio_scsi", "sd_mod", "sg")
_MARK = "@@qompr-nested@@"

#: /init: mount, load the modules, wait for the disks, run the steps, power off (QEMU runs
#: with -no-reboot, so "reboot -f" ends it; with acpi=off there is no ACPI power-off).
#: @WAIT@ becomes the test for "every disk is there" (see :func:`_init_script`).
_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/mods/$m" 2>/dev/null; done </mods/order
disk() {{  # the /dev node of the disk at SCSI id $1
    for b in /sys/bus/scsi/devices/*:0:$1:0/block/*; do
        [ -e "$b" ] && echo "/dev/${{b##*/}}" && return
    done
}}
for i in $(seq 100); do
    @WAIT@ && break
    sleep 0.2
done
export D0=$(disk 0) D1=$(disk 1)
echo "{_MARK} disks $D0 $D1"
while IFS='	' read -r name command; do
    [ -n "$name" ] || continue
    echo "{_MARK} begin $name"
    sh -c "$command" >/tmp/out 2>&1
    rc=$?
    cat /tmp/out
    echo "{_MARK} end $name $rc"
done </steps
echo "{_MARK} done"
reboot -f
"""


def _init_script(disks: int) -> str:
    """/init for a guest that waits for the disks at SCSI ids 0 .. *disks* - 1."""
    wait = " && ".join(f'[ -n "$(disk {n})" ]' for n in range(disks))
    return _INIT.replace("@WAIT@", wait)


@dataclass(frozen=True)
class Step:
    """What one step printed (stdout and stderr together) and its exit status."""

    name: str
    rc: int
    output: str


def _libraries(binary: str) -> list[str]:
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VMBedError(f"ldd {binary}: {proc.stderr.strip()}")
    return re.findall(r"(/\S+\.so[.\d]*)", proc.stdout)


def build_initramfs(
    kver: str,
    steps: Sequence[tuple[str, str]],
    programs: Sequence[str],
    path: Path,
    *,
    modules: Sequence[str] = MODULES,
    disks: int = 2,
) -> Path:
    """Write an uncompressed initramfs (inflating costs the nested guest seconds) to *path*.

    :param steps: (name, shell command) pairs; ``$D0`` and ``$D1`` are the disks at SCSI
        ids 0 and 1.
    :param programs: host programs to copy in (with their libraries), e.g. ``sg_persist``.
    :param disks: how many disks (SCSI ids 0, 1, ...) /init waits for before the steps; with
        one, ``$D1`` is empty.
    """
    cpio = _Cpio()
    made: set[str] = set()

    def directory(name: str) -> None:
        parts = name.split("/")
        for n in range(1, len(parts) + 1):
            sub = "/".join(parts[:n])
            if sub not in made:
                made.add(sub)
                cpio.directory(sub)

    def file(name: str, data: bytes, mode: int = 0o644) -> None:
        directory(str(Path(name).parent))
        cpio.file(name, data, mode)

    for name in ("bin", "dev", "proc", "sys", "tmp", "mods"):
        directory(name)
    file("bin/busybox", _busybox().read_bytes(), 0o755)
    copied: set[str] = set()
    for program in programs:
        for source in [program, *_libraries(program)]:
            if source in copied:
                continue
            copied.add(source)
            file(source.lstrip("/"), Path(source).resolve().read_bytes(), 0o755)
    order = []
    for module in _module_files(kver, modules):
        name = module.name
        for suffix in (".xz", ".gz", ".zst"):
            name = name.removesuffix(suffix)
        file(f"mods/{name}", _decompress_module(module))
        order.append(name)
    file("mods/order", "".join(f"{name}\n" for name in order).encode())
    for name, command in steps:
        if "\t" in name or "\n" in name or "\n" in command:
            raise ValueError(f"step {name!r}: no tabs or newlines in names, none in commands")
    file("steps", "".join(f"{name}\t{command}\n" for name, command in steps).encode())
    file("init", _init_script(disks).encode(), 0o755)
    path.write_bytes(cpio.finish())
    return path


def parse_console(text: str) -> tuple[list[str], Mapping[str, Step], bool]:
    """(disks, steps by name, whether the guest got to the end) from its console output."""
    disks: list[str] = []
    steps: dict[str, Step] = {}
    done = False
    current: str | None = None
    lines: list[str] = []
    for line in text.replace("\r", "").splitlines():
        if not line.startswith(_MARK):
            if current is not None:
                lines.append(line)
            continue
        words = line[len(_MARK) :].split()
        if words[:1] == ["disks"]:
            disks = words[1:]
        elif words[:1] == ["begin"]:
            current, lines = words[1], []
        elif words[:1] == ["end"] and current is not None:
            steps[current] = Step(current, int(words[2]), "\n".join(lines) + "\n")
            current = None
        elif words[:1] == ["done"]:
            done = True
    return disks, steps, done
