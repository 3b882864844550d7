# SPDX-License-Identifier: MIT
"""qompr's test suite.

The tree mirrors ``src/qompr`` (``tests/managers/emulated`` tests ``qompr.managers.emulated``,
``tests/linux`` tests ``qompr.linux``, ...).  ``tests/_support`` holds what only the suite
uses, ``tests/corpus`` is recorded from real QEMU and ``tests/vm`` boots the VM test bed.
Every directory is a package, so test modules import shared helpers as ``tests._support.X``
like any other module (pytest puts the checkout's root on ``sys.path``).
"""
