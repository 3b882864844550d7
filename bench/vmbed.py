# SPDX-License-Identifier: MIT
"""Benchmark: the VM suite's guest programs' wall time, beside an empty boot of the same bed.

    .venv/bin/python bench/vmbed.py [BED ...]     # default: every bed below

Each bed (a module of ``tests/vm`` and the options its ``bed`` fixture boots with) is booted
once with its guest program and once with ``true`` as the script (the floor: QEMU TCG, the
guest kernel, LIO, the bed's helpers); the wall times, what the guest program adds to the
floor and the ratio are printed with the bed's budget.  The budgets were asserted in the
tests until they failed under load (the persist run took 155-264 s against 150 s on a
machine busy with other runs, every comparison passing): how fast a run is depends on the
machine, what it finds does not.  This script reports; it does not assert.

Heavy: each boot is minutes of TCG on one core.  Run it on a quiet machine, ``nice``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The beds are the VM tests' own: their modules are imported from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.vm import test_direct
from tests.vm import test_multipath
from tests.vm import test_persist
from tests.vm import test_pr_helper
from tests.vm.vmbed import run_in_vm

#: name: (guest script, boot options, wall-time budget in seconds on a quiet machine)
BEDS: dict[str, tuple[str, dict[str, Any], float]] = {
    "persist": (test_persist.GUEST_SCRIPT, test_persist.BED, 150.0),
    "direct": (test_direct.GUEST_SCRIPT, test_direct.BED, 120.0),
    "wedge": (test_direct.WEDGE_SCRIPT, test_direct.WEDGE_BED, 120.0),
    "pr-helper": (test_pr_helper.GUEST_SCRIPT, test_pr_helper.BED, 240.0),
    "multipath": (test_multipath.GUEST_SCRIPT, test_multipath.BED, 300.0),
}


def wall(script: str, options: dict[str, Any]) -> float:
    """Seconds from QEMU's start to its exit for one boot running *script*."""
    result = run_in_vm(script, **options)
    if result.exit_status != 0:
        raise SystemExit(f"the guest script failed:\n{result.describe()}")
    return result.wall_time


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("beds", nargs="*", metavar="BED", help=f"of {', '.join(BEDS)} (all)")
    args = parser.parse_args(argv)
    names = args.beds or list(BEDS)
    unknown = [name for name in names if name not in BEDS]
    if unknown:
        parser.error(f"unknown bed {unknown[0]!r} (known: {', '.join(BEDS)})")
    rows = []
    for name in names:
        script, options, budget = BEDS[name]
        floor = wall("true", options)
        ours = wall(script, options)
        rows.append((name, ours, floor, budget))
        print(f"{name}: {ours:.1f} s, empty boot {floor:.1f} s", file=sys.stderr)
    print(f"{'bed':10} {'wall s':>8} {'empty s':>8} {'program s':>9} {'ratio':>6} {'budget s':>8}")
    for name, ours, floor, budget in rows:
        print(
            f"{name:10} {ours:8.1f} {floor:8.1f} {ours - floor:9.1f} {ours / floor:5.1f}x "
            f"{budget:8.0f}  {'met' if ours <= budget else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
