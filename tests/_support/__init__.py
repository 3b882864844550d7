# SPDX-License-Identifier: MIT
"""Helpers only the test suite uses (never installed).  What plugin writers need lives in
the public ``qompr.testing`` instead.

Python helpers are modules here (``tests._support.placeholders`` ...); other files the suite
builds or runs are named below.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The LD_PRELOAD SG_IO stand-in sg_persist and ``qompr persist`` are compared through.
SGIO_SHIM_C = HERE / "sgio_shim.c"
