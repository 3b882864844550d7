# SPDX-License-Identifier: MIT
"""Record how the real qemu-storage-daemon 7.2 parses and creates ``--object`` options.

qemu-storage-daemon reads ``--object`` with QEMU's strict keyval parser (or JSON when the
argument starts with ``{``) and creates each object as soon as its option is read
(``user_creatable_process_cmdline``).  For every case in :data:`CASES` this script runs::

    qemu-storage-daemon --object ARG1 [--object ARG2 ...] \\
        --chardev socket,id=qmp0,path=QMPSOCK,server=on,wait=off --monitor qmp0

and records exactly what ``generate.py`` records for ``qemu-system-x86_64`` (same fake
helpers, placeholders, QMP inspection and JSON schema; see README.md).  The cases are all
of ``generate.py``'s (same group and name) followed by keyval-specific ones (groups
``keyval-*``).

Usage, from the checkout's root::

    python -m tests.corpus.generate_qsd --out tests/corpus/qsd-7.2-object.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
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
from tests._support.qemu_run import DEFAULT_TIMEOUT
from tests._support.qemu_run import Case
from tests._support.qemu_run import qemu_version
from tests._support.qemu_run import run_case as run_qemu_case
from tests.corpus import generate

FORMAT_VERSION = 1
PROGRAM = "qemu-storage-daemon"
OPTION = "--object"
BASE_COMMAND: tuple[str, ...] = (PROGRAM,)
#: The QMP monitor comes after the objects: its I/O runs in a thread of its own, so a
#: monitor given first would greet the generator while objects are still being created.
#: Given last, its socket only appears once every object exists.
AFTER_OBJECTS: tuple[str, ...] = (
    "--chardev",
    "socket,id=qmp0,path=@QMP@,server=on,wait=off",
    "--monitor",
    "qmp0",
)

OK = "pr-manager-helper,id=a,path=@SOCK@"
JOK = '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@"}'


def _keyval_cases() -> list[Case]:
    """The cases that only make sense for keyval (QEMU's util/keyval.c)."""
    cases: list[Case] = []

    def add(group: str, name: str, *args: str, note: str = "") -> None:
        cases.append(Case(group, name, tuple(args), note))

    # --- dotted keys build nested dicts; all-index dicts become lists --------------
    g = "keyval-dotted"
    add(g, "dict-unknown", OK + ",a.b=1,a.c=2")
    add(g, "dict-deep-unknown", OK + ",a.b.c=1,a.b.d=2")
    add(g, "list-unknown", OK + ",a.0=x,a.1=y")
    add(g, "list-reversed", OK + ",a.1=y,a.0=x")
    add(g, "list-single", OK + ",a.0=x")
    add(g, "list-gap", OK + ",a.0=x,a.2=y")
    add(g, "list-gap-two", OK + ",a.0=x,a.1=y,a.3=z,a.5=w")
    add(g, "list-missing-zero", OK + ",a.1=x")
    add(g, "list-only-high-index", OK + ",a.5=x")
    add(g, "list-leading-zero", OK + ",a.00=x", note="'00' is index 0")
    add(g, "list-zero-and-double-zero", OK + ",a.0=x,a.00=y")
    add(g, "list-zero-double-zero-one", OK + ",a.0=x,a.00=y,a.1=z")
    add(g, "list-one-and-zero-one", OK + ",a.1=x,a.01=y")
    add(g, "list-three-zeros", OK + ",a.0=x,a.00=y,a.000=z")
    add(g, "list-index-int-max", OK + ",a.2147483647=x")
    add(g, "list-index-above-int-max", OK + ",a.2147483648=x")
    add(g, "list-index-huge", OK + ",a.99999999999999999999=x")
    add(g, "list-of-dicts", OK + ",a.0.b=1,a.0.c=2,a.1.b=3")
    add(g, "list-of-lists", OK + ",a.0.0=x,a.0.1=y")
    add(g, "list-nested-gap", OK + ",a.0.0=x,a.0.2=y")
    add(g, "mix-index-then-member", OK + ",a.0=x,a.b=y")
    add(g, "mix-member-then-index", OK + ",a.b=y,a.0=x")
    add(g, "mix-nested", OK + ",a.b.0=x,a.b.c=y")
    add(g, "mix-top-level-index", "pr-manager-helper,id=a,0=x", note="a top-level index key")
    add(g, "scalar-then-dict", OK + ",a=1,a.b=2")
    add(g, "dict-then-scalar", OK + ",a.b=2,a=1")
    add(g, "deep-scalar-then-dict", OK + ",a.b=1,a.b.c=2")
    add(g, "deep-dict-then-scalar", OK + ",a.b.c=2,a.b=1")
    add(g, "same-dotted-twice", OK + ",a.b=1,a.b=2")
    add(g, "id-dotted", "pr-manager-helper,id.x=a,path=@SOCK@")
    add(g, "id-list", "pr-manager-helper,id.0=a,path=@SOCK@")
    add(g, "id-scalar-and-dotted", "pr-manager-helper,id=a,id.x=b,path=@SOCK@")
    add(g, "qom-type-dotted", "qom-type.x=pr-manager-helper,id=a,path=@SOCK@")
    add(g, "implied-and-qom-type-dotted", "pr-manager-helper,qom-type.x=y,id=a,path=@SOCK@")
    add(g, "path-dict", "pr-manager-helper,id=a,path.a=@SOCK@,path.b=x")
    add(g, "path-list", "pr-manager-helper,id=a,path.0=@SOCK@,path.1=x")
    add(g, "path-list-gap", "pr-manager-helper,id=a,path.1=@SOCK@")
    add(g, "dotted-missing-path", "pr-manager-helper,id=a,a.b=1")
    add(g, "dotted-error-and-unknown", OK + ",foo=1,a.1=x")
    add(g, "inconsistent-and-unknown", OK + ",foo=1,a.0=x,a.b=y")

    # --- key fragments must be QAPI names (or indices after a dot) ------------------
    g = "keyval-names"
    add(g, "leading-digit", OK + ",1a=1")
    add(g, "all-digits-first", OK + ",12=1")
    add(g, "leading-underscore", OK + ",_a=1")
    add(g, "leading-dash", OK + ",-a=1")
    add(g, "inner-underscore-ok", OK + ",a_b=1")
    add(g, "inner-dash-ok", OK + ",a-b=1")
    add(g, "uppercase-ok", OK + ",ABC=1")
    add(g, "plus", OK + ",a+b=1")
    add(g, "colon", OK + ",a:b=1")
    add(g, "slash", OK + ",a/b=1")
    add(g, "space-leading", OK + ", a=1")
    add(g, "space-trailing", OK + ",a =1")
    add(g, "nonascii-inner", OK + ",a\u00e9=1")
    add(g, "downstream-prefix", OK + ",__org.example_x=1")
    add(g, "downstream-prefix-no-name", OK + ",__org.example_=1")
    add(g, "downstream-prefix-unclosed", OK + ",__org=1")
    add(g, "double-underscore", OK + ",__=1")
    add(g, "fragment-leading-digit", OK + ",a.1b=1")
    add(g, "fragment-leading-dash", OK + ",a.-b=1")
    add(g, "fragment-empty-middle", OK + ",a..b=1")
    add(g, "fragment-empty-first", OK + ",.a=1")
    add(g, "fragment-empty-last", OK + ",a.=1")
    add(g, "fragment-only-dot", OK + ",.=1")
    add(g, "fragment-index-sign", OK + ",a.+1=1")
    add(g, "fragment-index-space", OK + ",a. 1=1")
    add(g, "fragment-uppercase", OK + ",a.B=1")
    add(g, "fragment-downstream", OK + ",a.__x.y_z=1")
    add(g, "bad-name-after-help", "pr-manager-helper,help,1a=1")
    add(g, "bad-name-before-unknown", OK + ",1a=1,foo=2")
    add(g, "bad-name-in-first-option", "pr-manager-helper,id=a,1a=1", OK)
    add(g, "bad-name-in-second-option", OK, "pr-manager-helper,id=b,path=@SOCK2@,1a=1")

    # --- every item after the first must be key=value (or help) --------------------
    g = "keyval-equals"
    add(g, "bare-word", OK + ",foo")
    add(g, "bare-word-first-of-two", OK + ",foo,bar")
    add(g, "bare-word-then-equals", OK + ",foo,bar=1")
    add(g, "bare-dotted", OK + ",a.b")
    add(g, "bare-bad-name", OK + ",1a")
    add(g, "bare-id", "pr-manager-helper,id,path=@SOCK@")
    add(g, "bare-no-prefix", "pr-manager-helper,id=a,nopath")
    add(g, "bare-escaped-comma", OK + ",fo,,o")
    add(g, "bare-before-help", OK + ",foo,help")
    add(g, "bare-after-help", "pr-manager-helper,help,foo")
    add(g, "bare-trailing-dot", OK + ",a.")
    add(g, "bare-helpme", "pr-manager-helper,helpme")
    add(g, "bare-help-dotted", "pr-manager-helper,help.x")
    add(g, "bare-question-twice", "pr-manager-helper,??")
    add(g, "bare-in-second-option", OK, "pr-manager-helper,id=b,path=@SOCK2@,foo")

    # --- length limits: 127 bytes per key fragment ---------------------------------
    g = "keyval-length"
    add(g, "key-127-unknown", OK + f",{'k' * 127}=1")
    add(g, "key-128", OK + f",{'k' * 128}=1")
    add(g, "first-fragment-128-dotted", OK + f",{'k' * 128}.a=1")
    add(g, "second-fragment-127", OK + f",a.{'k' * 127}=1")
    add(g, "second-fragment-128", OK + f",a.{'k' * 128}=1")
    add(g, "middle-fragment-128", OK + f",a.{'k' * 128}.b=1")
    add(g, "key-128-bare", OK + f",{'k' * 128}")
    add(g, "index-128-digits", OK + f",a.{'1' * 128}=1")
    add(g, "bad-name-128", OK + f",{'1' * 128}=1")
    add(g, "type-128", f"{'t' * 128},id=a", note="the implied value is not a key: no limit")
    add(g, "type-300", f"{'t' * 300},id=a")
    add(g, "value-300", OK + f",foo={'v' * 300}")
    add(g, "id-300", f"pr-manager-helper,id={'i' * 300},path=@SOCK@")
    add(g, "key-128-then-bad-name", OK + f",{'k' * 128}=1,1a=2")

    # --- hostile keys: thousands of dotted parts (QEMU recurses; 60,000 crash it) -------
    g = "keyval-hostile"

    def dotted(first: str, part: str, count: int) -> str:
        return ".".join([first] + [part] * (count - 1))

    add(g, "dotted-990", OK + f",{dotted('a', 'a', 990)}=1")
    add(g, "dotted-991", OK + f",{dotted('a', 'a', 991)}=1")
    add(g, "dotted-20000", OK + f",{dotted('a', 'a', 20000)}=1")
    add(g, "dotted-index-3000", OK + f",{dotted('a', '0', 3000)}=1")
    add(g, "dotted-index-gap-3000", OK + f",{dotted('a', '1', 3000)}=1")
    add(g, "dotted-qom-type-3000", f"{dotted('qom-type', 'a', 3000)}=x")
    add(g, "dotted-path-3000", f"pr-manager-helper,id=a,{dotted('path', 'a', 3000)}=x")
    add(g, "dotted-path-index-3000", f"pr-manager-helper,id=a,{dotted('path', '0', 3000)}=x")
    add(
        g,
        "dotted-inconsistent-3000",
        OK + f",{dotted('a', 'a', 3000)}=1,{dotted('a', 'a', 2000)}.0=1",
    )
    add(g, "dotted-only-3000", f"{dotted('a', 'a', 3000)}=1")

    # --- help: anywhere among the items ---------------------------------------------
    g = "keyval-help"
    add(g, "help", "help")
    add(g, "question", "?")
    add(g, "helpme", "helpme", note="the implied qom-type 'helpme'")
    add(g, "help-equals", "help=", note="has '=': the key 'help'")
    add(g, "unknown-type-help", "nope,help")
    add(g, "unknown-type-question", "nope,?")
    add(g, "help-then-unknown-type", "help,qom-type=nope")
    add(g, "type-help-id-path", "pr-manager-helper,help,id=a,path=@SOCK@")
    add(g, "type-path-help-ok-socket", OK + ",help")
    add(g, "help-then-bad-name", "pr-manager-helper,help,1a=1")
    add(g, "help-then-bare-word", "pr-manager-helper,help,foo")
    add(g, "help-then-inconsistent", "pr-manager-helper,help,a=1,a.b=2")
    add(g, "help-then-list-gap", "pr-manager-helper,help,a.1=x")
    add(g, "help-then-too-long", "pr-manager-helper,help," + "k" * 128 + "=1")
    add(g, "help-then-unknown-key", "pr-manager-helper,help,foo=1")
    add(g, "help-with-bad-id", "pr-manager-helper,id=1a,help")
    add(g, "help-dotted-type", "qom-type.x=pr-manager-helper,help")
    add(g, "help-explicit-type", "qom-type=pr-manager-helper,help")
    add(g, "help-type-last", "help,qom-type=pr-manager-helper")
    add(g, "help-type-twice", "qom-type=nope,help,qom-type=pr-manager-helper")
    add(g, "help-type-empty", "qom-type=,help")
    add(g, "help-abstract-type", "pr-manager,help")
    add(g, "help-escaped", "help,,x,id=a")
    add(g, "help-after-escaped-type", "pr-manager,,helper,help")
    add(g, "question-after-comma-run", "pr-manager-helper,,,?")
    add(g, "help-twice-options", "pr-manager-helper,help", "help")
    add(g, "help-after-created", OK, "pr-manager-helper,id=b,help")
    add(g, "help-after-failed", "pr-manager-helper,id=a,path=/nonexistent", "help")
    add(g, "help-in-json", '{"qom-type":"pr-manager-helper","help":"x"}')
    add(g, "json-type-help", '{"qom-type":"help","id":"a"}')

    # --- the implied key (only the first item may omit 'key=') ---------------------
    g = "keyval-implied"
    add(g, "implied-empty-then-id", ",id=a")
    add(g, "implied-dotted-value", "pr-manager.helper,id=a")
    add(g, "implied-with-equals-value", "pr=x,id=a")
    add(g, "implied-digit", "1,id=a")
    add(g, "implied-space-value", "a b,id=a")
    add(g, "implied-then-explicit-same", "pr-manager-helper,qom-type=pr-manager-helper," + OK[18:])
    add(g, "implied-then-explicit-unknown", "pr-manager-helper,qom-type=nope,id=a")
    add(g, "explicit-then-implied-like", "qom-type=pr-manager-helper,pr-manager-helper,id=a")
    add(g, "implied-escaped-comma-end", "pr-manager-helper,,")
    add(g, "implied-only", "pr-manager-helper")
    add(g, "implied-only-trailing-comma", "pr-manager-helper,")
    add(g, "implied-qom-type-word", "qom-type,id=a")
    add(g, "implied-id-word", "id,qom-type=pr-manager-helper")
    add(g, "implied-bad-utf8", "pr-manager-h\udcffelper,id=a", note="U+DCFF is the byte 0xff")

    # --- commas and values ------------------------------------------------------
    g = "keyval-commas"
    add(g, "double-comma-id", "pr-manager-helper,id=a,,b,path=@SOCK@")
    add(g, "trailing-comma-after-path", OK + ",")
    add(g, "two-trailing-commas", OK + ",,")
    add(g, "empty-item-after-id", "pr-manager-helper,id=a,,,path=@SOCK@")
    add(g, "value-only-commas", "pr-manager-helper,id=a,path=,,,,")
    add(g, "empty-value-then-comma", "pr-manager-helper,id=,path=@SOCK@,")
    add(g, "value-equals-signs", OK + ",foo==")
    add(g, "empty-item-between-unknown", OK + ",foo=1,,bar=2")
    add(g, "only-equals-item", OK + ",=")

    # --- the same key twice: the last wins -------------------------------------------
    g = "keyval-last-wins"
    add(g, "id-bad-then-good", "pr-manager-helper,id=1a,id=b,path=@SOCK@")
    add(g, "id-good-then-empty", "pr-manager-helper,id=a,id=,path=@SOCK@")
    add(g, "id-three-times", "pr-manager-helper,id=x,id=y,id=z,path=@SOCK@")
    add(g, "path-bad-then-good", "pr-manager-helper,id=a,path=/nonexistent,path=@SOCK2@")
    add(g, "path-good-then-dead", "pr-manager-helper,id=a,path=@SOCK@,path=@DEAD@")
    add(g, "unknown-twice", OK + ",foo=1,foo=2")
    add(g, "qom-type-explicit-twice", "qom-type=nope,qom-type=pr-manager-helper," + OK[18:])

    # --- several unknown keys: QEMU names the first its GLib hash table yields ------
    g = "keyval-unknown"
    add(g, "two-ab", OK + ",a=1,b=2")
    add(g, "two-ba", OK + ",b=2,a=1")
    add(g, "four", OK + ",foo=1,bar=2,baz=3,qux=4")
    add(g, "four-rev", OK + ",qux=4,baz=3,bar=2,foo=1")
    add(g, "eight", OK + ",k1=1,k2=2,k3=3,k4=4,k5=5,k6=6,k7=7,k8=8")
    add(g, "twelve", OK + "," + ",".join(f"key{i}=v" for i in range(12)))
    add(g, "unknown-and-dotted", OK + ",zz=1,a.b=2")
    add(g, "dotted-and-list", OK + ",m.0=1,n.x=2,o=3")
    add(g, "uppercase-keys", OK + ",Path=1,ID=2")
    add(g, "unknown-before-missing-path", "pr-manager-helper,id=a,foo=1,bar=2")
    add(g, "unknown-then-bad-id", "pr-manager-helper,id=1a,path=@SOCK@,foo=1,bar=2")
    add(g, "unknown-type-and-keys", "nope,id=a,foo=1")
    add(
        g,
        "json-four",
        '{"qom-type":"pr-manager-helper","id":"a","path":"@SOCK@","foo":1,"bar":2,"baz":3,"qux":4}',
    )

    # --- several --object options: each created before the next is read ------------
    g = "keyval-multi"
    add(g, "dup-id-three-kv", OK, "pr-manager-helper,id=b,path=@SOCK2@", OK)
    add(g, "dup-id-after-failed-parse", "pr-manager-helper,id=a,foo", OK)
    add(g, "dup-id-with-last-wins", OK, "pr-manager-helper,id=x,id=a,path=@SOCK2@")
    add(g, "dup-id-bad-second-also-parse-error", OK, "pr-manager-helper,id=a,path=@SOCK2@,1a=1")
    add(g, "dup-id-json-then-kv-missing-path", JOK, "pr-manager-helper,id=a")
    add(g, "dup-id-second-help", OK, "pr-manager-helper,id=a,help")
    add(g, "ok-then-no-handshake", OK, "pr-manager-helper,id=b,path=@NOHS@")
    add(g, "ok-then-too-long", OK, "pr-manager-helper,id=b,path=/" + "x" * 108)
    add(g, "ok-then-dead", OK, "pr-manager-helper,id=b,path=@DEAD@")
    add(g, "ok-then-unknown-type", OK, "nope,id=b")
    add(g, "ok-then-bad-id", OK, "pr-manager-helper,id=1b,path=@SOCK2@")
    add(
        g,
        "three-ok-mixed",
        OK,
        '{"qom-type":"pr-manager-helper","id":"b","path":"@SOCK2@"}',
        "pr-manager-helper,path=@SOCK3@,id=c",
    )
    add(g, "ok-same-path-twice", OK, "pr-manager-helper,id=b,path=@SOCK@")
    return cases


CASES: tuple[Case, ...] = (*generate.CASES, *_keyval_cases())


def run_case(case: Case, tmp: Path, index: int, timeout: float) -> JsonObject:
    """One case through qemu-storage-daemon."""
    result: JsonObject = run_qemu_case(
        case, tmp, index, timeout, base_command=BASE_COMMAND, option=OPTION, after=AFTER_OBJECTS
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON corpus")
    parser.add_argument("--jobs", type=int, default=4, help="processes run in parallel")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds allowed per case"
    )
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--date", default="", help="date to record (default: today, UTC)")
    opts = parser.parse_args(argv)

    generate.check_cases(CASES)
    if shutil.which(PROGRAM) is None:
        print(f"{PROGRAM} not found in PATH", file=sys.stderr)
        return 2
    selected = [c for c in CASES if opts.only in c.full_name]
    version = qemu_version(PROGRAM)
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
        "command": [*BASE_COMMAND, OPTION, "ARG1", f"[{OPTION} ARG2 ...]", *AFTER_OBJECTS],
        "environment": {"LC_ALL": "C", "cwd": TMP_PLACEHOLDER, "stdin": "/dev/null"},
        "placeholders": {
            TMP_PLACEHOLDER: "a fixed-length temporary directory; the program's cwd",
            "@QMP@": "the QMP socket (never appears in the cases)",
            **{ph: f"@TMP@/{name}: {desc}" for ph, (name, desc) in PLACEHOLDERS.items()},
        },
        "socket_aliases": {f"@TMP@/{a}": "symlink to @SOCK@" for a in SOCK_ALIASES},
        "cases": results,
    }
    return int(generate.write_corpus(opts.out, corpus, results))


if __name__ == "__main__":
    sys.exit(main())
