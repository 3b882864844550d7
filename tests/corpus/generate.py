# SPDX-License-Identifier: MIT
"""Record how the real QEMU 7.2 parses and creates ``-object`` options.

For every case in :data:`CASES` this script runs::

    qemu-system-x86_64 -machine none -nodefaults -display none -S \\
        -qmp unix:QMPSOCK,server=on,wait=off -object ARG1 [-object ARG2 ...]

with stdin on ``/dev/null``, ``LC_ALL=C`` and a timeout, and records the exit
status, stdout and stderr.  When QEMU stays up (every object was created), it
talks QMP to it, records ``qom-list``/``qom-get`` of every object under
``/objects`` and sends ``quit``.

Placeholders (``@SOCK@`` ...) in the case strings are replaced by real paths
in a fixed-length temporary directory before running QEMU, and the real paths
are replaced back by the placeholders in everything recorded.  See README.md.

The placeholder environment, the QMP client and the runner live in ``tests/_support``
(the replays and interop tests use them too).  Usage, from the checkout's root::

    python -m tests.corpus.generate --out tests/corpus/qemu-7.2-object.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tests._support.placeholders import PLACEHOLDERS
from tests._support.placeholders import SOCK_ALIASES
from tests._support.placeholders import TMP_PLACEHOLDER
from tests._support.placeholders import JsonObject
from tests._support.placeholders import JsonValue
from tests._support.placeholders import environment
from tests._support.qemu_run import BASE_COMMAND
from tests._support.qemu_run import DEFAULT_TIMEOUT
from tests._support.qemu_run import QEMU
from tests._support.qemu_run import Case
from tests._support.qemu_run import qemu_version
from tests._support.qemu_run import run_case

FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# The cases.
# ---------------------------------------------------------------------------


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(group: str, name: str, *args: str, note: str = "") -> None:
        cases.append(Case(group, name, tuple(args), note))

    ok = "pr-manager-helper,id=a,path=@SOCK@"
    jok = '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@"}'

    # --- key=value: the object type -------------------------------------
    g = "kv-type"
    add(g, "implied-type", ok, note="the reference successful case")
    add(g, "explicit-qom-type", "qom-type=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "explicit-qom-type-last", "id=a,path=@SOCK@,qom-type=pr-manager-helper")
    add(g, "explicit-qom-type-middle", "id=a,qom-type=pr-manager-helper,path=@SOCK@")
    add(g, "missing-qom-type", "id=a,path=@SOCK@")
    add(g, "missing-qom-type-path-only", "path=@SOCK@")
    add(
        g,
        "type-not-first",
        "id=a,pr-manager-helper,path=@SOCK@",
        note="the implied key only applies to the first item",
    )
    add(g, "unknown-type", "no-such-type,id=a,path=@SOCK@")
    add(g, "unknown-type-no-id", "no-such-type")
    add(g, "unknown-type-explicit", "qom-type=no-such-type,id=a")
    add(g, "abstract-pr-manager", "pr-manager,id=a,path=@SOCK@")
    add(g, "abstract-pr-manager-no-id", "pr-manager")
    add(g, "type-object", "object,id=a")
    add(g, "type-container", "container,id=a")
    add(g, "type-user-creatable-interface", "user-creatable,id=a")
    add(g, "type-device", "isa-serial,id=a", note="a device type is not user-creatable")
    add(g, "type-memory-region", "memory-region,id=a")
    add(g, "type-uppercase", "PR-MANAGER-HELPER,id=a,path=@SOCK@")
    add(g, "type-underscore", "pr_manager_helper,id=a,path=@SOCK@")
    add(g, "type-escaped-comma", "pr-manager,,helper,id=a,path=@SOCK@")
    add(g, "type-leading-space", " pr-manager-helper,id=a,path=@SOCK@")
    add(g, "type-trailing-space", "pr-manager-helper ,id=a,path=@SOCK@")
    add(g, "type-empty-explicit", "qom-type=,id=a,path=@SOCK@")
    add(
        g,
        "type-implied-and-explicit-same",
        "pr-manager-helper,qom-type=pr-manager-helper,id=a,path=@SOCK@",
    )
    add(
        g,
        "type-implied-and-explicit-differ",
        "pr-manager-helper,qom-type=pr-manager,id=a,path=@SOCK@",
    )
    add(g, "type-explicit-twice", "qom-type=pr-manager,qom-type=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "type-with-dot", "pr-manager.helper,id=a")
    add(g, "type-nonascii", "pr-manager-h\u00e9lper,id=a")
    add(g, "qom-type-underscore-key", "qom_type=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "qom-type-uppercase-key", "QOM-TYPE=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "type-key", "type=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "qom-type-short-bool", "id=a,qom-type,path=@SOCK@")
    add(g, "qom-type-explicit-help-value", "pr-manager-helper,qom-type=help,id=a")
    add(g, "bad-id-and-unknown-type", "no-such-type,id=1a")
    add(g, "bad-id-and-missing-type", "id=1a")
    add(
        g,
        "enum-type-memory-backend-epc",
        "memory-backend-epc,id=a",
        note="in the QAPI ObjectType enum, not listed by '-object help'",
    )
    add(
        g,
        "enum-type-not-compiled-pef",
        "pef-guest,id=a",
        note="in the QAPI ObjectType enum, but no such QOM type in this binary",
    )
    add(g, "enum-type-not-compiled-s390", "s390-pv-guest,id=a")

    # --- key=value: the id ------------------------------------------------
    g = "kv-id"
    add(g, "missing-id", "pr-manager-helper,path=@SOCK@")
    add(g, "missing-id-and-path", "pr-manager-helper")
    add(g, "id-first", "id=a,qom-type=pr-manager-helper,path=@SOCK@")
    add(g, "id-path-order", "pr-manager-helper,path=@SOCK@,id=a")
    add(g, "id-empty", "pr-manager-helper,id=,path=@SOCK@")
    add(g, "id-leading-digit", "pr-manager-helper,id=1a,path=@SOCK@")
    add(g, "id-all-digits", "pr-manager-helper,id=123,path=@SOCK@")
    add(g, "id-leading-underscore", "pr-manager-helper,id=_a,path=@SOCK@")
    add(g, "id-leading-dash", "pr-manager-helper,id=-a,path=@SOCK@")
    add(g, "id-leading-dot", "pr-manager-helper,id=.a,path=@SOCK@")
    add(g, "id-uppercase", "pr-manager-helper,id=ABC,path=@SOCK@")
    add(g, "id-allowed-punct", "pr-manager-helper,id=a-b_c.d9,path=@SOCK@")
    add(g, "id-space", "pr-manager-helper,id=a b,path=@SOCK@")
    add(g, "id-trailing-space", "pr-manager-helper,id=a ,path=@SOCK@")
    add(g, "id-slash", "pr-manager-helper,id=a/b,path=@SOCK@")
    add(g, "id-colon", "pr-manager-helper,id=a:b,path=@SOCK@")
    add(g, "id-hash", "pr-manager-helper,id=a#b,path=@SOCK@")
    add(g, "id-plus", "pr-manager-helper,id=a+b,path=@SOCK@")
    add(g, "id-equals", "pr-manager-helper,id=a=b,path=@SOCK@")
    add(g, "id-escaped-comma", "pr-manager-helper,id=a,,b,path=@SOCK@")
    add(g, "id-unicode", "pr-manager-helper,id=\u00e9,path=@SOCK@")
    add(g, "id-unicode-after-letter", "pr-manager-helper,id=a\u00e9,path=@SOCK@")
    add(g, "id-long-128", f"pr-manager-helper,id={'a' * 128},path=@SOCK@")
    add(g, "id-long-300", f"pr-manager-helper,id={'b' * 300},path=@SOCK@")
    add(g, "id-twice", "pr-manager-helper,id=a,id=b,path=@SOCK@")
    add(g, "id-twice-apart", "pr-manager-helper,id=a,path=@SOCK@,id=b")
    add(g, "id-twice-same", "pr-manager-helper,id=a,id=a,path=@SOCK@")
    add(g, "id-twice-first-bad", "pr-manager-helper,id=1,id=b,path=@SOCK@")
    add(g, "id-twice-last-bad", "pr-manager-helper,id=a,id=1,path=@SOCK@")
    add(g, "id-uppercase-key", "pr-manager-helper,ID=a,path=@SOCK@")
    add(g, "id-short-bool", "pr-manager-helper,id,path=@SOCK@")
    add(g, "id-no-prefix", "pr-manager-helper,noid,path=@SOCK@")
    add(g, "id-key-leading-space", "pr-manager-helper, id=a,path=@SOCK@")
    add(g, "id-key-trailing-space", "pr-manager-helper,id =a,path=@SOCK@")

    # --- key=value: the path ----------------------------------------------
    g = "kv-path"
    add(g, "missing-path", "pr-manager-helper,id=a")
    add(g, "empty-path", "pr-manager-helper,id=a,path=")
    add(g, "nonexistent", "pr-manager-helper,id=a,path=/nonexistent")
    add(g, "nonexistent-relative", "pr-manager-helper,id=a,path=nonexistent.sock")
    add(g, "nonexistent-dir", "pr-manager-helper,id=a,path=/nonexistent/dir/x.sock")
    add(
        g,
        "length-107",
        "pr-manager-helper,id=a,path=/" + "x" * 106,
        note="107 bytes + NUL fills sun_path exactly",
    )
    add(
        g,
        "length-108",
        "pr-manager-helper,id=a,path=/" + "x" * 107,
        note="one byte too long for sun_path",
    )
    add(g, "length-109", "pr-manager-helper,id=a,path=/" + "x" * 108)
    add(g, "length-300", "pr-manager-helper,id=a,path=/" + "y" * 299)
    add(g, "not-a-socket", "pr-manager-helper,id=a,path=@NOTSOCK@")
    add(g, "directory", "pr-manager-helper,id=a,path=@DIR@")
    add(g, "stale-socket", "pr-manager-helper,id=a,path=@DEAD@")
    add(g, "server-closes-no-handshake", "pr-manager-helper,id=a,path=@NOHS@")
    add(g, "server-short-handshake", "pr-manager-helper,id=a,path=@SHORTHS@")
    add(g, "server-all-feature-bits", "pr-manager-helper,id=a,path=@FEAT@")
    add(g, "server-long-handshake", "pr-manager-helper,id=a,path=@LONGHS@")
    add(
        g,
        "invalid-utf8",
        "pr-manager-helper,id=a,path=/non\udcffexistent",
        note="U+DCFF stands for the raw byte 0xff (surrogateescape)",
    )
    add(
        g,
        "relative-ok",
        "pr-manager-helper,id=a,path=s1.sock",
        note="QEMU runs with its cwd in @TMP@",
    )
    add(g, "relative-dot-ok", "pr-manager-helper,id=a,path=./s1.sock")
    add(g, "dotdot-ok", "pr-manager-helper,id=a,path=@DIR@/../s1.sock")
    add(g, "double-slash-ok", "pr-manager-helper,id=a,path=@TMP@//s1.sock")
    add(g, "symlink-ok", "pr-manager-helper,id=a,path=@TMP@/link.sock")
    add(
        g,
        "escaped-comma-ok",
        "pr-manager-helper,id=a,path=@TMP@/a,,b.sock",
        note="connects to the file named 'a,b.sock'",
    )
    add(
        g,
        "double-escaped-comma-ok",
        "pr-manager-helper,id=a,path=@TMP@/a,,,,b.sock",
        note="connects to the file named 'a,,b.sock'",
    )
    add(g, "escaped-comma-nonexistent", "pr-manager-helper,id=a,path=/no,,where")
    add(g, "unescaped-comma", "pr-manager-helper,id=a,path=/no,where")
    add(g, "unescaped-comma-key", "pr-manager-helper,id=a,path=/no,where=1")
    add(g, "space-ok", "pr-manager-helper,id=a,path=@TMP@/a b.sock")
    add(g, "unicode-ok", "pr-manager-helper,id=a,path=@TMP@/\u00e9t\u00e9.sock")
    add(g, "equals-ok", "pr-manager-helper,id=a,path=@TMP@/a=b.sock")
    add(g, "backslash-ok", "pr-manager-helper,id=a,path=@TMP@/x\\y.sock")
    add(g, "single-quote-ok", "pr-manager-helper,id=a,path=@TMP@/'q'.sock")
    add(g, "double-quote-ok", 'pr-manager-helper,id=a,path=@TMP@/"dq".sock')
    add(g, "leading-space", "pr-manager-helper,id=a,path= @SOCK@")
    add(g, "trailing-space", "pr-manager-helper,id=a,path=@SOCK@ ")
    add(g, "twice-last-ok", "pr-manager-helper,id=a,path=/nonexistent,path=@SOCK@")
    add(g, "twice-first-ok", "pr-manager-helper,id=a,path=@SOCK@,path=/nonexistent")
    add(g, "twice-different-sockets", "pr-manager-helper,id=a,path=@SOCK@,path=@SOCK2@")
    add(g, "short-bool", "pr-manager-helper,id=a,path")
    add(g, "short-bool-no", "pr-manager-helper,id=a,nopath")
    add(g, "value-on", "pr-manager-helper,id=a,path=on")
    add(g, "uppercase-key", "pr-manager-helper,id=a,Path=@SOCK@")
    add(g, "dotted-key", "pr-manager-helper,id=a,path.x=1")
    add(g, "dotted-key-after-path", "pr-manager-helper,id=a,path=@SOCK@,path.x=1")
    add(g, "dotted-key-before-path", "pr-manager-helper,id=a,path.x=1,path=@SOCK@")
    add(g, "numeric-subkey", "pr-manager-helper,id=a,path.0=@SOCK@")

    # --- key=value: general syntax ----------------------------------------
    g = "kv-syntax"
    add(g, "empty-string", "")
    add(g, "single-space", " ")
    add(g, "equals-alone", "=")
    add(g, "equals-x", "=x")
    add(g, "comma-alone", ",")
    add(g, "two-commas", ",,")
    add(g, "three-commas", ",,,")
    add(g, "leading-comma", ",pr-manager-helper,id=a,path=@SOCK@")
    add(g, "trailing-comma", ok + ",")
    add(g, "trailing-double-comma", ok + ",,", note="escaped comma ends up in the path")
    add(g, "trailing-triple-comma", ok + ",,,")
    add(g, "type-double-comma-id", "pr-manager-helper,,id=x")
    add(g, "id-double-comma-end", "pr-manager-helper,id=a,,")
    add(g, "empty-item-middle", "pr-manager-helper,id=a,,,path=@SOCK@")
    add(g, "empty-items-after-type", "pr-manager-helper,,,id=a,path=@SOCK@")
    add(g, "id-then-empty", "pr-manager-helper,id=a,,path=@SOCK@")
    add(g, "unknown-key", "pr-manager-helper,id=a,path=@SOCK@,foo=bar")
    add(g, "unknown-key-before", "pr-manager-helper,foo=bar,id=a,path=@SOCK@")
    add(g, "unknown-key-missing-path", "pr-manager-helper,id=a,foo=bar")
    add(
        g,
        "two-unknown-keys",
        "pr-manager-helper,id=a,path=@SOCK@,foo=1,bar=2",
        note="which unknown key is reported depends on QDict iteration order",
    )
    add(g, "two-unknown-keys-rev", "pr-manager-helper,id=a,path=@SOCK@,bar=2,foo=1")
    add(g, "three-unknown-keys", "pr-manager-helper,id=a,path=@SOCK@,x=1,y=2,z=3")
    add(g, "three-unknown-keys-rev", "pr-manager-helper,id=a,path=@SOCK@,z=3,y=2,x=1")
    add(g, "unknown-keys-abc", "pr-manager-helper,id=a,path=@SOCK@,a=1,b=2,c=3,d=4")
    add(g, "unknown-keys-long", "pr-manager-helper,id=a,path=@SOCK@,alpha=1,beta=2,gamma=3")
    add(g, "unknown-key-bad-id", "pr-manager-helper,id=1a,path=@SOCK@,foo=bar")
    add(g, "short-bool-unknown", "pr-manager-helper,id=a,path=@SOCK@,foo")
    add(g, "short-bool-no-unknown", "pr-manager-helper,id=a,path=@SOCK@,nofoo")
    add(g, "short-bool-twice", "pr-manager-helper,id=a,path=@SOCK@,foo,bar")
    add(g, "key-dotted", "pr-manager-helper,id=a,path=@SOCK@,a.b=1")
    add(g, "key-dotted-deep", "pr-manager-helper,id=a,path=@SOCK@,a.b.c=1")
    add(g, "key-leading-dot", "pr-manager-helper,id=a,path=@SOCK@,.a=1")
    add(g, "key-trailing-dot", "pr-manager-helper,id=a,path=@SOCK@,a.=1")
    add(g, "key-double-dot", "pr-manager-helper,id=a,path=@SOCK@,a..b=1")
    add(g, "key-dotted-conflict", "pr-manager-helper,id=a,path=@SOCK@,a=1,a.b=2")
    add(g, "key-dotted-conflict-rev", "pr-manager-helper,id=a,path=@SOCK@,a.b=2,a=1")
    add(g, "key-numeric", "pr-manager-helper,id=a,path=@SOCK@,1=2")
    add(g, "key-numeric-dotted", "pr-manager-helper,id=a,path=@SOCK@,a.0=x,a.1=y")
    add(g, "key-underscore", "pr-manager-helper,id=a,path=@SOCK@,fo_o=1")
    add(g, "key-dash", "pr-manager-helper,id=a,path=@SOCK@,fo-o=1")
    add(g, "key-space-inside", "pr-manager-helper,id=a,path=@SOCK@,pa th=1")
    add(g, "key-nonascii", "pr-manager-helper,id=a,path=@SOCK@,\u00e9=1")
    add(g, "key-escaped-comma", "pr-manager-helper,id=a,path=@SOCK@,f,,o=1")
    add(g, "key-127", f"pr-manager-helper,id=a,path=@SOCK@,{'k' * 127}=1")
    add(g, "key-128", f"pr-manager-helper,id=a,path=@SOCK@,{'k' * 128}=1")
    add(g, "key-200", f"pr-manager-helper,id=a,path=@SOCK@,{'k' * 200}=1")
    add(g, "key-dotted-fragment-128", f"pr-manager-helper,id=a,path=@SOCK@,a.{'k' * 128}=1")
    add(g, "key-127-missing-path", f"pr-manager-helper,id=a,{'k' * 127}=1")
    add(g, "value-with-equals", "pr-manager-helper,id=a,path=@SOCK@,foo=a=b")
    add(g, "empty-key-middle", "pr-manager-helper,id=a,=x,path=@SOCK@")
    add(g, "empty-key-empty-value", "pr-manager-helper,id=a,=,path=@SOCK@")
    add(g, "only-implied-with-equals", "pr-manager-helper=1,id=a")
    add(g, "newline-in-value", "pr-manager-helper,id=a,path=/non\nexistent")
    add(g, "tab-in-id", "pr-manager-helper,id=a\tb,path=@SOCK@")
    add(g, "starts-with-bracket", '["pr-manager-helper"]')
    add(g, "starts-with-quote", '"pr-manager-helper",id=a')

    # --- key=value: help ----------------------------------------------------
    g = "kv-help"
    add(g, "help", "help", note="lists the user-creatable types")
    add(g, "question-mark", "?")
    add(g, "type-help", "pr-manager-helper,help")
    add(g, "type-question-mark", "pr-manager-helper,?")
    add(g, "type-help-id", "pr-manager-helper,help,id=a")
    add(g, "type-id-help", "pr-manager-helper,id=a,help")
    add(g, "type-id-path-help", "pr-manager-helper,id=a,path=@SOCK@,help")
    add(g, "type-id-path-question", "pr-manager-helper,id=a,path=@SOCK@,?")
    add(g, "type-help-help", "pr-manager-helper,help,help")
    add(g, "type-help-bad-key", "pr-manager-helper,help,a..b=1")
    add(g, "type-bad-key-help", "pr-manager-helper,a..b=1,help")
    add(g, "type-help-bad-id", "pr-manager-helper,id=1,help")
    add(g, "help-then-type", "help,pr-manager-helper")
    add(g, "help-then-id", "help,id=a")
    add(g, "question-then-id", "?,id=a")
    add(g, "help-equals-1", "help=1")
    add(g, "type-help-equals-1", "pr-manager-helper,help=1")
    add(g, "type-help-equals-on", "pr-manager-helper,id=a,path=@SOCK@,help=on")
    add(g, "type-help-equals-off", "pr-manager-helper,id=a,path=@SOCK@,help=off")
    add(g, "type-nohelp", "pr-manager-helper,id=a,path=@SOCK@,nohelp")
    add(g, "type-help-uppercase", "pr-manager-helper,HELP")
    add(g, "uppercase-help", "HELP")
    add(g, "qom-type-help", "qom-type=help")
    add(g, "qom-type-question", "qom-type=?")
    add(g, "qom-type-help-id", "qom-type=help,id=a")
    add(g, "qom-type-explicit-help", "qom-type=pr-manager-helper,help")
    add(g, "no-type-help", "id=a,help")
    add(g, "no-type-question", "id=a,?")
    add(g, "unknown-type-help", "no-such-type,help")
    add(g, "unknown-type-question", "no-such-type,?")
    add(g, "abstract-help", "pr-manager,help")
    add(g, "object-help", "object,help")
    add(g, "container-help", "container,help")
    add(g, "device-help", "isa-serial,help")
    add(g, "other-type-help", "secret,help", note="help of another user-creatable type")
    add(g, "help-with-spaces", " help")
    add(g, "help-trailing-comma", "help,")
    add(g, "type-help-trailing-comma", "pr-manager-helper,help,")
    add(g, "help-escaped-comma", "help,,x")
    add(g, "leading-comma-help", ",help")
    add(g, "type-help-empty-value", "pr-manager-helper,id=a,path=@SOCK@,help=")
    add(g, "type-question-equals-1", "pr-manager-helper,?=1")
    add(g, "other-type-iothread-help", "iothread,help")

    # --- JSON -----------------------------------------------------------------
    g = "json"
    add(g, "ok", jok)
    add(g, "ok-key-order", '{"path":"@SOCK@","id":"a","qom-type":"pr-manager-helper"}')
    add(g, "ok-whitespace", '{ "qom-type" : "pr-manager-helper" ,\n "id" : "a",\t"path":"@SOCK@" }')
    add(g, "ok-comma-in-path", '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@/a,b.sock"}')
    add(
        g,
        "ok-double-comma-in-path",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@/a,,b.sock"}',
        note="no ',,' unescaping in JSON",
    )
    add(
        g,
        "ok-unicode-path",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@/\u00e9t\u00e9.sock"}',
    )
    add(
        g,
        "ok-unicode-escape-path",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@/\\u00e9t\\u00e9.sock"}',
    )
    add(g, "ok-slash-escape", '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@\\/s1.sock"}')
    add(
        g,
        "ok-backslash-path",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@TMP@/x\\\\y.sock"}',
    )
    add(g, "ok-relative", '{"qom-type":"pr-manager-helper","id":"a","path":"s1.sock"}')
    add(g, "single-quotes", "{'qom-type':'pr-manager-helper','id':'a','path':'@SOCK@'}")
    add(
        g,
        "single-quotes-with-double-inside",
        "{'qom-type':'pr-manager-helper','id':'a','path':'@TMP@/\"dq\".sock'}",
    )
    add(g, "mixed-quotes", "{\"qom-type\":'pr-manager-helper','id':\"a\",\"path\":'@SOCK@'}")
    add(g, "missing-qom-type", '{"id":"a","path":"@SOCK@"}')
    add(g, "missing-id", '{"qom-type":"pr-manager-helper","path":"@SOCK@"}')
    add(g, "missing-path", '{"qom-type":"pr-manager-helper","id":"a"}')
    add(g, "empty-path", '{"qom-type":"pr-manager-helper","id":"a","path":""}')
    add(g, "nonexistent-path", '{"qom-type":"pr-manager-helper","id":"a","path":"/nonexistent"}')
    add(g, "empty-object", "{}")
    add(g, "only-qom-type", '{"qom-type":"pr-manager-helper"}')
    add(g, "unknown-key", '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","foo":"bar"}')
    add(g, "unknown-key-missing-path", '{"qom-type":"pr-manager-helper","id":"a","foo":"bar"}')
    add(
        g,
        "two-unknown-keys",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","foo":1,"bar":2}',
    )
    add(
        g,
        "two-unknown-keys-rev",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","bar":2,"foo":1}',
    )
    add(
        g,
        "unknown-key-bad-id",
        '{"qom-type":"pr-manager-helper","id":"1a","path":"@SOCK@","foo":"bar"}',
    )
    add(
        g,
        "bad-id-nonexistent-path",
        '{"qom-type":"pr-manager-helper","id":"1a","path":"/nonexistent"}',
    )
    add(g, "path-too-long", '{"qom-type":"pr-manager-helper","id":"a","path":"/' + "y" * 200 + '"}')
    add(
        g,
        "invalid-utf8-in-string",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/non\udcffexistent"}',
        note="U+DCFF stands for the raw byte 0xff (surrogateescape)",
    )
    add(g, "id-on", '{"qom-type":"pr-manager-helper","id":"on","path":"@SOCK@"}')
    add(
        g,
        "unknown-key-nested",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","foo":{"x":[1,2]}}',
    )
    add(g, "help-key", '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","help":true}')
    add(g, "qom-type-help", '{"qom-type":"help"}')
    add(g, "qom-type-question", '{"qom-type":"?"}')
    add(g, "qom-type-help-id", '{"qom-type":"help","id":"a"}')
    add(g, "unknown-type", '{"qom-type":"no-such-type","id":"a"}')
    add(g, "abstract-type", '{"qom-type":"pr-manager","id":"a","path":"@SOCK@"}')
    add(g, "type-object", '{"qom-type":"object","id":"a"}')
    add(g, "type-container", '{"qom-type":"container","id":"a"}')
    add(g, "duplicate-id-key", '{"qom-type":"pr-manager-helper","id":"a","id":"b","path":"@SOCK@"}')
    add(
        g,
        "duplicate-path-key",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/nonexistent","path":"@SOCK@"}',
    )
    add(
        g,
        "duplicate-qom-type-key",
        '{"qom-type":"pr-manager","qom-type":"pr-manager-helper","id":"a","path":"@SOCK@"}',
    )
    add(g, "bad-id-leading-digit", '{"qom-type":"pr-manager-helper","id":"1a","path":"@SOCK@"}')
    add(g, "bad-id-empty", '{"qom-type":"pr-manager-helper","id":"","path":"@SOCK@"}')
    add(g, "bad-id-space", '{"qom-type":"pr-manager-helper","id":"a b","path":"@SOCK@"}')
    add(g, "id-with-comma", '{"qom-type":"pr-manager-helper","id":"a,b","path":"@SOCK@"}')
    add(
        g,
        "id-unicode-escape",
        '{"qom-type":"pr-manager-helper","id":"\\u0041","path":"@SOCK@"}',
        note="\\u0041 is 'A'",
    )
    add(g, "id-newline-escape", '{"qom-type":"pr-manager-helper","id":"a\\nb","path":"@SOCK@"}')
    add(
        g,
        "path-newline-escape",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/non\\nexistent"}',
    )
    add(g, "path-raw-newline", '{"qom-type":"pr-manager-helper","id":"a","path":"/non\nexistent"}')
    add(g, "path-raw-tab", '{"qom-type":"pr-manager-helper","id":"a","path":"/non\texistent"}')
    add(g, "path-nul-escape", '{"qom-type":"pr-manager-helper","id":"a","path":"/non\\u0000x"}')
    add(
        g,
        "path-surrogate-pair",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/\\ud83d\\ude00"}',
    )
    add(g, "path-lone-surrogate", '{"qom-type":"pr-manager-helper","id":"a","path":"/\\ud83d"}')
    add(g, "path-bad-escape", '{"qom-type":"pr-manager-helper","id":"a","path":"/\\q"}')
    add(g, "path-percent-s", '{"qom-type":"pr-manager-helper","id":"a","path":"%s"}')
    add(g, "path-bare-percent", '{"qom-type":"pr-manager-helper","id":"a","path":%s}')
    add(g, "path-number", '{"qom-type":"pr-manager-helper","id":"a","path":1}')
    add(g, "path-float", '{"qom-type":"pr-manager-helper","id":"a","path":1.5}')
    add(g, "path-true", '{"qom-type":"pr-manager-helper","id":"a","path":true}')
    add(g, "path-null", '{"qom-type":"pr-manager-helper","id":"a","path":null}')
    add(g, "path-object", '{"qom-type":"pr-manager-helper","id":"a","path":{"x":"y"}}')
    add(g, "path-array", '{"qom-type":"pr-manager-helper","id":"a","path":["@SOCK@"]}')
    add(g, "id-number", '{"qom-type":"pr-manager-helper","id":1,"path":"@SOCK@"}')
    add(g, "id-null", '{"qom-type":"pr-manager-helper","id":null,"path":"@SOCK@"}')
    add(g, "qom-type-number", '{"qom-type":1,"id":"a","path":"@SOCK@"}')
    add(g, "qom-type-array", '{"qom-type":["pr-manager-helper"],"id":"a"}')
    add(g, "nested-props", '{"qom-type":"pr-manager-helper","id":"a","props":{"path":"@SOCK@"}}')
    add(g, "trailing-garbage", jok + " x")
    add(g, "trailing-object", jok + "{}")
    add(g, "trailing-whitespace", jok + " \n")
    add(g, "trailing-comma-in-object", '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@",}')
    add(g, "unterminated-object", '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@"')
    add(g, "unterminated-string", '{"qom-type":"pr-manager-helper","id":"a')
    add(g, "open-brace-only", "{")
    add(g, "close-brace-extra", jok + "}")
    add(g, "bare-word-key", '{qom-type:"pr-manager-helper",id:"a",path:"@SOCK@"}')
    add(g, "bare-word-value", '{"qom-type":pr-manager-helper,"id":"a","path":"@SOCK@"}')
    add(g, "missing-colon", '{"qom-type" "pr-manager-helper"}')
    add(g, "missing-comma", '{"qom-type":"pr-manager-helper" "id":"a"}')
    add(g, "number-key", '{1:"a"}')
    add(g, "leading-space", " " + jok, note="does not start with '{': parsed as key=value")
    add(g, "leading-newline", "\n" + jok)
    add(g, "array-top-level", "[" + jok + "]")
    add(g, "brace-in-keyval", "pr-manager-helper,id=a,path={x}")
    add(g, "json-in-keyval-path", 'pr-manager-helper,id=a,path={"x":1}')
    add(g, "comment", '{"qom-type":"pr-manager-helper", /* c */ "id":"a","path":"@SOCK@"}')
    add(g, "big-number-path", '{"qom-type":"pr-manager-helper","id":"a","path":1e400}')
    add(
        g,
        "big-int-path",
        '{"qom-type":"pr-manager-helper","id":"a","path":123456789012345678901234567890}',
    )
    add(
        g,
        "nonascii-raw-key",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","\u00e9":1}',
    )
    add(
        g,
        "deep-nesting",
        '{"qom-type":"pr-manager-helper","id":"a","x":' + "[" * 1100 + "]" * 1100 + "}",
    )

    # --- several -object options -------------------------------------------------
    g = "multi"
    add(g, "two-ok", ok, "pr-manager-helper,id=b,path=@SOCK2@")
    add(g, "two-ok-same-socket", ok, "pr-manager-helper,id=b,path=@SOCK@")
    add(
        g,
        "three-ok",
        ok,
        "pr-manager-helper,id=b,path=@SOCK2@",
        '{"qom-type":"pr-manager-helper","id":"c","path":"@SOCK3@"}',
    )
    add(g, "dup-id-kv", ok, "pr-manager-helper,id=a,path=@SOCK2@")
    add(g, "dup-id-json", jok, '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK2@"}')
    add(g, "dup-id-kv-json", ok, '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK2@"}')
    add(g, "dup-id-json-kv", jok, "pr-manager-helper,id=a,path=@SOCK2@")
    add(g, "dup-id-first-fails", "pr-manager-helper,id=a,path=/nonexistent", ok)
    add(g, "dup-id-second-fails", ok, "pr-manager-helper,id=a,path=/nonexistent")
    add(
        g,
        "dup-id-three",
        ok,
        "pr-manager-helper,id=a,path=@SOCK2@",
        "pr-manager-helper,id=a,path=@SOCK3@",
    )
    add(g, "dup-id-different-type", ok, "pr-manager,id=a")
    add(g, "second-parse-error", ok, "pr-manager-helper,id=b,path=@SOCK2@,a..b=1")
    add(g, "second-missing-qom-type", ok, "id=b,path=@SOCK2@")
    add(g, "second-bad-json", ok, '{"qom-type":"pr-manager-helper"')
    add(g, "second-unknown-type", ok, "no-such-type,id=b")
    add(g, "second-missing-path", ok, "pr-manager-helper,id=b")
    add(g, "second-nonexistent", ok, "pr-manager-helper,id=b,path=/nonexistent")
    add(
        g,
        "first-nonexistent-second-parse-error",
        "pr-manager-helper,id=a,path=/nonexistent",
        "pr-manager-helper,id=b,a..b=1",
    )
    add(
        g,
        "first-nonexistent-second-missing-type",
        "pr-manager-helper,id=a,path=/nonexistent",
        "id=b",
    )
    add(g, "first-nonexistent-second-bad-json", "pr-manager-helper,id=a,path=/nonexistent", "{")
    add(
        g,
        "first-nonexistent-second-unknown-type",
        "pr-manager-helper,id=a,path=/nonexistent",
        "no-such-type,id=b",
    )
    add(
        g,
        "first-nonexistent-second-bad-id",
        "pr-manager-helper,id=a,path=/nonexistent",
        "pr-manager-helper,id=1b,path=@SOCK@",
    )
    add(
        g,
        "first-nonexistent-second-missing-path",
        "pr-manager-helper,id=a,path=/nonexistent",
        "pr-manager-helper,id=b",
    )
    add(
        g,
        "both-nonexistent",
        "pr-manager-helper,id=a,path=/nonexistent1",
        "pr-manager-helper,id=b,path=/nonexistent2",
    )
    add(
        g,
        "first-missing-path-second-nonexistent",
        "pr-manager-helper,id=a",
        "pr-manager-helper,id=b,path=/nonexistent",
    )
    add(
        g,
        "first-bad-id-second-parse-error",
        "pr-manager-helper,id=1a,path=@SOCK@",
        "pr-manager-helper,a..b=1",
    )
    add(g, "first-parse-error-second-parse-error", "pr-manager-helper,a..b=1", "id=b")
    add(g, "first-unknown-type-second-parse-error", "no-such-type,id=a", "{")
    add(g, "first-help-second-bad", "help", "pr-manager-helper,a..b=1")
    add(g, "first-bad-second-help", "pr-manager-helper,a..b=1", "help")
    add(g, "first-ok-second-help", ok, "help")
    add(g, "first-ok-second-type-help", ok, "pr-manager-helper,help")
    add(g, "first-nonexistent-second-help", "pr-manager-helper,id=a,path=/nonexistent", "help")
    add(g, "two-help", "help", "pr-manager-helper,help")
    add(g, "first-missing-type-second-help", "id=a", "help")
    add(g, "first-warning-second-error", "pr-manager-helper,id=a,path=@SOCK@,foo", "{")
    add(
        g,
        "two-warnings",
        "pr-manager-helper,id=a,path=@SOCK@,foo",
        "pr-manager-helper,id=b,path=@SOCK2@,bar",
    )
    add(
        g,
        "first-no-handshake-second-ok",
        "pr-manager-helper,id=a,path=@NOHS@",
        "pr-manager-helper,id=b,path=@SOCK@",
    )
    add(g, "first-ok-second-not-socket", ok, "pr-manager-helper,id=b,path=@NOTSOCK@")
    add(g, "ids-differ-in-case", ok, "pr-manager-helper,id=A,path=@SOCK2@")
    add(
        g,
        "dup-id-json-first-fails",
        '{"qom-type":"pr-manager-helper","id":"a","path":"/nonexistent"}',
        jok,
    )
    add(
        g,
        "json-bad-id-then-kv-parse-error",
        '{"qom-type":"pr-manager-helper","id":"1a","path":"@SOCK@"}',
        "pr-manager-helper,a..b=1",
    )
    add(g, "json-ok-then-help", jok, "help")
    add(
        g,
        "third-fails",
        ok,
        "pr-manager-helper,id=b,path=@SOCK2@",
        "pr-manager-helper,id=c,path=/nonexistent",
    )
    add(
        g,
        "third-parse-error",
        ok,
        "pr-manager-helper,id=b,path=/nonexistent",
        "pr-manager-helper,id=c",
    )
    add(
        g,
        "second-not-compiled-type",
        "pr-manager-helper,id=a,path=/nonexistent",
        "pef-guest,id=b",
        note="'invalid object type' is a creation-time error",
    )
    add(g, "first-not-compiled-type-second-parse-error", "pef-guest,id=a", "pr-manager-helper,id=b")

    # --- hostile input: deep nesting, huge numbers, bytes JSON refuses ----------------
    g = "hostile"
    head = '{"qom-type":"pr-manager-helper","id":"a","path":'

    def nest(levels: int) -> str:
        return "[" * levels + "]" * levels

    # The outer object is a level too: 1023 brackets are the last depth the streamer admits.
    for levels in (493, 494, 1000, 1023, 1024):
        add(g, f"json-nested-{levels}", f"{head}{nest(levels)}}}")
    add(g, "json-nested-unknown-key", f'{jok[:-1]},"zz":{nest(1000)}}}')
    add(g, "json-nested-objects", head + '{"a":' * 600 + "1" + "}" * 600 + "}")
    add(g, "json-nested-key", '{"qom-type":"pr-manager-helper","id":"a",' + nest(900) + ":1}")
    add(g, "json-nested-unclosed", head + "[" * 1000)
    add(g, "json-int-20-digits", f"{head}18446744073709551615}}")
    add(g, "json-int-21-digits", f"{head}{'9' * 21}}}")
    add(g, "json-int-400-digits", f"{head}1{'0' * 400}}}")
    add(g, "json-int-5000-digits", f"{head}1{'0' * 5000}}}")
    add(g, "json-negative-5000-digits", f"{head}-1{'0' * 5000}}}")
    add(g, "json-int-5000-digits-unknown", f'{jok[:-1]},"zz":1{"0" * 5000}}}')
    add(g, "json-float-1e400", f"{head}1e400}}")
    add(g, "json-float-5000-digits", f"{head}1.{'5' * 5000}}}")
    for name, text in (
        ("escape-fffe", "\\ufffe"),
        ("escape-fdd0", "\\ufdd0"),
        ("escape-fdef", "\\ufdef"),
        ("escape-fdcf", "\\ufdcf"),
        ("escape-fffd", "\\ufffd"),
        ("escape-1ffff", "\\ud83f\\udfff"),
        ("escape-lone-high", "\\ud800"),
        ("escape-lone-low", "\\udc00"),
        ("raw-fffe", "\udcef\udcbf\udcbe"),
        ("raw-fdd0", "\udcef\udcb7\udc90"),
        ("raw-1ffff", "\udcf0\udc9f\udcbf\udcbf"),
        ("raw-surrogate", "\udced\udca0\udc80"),
    ):
        add(g, f"json-string-{name}", f'{head}"@TMP@/{text}"}}')
    add(g, "json-nul", f'{head}"@TMP@/a\\u0000b"}}', note="QEMU keeps U+0000 as C0 80")
    add(g, "kv-raw-nul", "pr-manager-helper,id=a,path=@TMP@/a\udcc0\udc80b")
    add(g, "kv-raw-surrogate", "pr-manager-helper,id=a,path=@TMP@/\udced\udca0\udc80")
    add(g, "kv-raw-surrogate-key", "pr-manager-helper,id=a,path=@SOCK@,\udced\udca0\udc80=1")
    add(g, "kv-raw-surrogate-type", "\udced\udca0\udc80,id=a")
    return cases


CASES: tuple[Case, ...] = tuple(_cases())


def check_cases(cases: Sequence[Case]) -> None:
    names = [c.full_name for c in cases]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise SystemExit(f"duplicate case names: {dups}")
    for case in cases:
        if not 1 <= len(case.args) <= 3:
            raise SystemExit(f"{case.full_name}: needs 1 to 3 -object args")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON corpus")
    parser.add_argument("--jobs", type=int, default=4, help="QEMU processes run in parallel")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds allowed per case"
    )
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--date", default="", help="date to record (default: today, UTC)")
    opts = parser.parse_args(argv)

    check_cases(CASES)
    if shutil.which(QEMU) is None:
        print(f"{QEMU} not found in PATH", file=sys.stderr)
        return 2
    selected = [c for c in CASES if opts.only in c.full_name]
    version = qemu_version()
    with environment() as tmp, concurrent.futures.ThreadPoolExecutor(opts.jobs) as pool:
        futures = [
            pool.submit(run_case, case, tmp, index, opts.timeout)
            for index, case in enumerate(selected)
        ]
        results: list[JsonValue] = [f.result() for f in futures]
    date = opts.date or datetime.datetime.now(datetime.UTC).date().isoformat()
    corpus: JsonObject = {
        "format": FORMAT_VERSION,
        "qemu_version": version,
        "date": date,
        "command": [*BASE_COMMAND, "-object", "ARG1", "[-object ARG2 ...]"],
        "environment": {"LC_ALL": "C", "cwd": TMP_PLACEHOLDER, "stdin": "/dev/null"},
        "placeholders": {
            TMP_PLACEHOLDER: "a fixed-length temporary directory; QEMU's cwd",
            "@QMP@": "the QMP socket (never appears in the cases)",
            **{ph: f"@TMP@/{name}: {desc}" for ph, (name, desc) in PLACEHOLDERS.items()},
        },
        "socket_aliases": {f"@TMP@/{a}": "symlink to @SOCK@" for a in SOCK_ALIASES},
        "cases": results,
    }
    return write_corpus(opts.out, corpus, results)


def write_corpus(out: Path, corpus: JsonObject, results: Sequence[JsonValue]) -> int:
    """Write *corpus* as JSON; report the cases that timed out or lost QMP (exit 1 if any)."""
    text = json.dumps(corpus, indent=2, ensure_ascii=False) + "\n"
    # Bytes that are not UTF-8 are lone surrogates (surrogateescape); backslashreplace
    # writes them as JSON "\udcXX" escapes, which json.load reads back as the same str.
    out.write_text(text, encoding="utf-8", errors="backslashreplace")
    failures = [r for r in results if isinstance(r, dict) and (r["timed_out"] or "qmp_error" in r)]
    print(f"wrote {len(results)} cases to {out}", file=sys.stderr)
    for failure in failures:
        if isinstance(failure, dict):
            print(f"  problem: {failure['name']}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
