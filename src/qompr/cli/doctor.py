# SPDX-License-Identifier: MIT
"""``qompr doctor``: is this host ready for persistent reservations through qompr?

Each check says what it found and, when something is wrong, what to do about it.  Today the
checks are multipath's (``libmpathpersist`` loads, multipathd answers, ``reservation_key`` is
set in multipath.conf); the exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from qompr.managers.multipath import DoctorCheck
from qompr.managers.multipath import doctor_checks

__all__ = ["add_parser", "run_doctor"]


def _as_json(check: DoctorCheck) -> dict[str, Any]:
    return {"name": check.name, "ok": check.ok, "detail": check.detail, "hint": check.hint}


def run_doctor(args: argparse.Namespace) -> int:
    checks = doctor_checks(args.device, config=args.multipath_conf)
    if args.json:
        print(json.dumps([_as_json(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
            if not check.ok and check.hint:
                print(f"       hint: {check.hint}")
    return 0 if all(c.ok for c in checks) else 1


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check the host's multipath set-up for PR")
    doctor.add_argument("--device", metavar="PATH", help="a multipath map, /dev/mapper/NAME")
    doctor.add_argument(
        "--multipath-conf", metavar="PATH", default="/etc/multipath.conf",
        help="the multipath.conf to read (default: %(default)s)",
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=run_doctor)
