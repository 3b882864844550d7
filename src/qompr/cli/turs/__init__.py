# SPDX-License-Identifier: MIT
"""``qompr turs``: sg_turs's TEST UNIT READY, through any qompr manager.

Pacemaker's ``fence_scsi`` runs ``sg_turs DEVICE`` before its PERSISTENT RESERVE commands, so
that a pending unit attention (a power cycle, registrations preempted) is reported, and
cleared, by a command whose failure it ignores, not by the PR IN it relies on.
``qompr turs`` gives the same through every backend ``qompr persist`` has: the device with
SG_IO, or a manager from ``--object`` (``pr-manager-emulated`` reports and clears a pending
unit attention as Linux LIO does) on the I_T nexus ``--initiator`` names.  ``--helper`` is
refused for now: qemu-pr-helper's protocol carries only PERSISTENT RESERVE IN and OUT.

The options (both of sg_turs's syntaxes), the text on stdout and stderr, and the exit
statuses are those of sg_turs 3.48 (sg3_utils 1.46), written anew; the usage text is qompr's
own.  As in ``qompr persist``, a transport error exits with 35 and an unnamed SCSI status with
99, where sg3_utils 1.46 takes both for success.

The modules: :mod:`~qompr.cli.turs.options` (the command line) and
:mod:`~qompr.cli.turs.session` (the run); sense, exit texts and the pass-through verdict are
:mod:`qompr.cli.sglib`'s.
"""

from qompr.cli.turs.session import add_parser as add_parser
from qompr.cli.turs.session import run as run

__all__ = ["add_parser", "run"]
