# SPDX-License-Identifier: MIT
"""Benchmark: how long ``qompr persist`` / ``qompr turs`` / ``qompr --help`` take, beside the
sg3_utils programs they stand in for, measured in the same run.

    .venv/bin/python bench/startup.py [--runs 21]

Each command is started *runs* times (after two warm-up runs) as a user starts it, through
the ``qompr`` console script next to this interpreter, and the median wall time from fork to
exit is printed with sg_persist's (or sg_turs') on the same kind of target:

* ``device``: ``-n -k /dev/null`` (SG_IO fails with ENOTTY in both, as on any non-SCSI file);
* ``--object``: ``--object pr-manager-emulated,id=e -k FILE``, a real READ KEYS answer;
* ``--helper``: ``--helper SOCK -k FILE`` to a ``qompr-pr-helper --backend
  pr-manager-emulated`` started here (a real READ KEYS answer through the socket);
* ``--helper -i``: as contrib/fence_scsi runs them, ``--helper SOCK --initiator NODE``, for
  ``persist -k`` and for ``turs`` (TEST UNIT READY through qompr's protocol extension): about
  ten such runs per device fence it.

Before measuring, qompr's modules are compiled to bytecode (``compileall``), as a wheel install
has them: an editable checkout run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile
every module at each start.  A plain ``python -c pass`` is measured as the floor, and
``python -c "import attrs"`` as the floor of every path that builds an attrs class (the SCSI
codecs are attrs classes; only TEST UNIT READY on a device needs none).

Targets (issue 14): every ``qompr persist`` path median <= 60 ms and <= 20x sg_persist's;
``qompr --help`` <= 60 ms.  ``qompr turs`` (device, ``--object``) is measured beside sg_turs
on the same terms.  This script reports; it does not assert (machines are noisy: give
the median of several runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

QOMPR = str(Path(sys.executable).with_name("qompr"))
TARGET_MS = 60.0
TARGET_RATIO = 20.0


def median_ms(argv: Sequence[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of *runs* starts of *argv*, in milliseconds."""
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
        )
        if i >= 2:  # the first two warm the page cache
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def start_helper(where: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(where / "helper.sock")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "qompr.daemon.main", "-k", sock, "--keep-privileges",
            "--backend", "pr-manager-emulated,id=emu", "--allow-naming-uid", str(os.getuid()),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"qompr-pr-helper did not start (status {proc.poll()})")
        time.sleep(0.05)
    return proc, sock


def compile_qompr() -> None:
    """Bytecode for qompr's modules, as an installed wheel has it."""
    import compileall

    import qompr

    compileall.compile_dir(str(Path(qompr.__file__).parent), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="timed starts per command")
    args = parser.parse_args(argv)
    compile_qompr()
    sg_persist = shutil.which("sg_persist")
    sg_turs = shutil.which("sg_turs")
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="")
    rows: list[tuple[str, float, str, float | None]] = []
    floor = attrs_floor = 0.0
    with tempfile.TemporaryDirectory(prefix="qompr-bench-") as tmp:
        where = Path(tmp)
        disk = where / "disk.img"
        disk.write_bytes(bytes(4096))
        helper, sock = start_helper(where, env)
        try:
            floor = median_ms([sys.executable, "-c", "pass"], args.runs, env)
            attrs_floor = median_ms([sys.executable, "-c", "import attrs"], args.runs, env)
            peer: dict[str, float] = {}
            if sg_persist:
                peer["sg_persist"] = median_ms(
                    [sg_persist, "-n", "-k", "/dev/null"], args.runs, env
                )
            if sg_turs:
                peer["sg_turs"] = median_ms([sg_turs, "/dev/null"], args.runs, env)
            cases = [
                ("persist device", ["persist", "-n", "-k", "/dev/null"], "sg_persist"),
                (
                    "persist --object",
                    ["persist", "--object", "pr-manager-emulated,id=e", "-k", str(disk)],
                    "sg_persist",
                ),
                ("persist --helper", ["persist", "--helper", sock, "-k", str(disk)], "sg_persist"),
                (
                    "persist --helper -i",
                    ["persist", "--helper", sock, "--initiator", "node1", "-k", str(disk)],
                    "sg_persist",
                ),
                ("turs device", ["turs", "/dev/null"], "sg_turs"),
                (
                    "turs --object",
                    ["turs", "--object", "pr-manager-emulated,id=e", str(disk)],
                    "sg_turs",
                ),
                (
                    "turs --helper -i",
                    ["turs", "--helper", sock, "--initiator", "node1", str(disk)],
                    "sg_turs",
                ),
                ("--help", ["--help"], ""),
            ]
            for name, cmd, against in cases:
                ours = median_ms([QOMPR, *cmd], args.runs, env)
                rows.append((name, ours, against, peer.get(against)))
        finally:
            helper.terminate()
            helper.wait(10)
    print(f"median of {args.runs} starts, ms (targets: <= {TARGET_MS:.0f} ms, "
          f"<= {TARGET_RATIO:.0f}x the sg3_utils program)")  # fmt: skip
    print(f"python -c pass: {floor:.1f} ms (the interpreter's own start)")
    print(
        f"python -c 'import attrs': {attrs_floor:.1f} ms (the floor of a path with attrs classes)"
    )
    print(f"{'command':20} {'qompr':>8} {'peer':>12} {'peer ms':>8} {'ratio':>7}  targets")
    for name, ours, against, theirs in rows:
        ok = ours <= TARGET_MS
        ratio = ""
        if theirs:
            ratio = f"{ours / theirs:6.1f}x"
            ok = ok and ours / theirs <= TARGET_RATIO
        peer_ms = f"{theirs:8.1f}" if theirs else f"{'-':>8}"
        print(
            f"{name:20} {ours:8.1f} {against or '-':>12} {peer_ms} {ratio:>7}  "
            f"{'met' if ok else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
