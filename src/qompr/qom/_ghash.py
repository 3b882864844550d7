# SPDX-License-Identifier: MIT
"""Which leftover key QEMU names first: a model of GLib's and QEMU's hash-table order.

When an ``-object`` has several unknown keys, QEMU reports only one of them: the first that
its visitor's GLib ``GHashTable`` of not-yet-visited keys yields while iterating.  That is
neither argument order nor alphabetical, so to print the same message qompr reproduces the
table: GLib 2.74's open addressing (``g_str_hash``, bucket ``(hash * 11) % prime``, quadratic
probing, tombstones, resizing) and, for JSON and keyval input, the order in which QEMU's
``QDict`` (512 chained buckets, ``tdb_hash``) hands the keys to that table.

Only the *order* is modelled; values are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator

from qompr.qom._convert import argument_bytes

__all__ = ["GHashSet", "first_leftover", "qdict_order"]

_M32 = 0xFFFFFFFF
_PRIME_MOD = (1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749,
              65521, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213,
              33554393, 67108859, 134217689, 268435399, 536870909, 1073741789,
              2147483647)  # fmt: skip
_MIN_SHIFT = 3
_UNUSED, _TOMBSTONE = 0, 1


def g_str_hash(key: str) -> int:
    """GLib's ``g_str_hash`` (djb2 over *signed* chars of the UTF-8 bytes)."""
    h = 5381
    for b in argument_bytes(key):
        signed = b - 256 if b >= 128 else b
        h = (h * 33 + signed) & _M32
    return h


class GHashSet:
    """A GHashTable used as a set of strings, down to its slot layout."""

    def __init__(self) -> None:
        self._set_shift(_MIN_SHIFT)
        self.hashes = [_UNUSED] * self.size
        self.keys: list[str | None] = [None] * self.size
        self.nnodes = 0
        self.noccupied = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = _PRIME_MOD[shift]
        self.mask = self.size - 1

    def _index(self, h: int) -> int:
        return ((h * 11) & _M32) % self.mod

    def _lookup(self, key: str) -> tuple[int, int]:
        h = g_str_hash(key)
        if h in (_UNUSED, _TOMBSTONE):
            h = 2
        idx = self._index(h)
        step = 0
        tombstone = -1
        while self.hashes[idx] != _UNUSED:
            if self.hashes[idx] == h and self.keys[idx] == key:
                return idx, h
            if self.hashes[idx] == _TOMBSTONE and tombstone < 0:
                tombstone = idx
            step += 1
            idx = (idx + step) & self.mask
        return (tombstone if tombstone >= 0 else idx), h

    def add(self, key: str) -> None:
        idx, h = self._lookup(key)
        if self.hashes[idx] > _TOMBSTONE:
            return  # already there (g_hash_table_insert keeps the slot)
        old = self.hashes[idx]
        self.hashes[idx] = h
        self.keys[idx] = key
        self.nnodes += 1
        if old == _UNUSED:
            self.noccupied += 1
            self._maybe_resize()

    def discard(self, key: str) -> None:
        idx, _ = self._lookup(key)
        if self.hashes[idx] <= _TOMBSTONE:
            return
        self.hashes[idx] = _TOMBSTONE
        self.keys[idx] = None
        self.nnodes -= 1
        self._maybe_resize()

    def _maybe_resize(self) -> None:
        size, occ = self.size, self.noccupied
        if (size > self.nnodes * 4 and size > 1 << _MIN_SHIFT) or size <= occ + occ // 16:
            self._resize()

    def _resize(self) -> None:
        old_size = self.size
        target = int(self.nnodes * 1.333)
        shift = 0
        while target:
            target >>= 1
            shift += 1
        self._set_shift(max(shift, _MIN_SHIFT))
        if self.size > old_size:
            self.hashes += [_UNUSED] * (self.size - old_size)
            self.keys += [None] * (self.size - old_size)
        placed = [False] * max(self.size, old_size)
        # GLib's in-place rehash (resize_map): walk the old slots, evicting as it goes.
        for i in range(old_size):
            node_hash = self.hashes[i]
            if node_hash <= _TOMBSTONE:
                self.hashes[i] = _UNUSED
                continue
            if placed[i]:
                continue
            self.hashes[i] = _UNUSED
            key = self.keys[i]
            self.keys[i] = None
            while True:
                idx = self._index(node_hash)
                step = 0
                while placed[idx]:
                    step += 1
                    idx = (idx + step) & self.mask
                placed[idx] = True
                replaced_hash, replaced_key = self.hashes[idx], self.keys[idx]
                self.hashes[idx], self.keys[idx] = node_hash, key
                if replaced_hash <= _TOMBSTONE:
                    break
                node_hash, key = replaced_hash, replaced_key
        if self.size < old_size:
            del self.hashes[self.size :]
            del self.keys[self.size :]
        self.noccupied = self.nnodes

    def __iter__(self) -> Iterator[str]:
        for h, key in zip(self.hashes, self.keys, strict=True):
            if h > _TOMBSTONE and key is not None:
                yield key


def tdb_hash(key: str) -> int:
    """QEMU's ``tdb_hash`` (qobject/qdict.c), which places keys in a QDict's buckets."""
    data = argument_bytes(key)
    value = (0x238F13AF * len(data)) & _M32
    for i, b in enumerate(data):
        value = (value + (b << (i * 5 % 24))) & _M32
    return (1103515243 * value + 12345) & _M32


def qdict_order(keys: Iterable[str]) -> list[str]:
    """The order ``qdict_first``/``qdict_next`` yield *keys* inserted in the given order:
    bucket by bucket, the newest first within a bucket."""
    buckets: dict[int, list[str]] = {}
    for key in keys:
        bucket = buckets.setdefault(tdb_hash(key) % 512, [])
        if key not in bucket:
            bucket.insert(0, key)
    return [key for b in sorted(buckets) for key in buckets[b]]


def first_leftover(inserted: Iterable[str], visited: Iterable[str]) -> str | None:
    """The key QEMU's ``check_struct`` names: insert *inserted* into a GHashTable, remove the
    *visited* ones in order, and iterate."""
    table = GHashSet()
    for key in inserted:
        table.add(key)
    for key in visited:
        table.discard(key)
    return next(iter(table), None)
