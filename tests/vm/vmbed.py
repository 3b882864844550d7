# SPDX-License-Identifier: MIT
"""qompr's VM test bed: real Linux SCSI targets (LIO) for tests, in one QEMU boot.

The host has no SCSI devices, so :func:`run_in_vm` boots the host's Debian kernel
(``linux-image-amd64``) under ``qemu-system-x86_64`` (TCG), with the host's ``/`` shared
read-only over virtio-9p and a tmpfs overlay on top, through a small busybox initramfs.  In the
guest, ``tests/vm/guest-init.sh`` exports one LIO fileio LUN through *N* ``tcm_loop`` targets:
*N* distinct I_T nexuses, each with a ``/dev/sdX`` and a ``/dev/sgN``.  Optionally it starts
dm-multipath over them and the real ``qemu-pr-helper``.  Then it runs one bash script and
powers off; :class:`VMResult` carries the script's exit status, output, the files it left in
``$VMBED_RESULT_DIR`` and the logs.  A boot costs a few seconds, so put many checks in one
script.

``scripts/vm-setup`` installs what the bed needs; ``docs/vm-testbed.md`` explains it all.
Run ``python tests/vm/vmbed.py --help`` for the command-line form.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

__all__ = [
    "BUILDER_VERSION",
    "CommandRecord",
    "VMBedError",
    "VMResult",
    "VMSetupError",
    "VMTimeoutError",
    "cache_dir",
    "check_host",
    "ensure_initramfs",
    "ensure_vmlinux",
    "guest_python",
    "host_kernel",
    "run_in_vm",
]

#: Bump when the initramfs layout or the way it is built changes (part of the cache key).
BUILDER_VERSION = 1

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INITRD_INIT = HERE / "initrd-init.sh"
GUEST_INIT = HERE / "guest-init.sh"
GUEST_LIB = HERE / "guest-lib.sh"
VM_SETUP = REPO / "scripts" / "vm-setup"

#: Modules the initramfs loads to mount the 9p root with an overlay (dependencies added).
INITRD_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
#: Where the guest sees the host's run directory.
GUEST_OUT = "/vmbed-out"
#: Exit status the command-line form uses for "the bed itself failed" (as the reference).
SETUP_FAILURE_STATUS = 125
TIMEOUT_STATUS = 124
#: Host environment variables passed to the guest script unless ``env`` overrides them.
PASSED_ENV = ("LANG", "LC_ALL", "TERM", "TZ")
#: Standard directories appended to the guest PATH.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VMBedError(RuntimeError):
    """The test bed could not run the script: no kernel, QEMU failed, guest set-up failed."""

    def __init__(self, message: str, *, logs: Mapping[str, str] | None = None) -> None:
        self.logs: dict[str, str] = dict(logs or {})
        details = []
        for name in ("setup.log", "console.log", "qemu.log", "stdout", "stderr"):
            text = self.logs.get(name, "").strip()
            if text:
                tail = "\n".join(text.splitlines()[-40:])
                details.append(f"--- {name} (tail) ---\n{tail}")
        super().__init__("\n".join([message, *details]))
        self.message = message


class VMSetupError(VMBedError):
    """The guest booted but setting up LIO / multipath / qemu-pr-helper failed."""


class VMTimeoutError(VMBedError):
    """The guest did not power off within the timeout (QEMU was killed)."""


@dataclass(frozen=True)
class CommandRecord:
    """What the guest helper ``vmbed_run NAME cmd...`` recorded."""

    name: str
    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class VMResult:
    """The outcome of one boot.

    ``env`` holds every ``VMBED_*`` variable the script saw; ``files`` the files the script
    left in ``$VMBED_RESULT_DIR`` (relative names); ``timings`` guest uptimes in seconds at
    the milestones ``stage2``, ``lio``, ``multipath``, ``pr_helper``, ``script_start``,
    ``script_end``; ``logs`` the console, set-up and daemon logs.
    """

    exit_status: int
    stdout: str
    stderr: str
    console_log: str
    setup_log: str
    env: dict[str, str]
    files: dict[str, bytes]
    timings: dict[str, float]
    wall_time: float
    logs: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None

    def text(self, name: str) -> str:
        """A result file as text (KeyError if the script did not write it)."""
        return self.files[name].decode("utf-8", "replace")

    def json(self, name: str) -> Any:
        """A result file parsed as JSON."""
        return json.loads(self.files[name])

    def command(self, name: str) -> CommandRecord:
        """What ``vmbed_run NAME ...`` recorded in the guest."""
        try:
            status = int(self.text(f"{name}.rc").strip())
        except KeyError:
            raise KeyError(f"the guest script recorded no command {name!r}") from None
        return CommandRecord(
            name, status, self.text(f"{name}.out"), self.files.get(f"{name}.err", b"").decode()
        )

    def describe(self) -> str:
        """Everything useful for a failure message."""
        parts = [f"exit status {self.exit_status}, wall {self.wall_time:.1f}s"]
        for title, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            parts.append(f"--- {title} ---\n{text.rstrip()}")
        tail = "\n".join(self.setup_log.splitlines()[-30:])
        parts.append(f"--- setup.log (tail) ---\n{tail}")
        return "\n".join(parts)

    def check(self) -> VMResult:
        """Return self if the script exited 0, else raise AssertionError with the details."""
        if self.exit_status != 0:
            raise AssertionError(f"guest script failed: {self.describe()}")
        return self


# --------------------------------------------------------------------------------- host side


def cache_dir() -> Path:
    """``$VMBED_CACHE_DIR``, else ``$XDG_CACHE_HOME/qompr-vmbed`` (``~/.cache/qompr-vmbed``)."""
    explicit = os.environ.get("VMBED_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qompr-vmbed"


def _version_key(version: str) -> list[tuple[int, Any]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version) if p]


def host_kernel(kver: str | None = None) -> str:
    """The kernel version to boot: ``kver``, ``$VMBED_KVER``, else the newest
    ``/boot/vmlinuz-*`` whose modules are in ``/lib/modules``."""
    kver = kver or os.environ.get("VMBED_KVER") or None
    if kver is not None:
        if not Path(f"/boot/vmlinuz-{kver}").is_file():
            raise VMBedError(f"/boot/vmlinuz-{kver} does not exist")
        return kver
    found = [
        p.name.removeprefix("vmlinuz-")
        for p in Path("/boot").glob("vmlinuz-*")
        if Path("/lib/modules", p.name.removeprefix("vmlinuz-"), "kernel").is_dir()
    ]
    if not found:
        raise VMBedError(
            "no /boot/vmlinuz-* with modules in /lib/modules: run scripts/vm-setup "
            "(installs linux-image-amd64)"
        )
    return max(found, key=_version_key)


def _modprobe() -> str:
    for candidate in (shutil.which("modprobe"), "/usr/sbin/modprobe", "/sbin/modprobe"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise VMBedError("modprobe not found: run scripts/vm-setup (installs kmod)")


def _busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file():
            head = path.read_bytes()[:4096]
            if head[:4] != b"\x7fELF" or b"ld-linux" in head:
                # a dynamic busybox names its interpreter in the first page
                raise VMBedError(f"{path} is not statically linked: install busybox-static")
            return path
    raise VMBedError("busybox not found: run scripts/vm-setup (installs busybox-static)")


def _module_files(kver: str, modules: Sequence[str] = INITRD_MODULES) -> list[Path]:
    """*modules* and their dependencies, in load order (modprobe's order)."""
    files: list[Path] = []
    for module in modules:
        proc = subprocess.run(
            [_modprobe(), "-S", kver, "--show-depends", module],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise VMBedError(f"modprobe --show-depends {module} for {kver}: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "insmod" and Path(words[1]) not in files:
                files.append(Path(words[1]))
    return files


def _decompress_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        proc = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True)
        return proc.stdout
    return data


class _Cpio:
    """A minimal writer of the cpio "newc" format the kernel unpacks as an initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._ino += 1
        self._out.write(header + encoded)
        self._out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_initramfs(kver: str, cache: Path | None = None) -> Path:
    """Build (once) and return the busybox initramfs for ``kver``.

    The cache key is the kernel version, :data:`BUILDER_VERSION` and a digest of what goes in
    (``initrd-init.sh``, busybox, the module list), so editing the init script rebuilds it;
    superseded images are removed once they are an hour old.
    """
    busybox = _busybox()
    modules = _module_files(kver)
    init = INITRD_INIT.read_bytes()
    digest = hashlib.sha256(init)
    stat = busybox.stat()
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    for module in modules:
        digest.update(str(module).encode() + b"\0")
    path = (
        cache or cache_dir()
    ) / f"initramfs-{kver}-b{BUILDER_VERSION}-{digest.hexdigest()[:12]}.cpio.gz"
    if path.is_file() and path.stat().st_size > 0:
        return path
    cpio = _Cpio()
    for name in ("bin", "dev", "proc", "sys", "mods", "lower", "rw", "newroot"):
        cpio.directory(name)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", init, 0o755)
    order = []
    for module in modules:
        name = module.name
        for suffix in (".xz", ".gz", ".zst"):
            name = name.removesuffix(suffix)
        cpio.file(f"mods/{name}", _decompress_module(module))
        order.append(name)
    cpio.file("mods/order", "".join(f"{name}\n" for name in order).encode())
    _atomic_write(path, gzip.compress(cpio.finish(), compresslevel=1, mtime=0))
    _prune(path.parent, rf"initramfs-{re.escape(kver)}-b\d+-[0-9a-f]{{12}}\.cpio\.gz", path)
    return path


def _prune(directory: Path, pattern: str, keep: Path, min_age: float = 3600.0) -> None:
    """Remove superseded cache files named like ``pattern`` (a regex), if not recent: another
    run may be about to boot one."""
    now = time.time()
    for old in directory.iterdir():
        with contextlib.suppress(OSError):
            if (
                old != keep
                and re.fullmatch(pattern, old.name)
                and now - old.stat().st_mtime > min_age
            ):
                old.unlink()


def _extract_elf(image: bytes) -> bytes | None:
    """The uncompressed vmlinux ELF inside a bzImage, or None."""
    for magic in (b"\xfd7zXZ\x00", b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd"):
        start = image.find(magic)
        while start >= 0:
            out = b""
            with contextlib.suppress(Exception):
                if magic[:1] == b"\xfd":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
                elif magic[:1] == b"\x1f":
                    out = zlib.decompressobj(31).decompress(image[start:])
                elif shutil.which("zstd"):
                    out = subprocess.run(
                        ["zstd", "-dc"], input=image[start:], capture_output=True, check=False
                    ).stdout
            if out[:4] == b"\x7fELF":
                return out
            start = image.find(magic, start + 1)
    return None


def ensure_vmlinux(kver: str, cache: Path | None = None) -> Path | None:
    """The uncompressed kernel (cached), which QEMU boots through PVH.

    Booting it skips the kernel's own decompression, which is slow under TCG.  None if the
    bzImage holds no recognisable ELF (then the bzImage is booted).
    """
    bzimage = Path(f"/boot/vmlinuz-{kver}")
    stat = bzimage.stat()
    stamp = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    path = (cache or cache_dir()) / f"vmlinux-{kver}-{stamp}"
    if path.is_file() and path.stat().st_size > 0:
        return path
    elf = _extract_elf(bzimage.read_bytes())
    if elf is None:
        return None
    _atomic_write(path, elf)
    _prune(path.parent, rf"vmlinux-{re.escape(kver)}-[0-9a-f]{{12}}", path)
    return path


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def guest_python() -> str:
    """The project's Python for the guest: the virtualenv running these tests (the one
    ``scripts/run-tests`` makes), else ``.venv``, else the active or running interpreter.

    Not a pyenv shim (a shell script that costs ~4 s per start under TCG): the venv's
    ``python`` is a symlink to the real interpreter and still selects the venv's
    site-packages.
    """
    candidates = []
    if sys.prefix != sys.base_prefix:
        candidates.append(os.path.join(sys.prefix, "bin", "python"))
    candidates.append(str(REPO / ".venv" / "bin" / "python"))
    if os.environ.get("VIRTUAL_ENV"):
        candidates.append(os.path.join(os.environ["VIRTUAL_ENV"], "bin", "python"))
    candidates.append(sys.executable)
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and not _is_script(os.path.realpath(candidate)):
            return candidate
    raise VMBedError(f"no non-shim Python interpreter among {candidates}")


def check_host() -> list[str]:
    """What is missing on the host to boot the bed (empty when it can)."""
    problems = []
    for tool in ("qemu-system-x86_64", "sg_persist"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found")
    try:
        _busybox()
        host_kernel()
        _modprobe()
    except VMBedError as exc:
        problems.append(exc.message)
    for script in (INITRD_INIT, GUEST_INIT):
        if not os.access(script, os.X_OK):
            problems.append(f"{script} is not executable")
    return problems


def _guest_path(python: str) -> str:
    """PATH for the guest: the venv's bin, the real interpreter's dir, the system dirs."""
    dirs = [os.path.dirname(python), os.path.dirname(os.path.realpath(python)), *SYSTEM_PATH]
    seen: list[str] = []
    for entry in dirs:
        if entry and entry not in seen and "/shims" not in entry:
            seen.append(entry)
    return ":".join(seen)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _collect_files(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(root))] = path.read_bytes()
    return files


def _parse_timings(text: str) -> dict[str, float]:
    timings: dict[str, float] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2:
            with contextlib.suppress(ValueError):
                timings[words[0]] = float(words[1])
    return timings


def _parse_env(data: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in data.decode(errors="replace").split("\0"):
        name, sep, value = item.partition("=")
        if sep:
            env[name] = value
    return env


def _check_path(what: str, path: str) -> None:
    if not path.startswith("/") or any(c.isspace() for c in path) or "," in path:
        raise ValueError(f"{what} must be an absolute path without spaces or commas: {path!r}")


def run_in_vm(
    script: str,
    *,
    paths: int = 3,
    multipath: bool = False,
    mpath_key: str | None = None,
    pr_helper: bool = False,
    env: Mapping[str, str] | None = None,
    rw_dirs: Iterable[str | os.PathLike[str]] = (),
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300.0,
    disk_mb: int = 64,
    mem_mb: int = 1024,
    smp: int | None = None,
    kver: str | None = None,
    keep: bool | None = None,
    verbose: bool = False,
) -> VMResult:
    """Boot the bed once, run ``script`` (bash) in the guest and return its outcome.

    ``paths``: number of tcm_loop I_T nexuses to the one LUN (``$VMBED_DEV1..``).
    ``multipath``: dm-multipath over them (``$VMBED_MPATH``); ``mpath_key`` (implies
    multipath) writes ``reservation_key`` into multipath.conf (``0x...`` or ``file``).
    ``pr_helper``: start the real ``qemu-pr-helper`` (``$VMBED_PRH_SOCK``).
    ``env``: extra variables for the script.  ``rw_dirs``: host directories mounted read-write
    at the same path (the rest of the host is read-only with a throw-away overlay).
    ``cwd``: where the script starts (default: the caller's cwd).  ``timeout``: seconds until
    QEMU is killed.  ``disk_mb``: size of the LUN.  ``smp``: vCPUs (default ``$VMBED_SMP`` or
    1: on a busy 2-core host two TCG vCPUs boot about twice as slowly as one).  ``kver``: the
    kernel (default ``$VMBED_KVER`` or the newest).  ``keep`` (default ``$VMBED_KEEP=1``) keeps
    the run directory; ``verbose`` boots without ``quiet``.

    A script's non-zero exit status is returned, not raised.  Raises :class:`VMBedError` when
    the bed itself fails (then the logs are in the message), :class:`VMSetupError` when the
    guest set-up fails and :class:`VMTimeoutError` after ``timeout`` seconds.
    """
    if not 1 <= paths <= 64:
        raise ValueError(f"paths must be 1..64, not {paths}")
    if mpath_key is not None:
        if not re.fullmatch(r"0x[0-9a-fA-F]{1,16}|file", mpath_key):
            raise ValueError(f"mpath_key must be 0x<hex> or 'file', not {mpath_key!r}")
        multipath = True
    rw = [os.path.realpath(os.fspath(d)) for d in rw_dirs]
    for directory in rw:
        _check_path("rw_dirs entry", directory)
        if not os.path.isdir(directory):
            raise ValueError(f"rw_dirs entry is not a directory: {directory}")
    _check_path("tests/vm", str(HERE))
    if keep is None:
        keep = os.environ.get("VMBED_KEEP", "") == "1"
    work_dir = os.path.realpath(os.fspath(cwd) if cwd is not None else os.getcwd())

    cache = cache_dir()
    version = host_kernel(kver)
    initrd = ensure_initramfs(version, cache)
    kernel = ensure_vmlinux(version, cache) if os.environ.get("VMBED_BZIMAGE") != "1" else None
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMBedError("qemu-system-x86_64 not found: run scripts/vm-setup")
    python = guest_python()

    (cache / "runs").mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run.", dir=cache / "runs"))
    _check_path("run directory", str(run))
    try:
        results = run / "results"
        results.mkdir()
        guest_env = {
            "HOME": "/root",
            "PATH": _guest_path(python),
            "VIRTUAL_ENV": os.path.dirname(os.path.dirname(python)),
            "PYTHONDONTWRITEBYTECODE": "1",
            **{name: os.environ[name] for name in PASSED_ENV if name in os.environ},
            "VMBED_CWD": work_dir,
            "VMBED_REPO": str(REPO),
            "VMBED_PYTHON": python,
            "VMBED_LIB": str(GUEST_LIB),
            "VMBED_VMDIR": str(HERE),
            "VMBED_OUT": GUEST_OUT,
            "VMBED_RESULT_DIR": f"{GUEST_OUT}/results",
            "VMBED_RW": ":".join(rw),
            **(env or {}),
        }
        lines = []
        for name, value in guest_env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"bad environment variable name {name!r}")
            lines.append(f"export {name}={shlex.quote(value)}")
        lines += [
            f"NPATHS={paths} MULTIPATH={int(multipath)} PRHELPER={int(pr_helper)}",
            f"DISK_MB={int(disk_mb)} MPKEY={shlex.quote(mpath_key or '')}",
            "RW_DIRS=(" + " ".join(shlex.quote(d) for d in rw) + ")",
        ]
        (run / "params").write_text("\n".join(lines) + "\n")
        (run / "script.sh").write_text(script)

        fsdevs = [("hostroot", "/", True), ("vmbedout", str(run), False)]
        fsdevs += [(f"rw{i}", d, False) for i, d in enumerate(rw)]
        accel = os.environ.get("VMBED_ACCEL", "tcg")
        cpus = smp if smp is not None else int(os.environ.get("VMBED_SMP", "1"))
        cpu = os.environ.get("VMBED_CPU") or ("qemu64" if accel == "tcg" else "host")
        append = [
            "console=ttyS0",
            "panic=-1",
            "mitigations=off",
            f"vmbed.init={GUEST_INIT}",
            *([] if verbose else ["quiet", "loglevel=3"]),
        ]
        cmd = [
            qemu,
            *("-accel", accel, "-cpu", cpu, "-m", str(mem_mb), "-smp", str(cpus)),
            *("-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none"),
            "-no-reboot",
            *("-kernel", str(kernel or f"/boot/vmlinuz-{version}"), "-initrd", str(initrd)),
            *("-append", " ".join(append)),
            *("-chardev", f"file,id=con,path={run / 'console.log'}", "-serial", "chardev:con"),
        ]
        for tag, path, readonly in fsdevs:
            ro = ",readonly=on" if readonly else ""
            cmd += [
                *("-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap{ro}"),
                *("-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"),
            ]
        start = time.monotonic()
        with open(run / "qemu.log", "wb") as qemu_log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = time.monotonic() - start

        logs = {
            name: _read_text(run / name)
            for name in (
                "console.log",
                "setup.log",
                "qemu.log",
                "stdout",
                "stderr",
                "multipathd.log",
                "qemu-pr-helper.log",
            )
        }
        if timed_out:
            raise VMTimeoutError(f"VM test bed: no power-off after {timeout:g}s", logs=logs)
        if (run / "setup_failed").exists():
            reason = _read_text(run / "setup_failed").strip()
            raise VMSetupError(f"VM test bed: guest set-up failed: {reason}", logs=logs)
        rc_text = _read_text(run / "rc").strip()
        if not rc_text.isdigit():
            raise VMBedError(
                f"VM test bed: the guest left no exit status (qemu exit {proc.returncode})",
                logs=logs,
            )
        return VMResult(
            exit_status=int(rc_text),
            stdout=logs["stdout"],
            stderr=logs["stderr"],
            console_log=logs["console.log"],
            setup_log=logs["setup.log"],
            env=_parse_env((run / "env").read_bytes() if (run / "env").exists() else b""),
            files=_collect_files(results),
            timings=_parse_timings(_read_text(run / "timings")),
            wall_time=wall,
            logs=logs,
            run_dir=run if keep else None,
        )
    finally:
        if keep:
            print(f"vmbed: kept {run}", file=sys.stderr)
        else:
            shutil.rmtree(run, ignore_errors=True)


# --------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/vm/vmbed.py [-n N] [-m] [-k KEY] [-P] [--rw DIR] -- 'bash script'``."""
    parser = argparse.ArgumentParser(
        prog="vmbed", description="Run a bash script in qompr's VM test bed (LIO SCSI targets)."
    )
    parser.add_argument("-n", "--paths", type=int, default=3, help="tcm_loop paths (default 3)")
    parser.add_argument("-m", "--multipath", action="store_true", help="dm-multipath")
    parser.add_argument("-k", "--mpath-key", help="multipath.conf reservation_key (implies -m)")
    parser.add_argument("-P", "--pr-helper", action="store_true", help="start qemu-pr-helper")
    parser.add_argument("--rw", action="append", default=[], help="host dir mounted read-write")
    parser.add_argument("-t", "--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print logs and timings")
    parser.add_argument("script", nargs="+", help="bash script (words are joined)")
    args = parser.parse_args(argv)
    try:
        result = run_in_vm(
            " ".join(args.script),
            paths=args.paths,
            multipath=args.multipath,
            mpath_key=args.mpath_key,
            pr_helper=args.pr_helper,
            rw_dirs=args.rw,
            timeout=args.timeout,
            keep=args.keep or None,
            verbose=args.verbose,
        )
    except VMTimeoutError as exc:
        print(f"vmbed: {exc}", file=sys.stderr)
        return TIMEOUT_STATUS
    except VMBedError as exc:
        print(f"vmbed: {exc}", file=sys.stderr)
        return SETUP_FAILURE_STATUS
    except ValueError as exc:
        parser.error(str(exc))
    if args.verbose:
        sys.stderr.write(result.console_log)
        sys.stderr.write("".join(f"[setup] {line}\n" for line in result.setup_log.splitlines()))
        print(f"vmbed: wall {result.wall_time:.2f}s, guest {result.timings}", file=sys.stderr)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
