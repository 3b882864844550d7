# SPDX-License-Identifier: MIT
"""The placeholder environment the real-QEMU corpus was recorded in, for recording and replay.

:func:`environment` makes a fixed-length temporary directory holding every placeholder's
target (``@SOCK@`` and the other fake qemu-pr-helper sockets, a dead socket, a file, a
directory, socket aliases with awkward names); :func:`expand` and :func:`unexpand` swap the
placeholders in a case for the real paths and back.  ``tests/corpus/README.md`` describes the
placeholders; the corpus recorders, the replays and the interop tests share this module.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

__all__ = [
    "PLACEHOLDERS",
    "SOCK_ALIASES",
    "TMP_PLACEHOLDER",
    "FakeHelper",
    "JsonObject",
    "JsonValue",
    "environment",
    "expand",
    "substitutions",
    "unexpand",
    "unexpand_json",
]

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]

#: placeholder -> (file name inside @TMP@, description)
PLACEHOLDERS: dict[str, tuple[str, str]] = {
    "@SOCK@": ("s1.sock", "fake qemu-pr-helper: sends 4 zero bytes, reads 4 bytes, stays open"),
    "@SOCK2@": ("s2.sock", "second fake qemu-pr-helper, same behaviour as @SOCK@"),
    "@SOCK3@": ("s3.sock", "third fake qemu-pr-helper, same behaviour as @SOCK@"),
    "@FEAT@": (
        "feat.sock",
        "fake helper that announces features 0xffffffff, reads 4 bytes, stays open",
    ),
    "@LONGHS@": (
        "longhs.sock",
        "fake helper that sends 8 bytes 'garbage!' instead of 4, reads 4 bytes, stays open",
    ),
    "@NOHS@": ("nohs.sock", "listening socket whose server closes at once, no handshake"),
    "@SHORTHS@": (
        "shorths.sock",
        "listening socket whose server sends 2 zero bytes of handshake, then closes",
    ),
    "@DEAD@": ("dead.sock", "a bound unix socket that is not listening (connect refused)"),
    "@NOTSOCK@": ("regular-file", "a regular (empty) file"),
    "@DIR@": ("a-directory", "a directory"),
}
TMP_PLACEHOLDER = "@TMP@"

#: Extra names created inside @TMP@ as symlinks to @SOCK@'s socket, so that
#: cases can connect through paths containing awkward characters.
SOCK_ALIASES: tuple[str, ...] = (
    "a,b.sock",
    "a,,b.sock",
    "a b.sock",
    "\u00e9t\u00e9.sock",
    "link.sock",
    "a=b.sock",
    "x\\y.sock",
    "'q'.sock",
    '"dq".sock',
)


class FakeHelper:
    """A listening unix socket answering connections in a background thread."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.mode == "close":
                    return
                if self.mode == "short":
                    conn.sendall(b"\0\0")
                    return
                features = {"features": b"\xff\xff\xff\xff", "long": b"garbage!"}.get(
                    self.mode, b"\0\0\0\0"
                )
                conn.sendall(features)
                got = b""
                while len(got) < 4:
                    chunk = conn.recv(4 - len(got))
                    if not chunk:
                        return
                    got += chunk
                # Keep the connection open until QEMU goes away.
                while conn.recv(4096):
                    pass
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)


@contextlib.contextmanager
def environment() -> Iterator[Path]:
    """Create the temporary directory with every placeholder target in it."""
    # mkdtemp names have a fixed length, so paths have the same length every run.
    tmp = Path(tempfile.mkdtemp(prefix="qompr-corpus-", dir="/tmp"))
    helpers: list[FakeHelper] = []
    dead: socket.socket | None = None
    try:
        modes = {
            "@SOCK@": "ok",
            "@SOCK2@": "ok",
            "@SOCK3@": "ok",
            "@FEAT@": "features",
            "@LONGHS@": "long",
            "@NOHS@": "close",
            "@SHORTHS@": "short",
        }
        for placeholder, mode in modes.items():
            helpers.append(FakeHelper(tmp / PLACEHOLDERS[placeholder][0], mode))
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(tmp / PLACEHOLDERS["@DEAD@"][0]))
        (tmp / PLACEHOLDERS["@NOTSOCK@"][0]).write_bytes(b"")
        (tmp / PLACEHOLDERS["@DIR@"][0]).mkdir()
        for alias in SOCK_ALIASES:
            (tmp / alias).symlink_to(PLACEHOLDERS["@SOCK@"][0])
        yield tmp
    finally:
        for helper in helpers:
            helper.close()
        if dead is not None:
            dead.close()
        shutil.rmtree(tmp, ignore_errors=True)


def substitutions(tmp: Path) -> list[tuple[str, str]]:
    """(placeholder, real text) pairs, most specific first."""
    subs = [(ph, str(tmp / name)) for ph, (name, _) in PLACEHOLDERS.items()]
    # Longest real text first so that @SOCK@ does not eat part of @SOCK2@ etc.
    subs.sort(key=lambda pair: len(pair[1]), reverse=True)
    subs.append((TMP_PLACEHOLDER, str(tmp)))
    return subs


def expand(text: str, subs: Sequence[tuple[str, str]]) -> str:
    for placeholder, real in subs:
        text = text.replace(placeholder, real)
    return text


def unexpand(text: str, subs: Sequence[tuple[str, str]]) -> str:
    for placeholder, real in subs:
        text = text.replace(real, placeholder)
    return text


def unexpand_json(value: JsonValue, subs: Sequence[tuple[str, str]]) -> JsonValue:
    if isinstance(value, str):
        return unexpand(value, subs)
    if isinstance(value, list):
        return [unexpand_json(item, subs) for item in value]
    if isinstance(value, dict):
        return {unexpand(k, subs): unexpand_json(v, subs) for k, v in value.items()}
    return value
