# SPDX-License-Identifier: MIT
"""``python -m qompr``: the ``qompr`` command."""

import sys

from qompr.cli.main import main

sys.exit(main())
