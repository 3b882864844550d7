# SPDX-License-Identifier: MIT
"""``qompr persist``: sg_persist's PERSISTENT RESERVE IN/OUT command, through any qompr manager.

The command line, the text on stdout and stderr and the exit statuses are those of sg3_utils'
``sg_persist`` (version 0.67, sg3_utils 1.46, the one Debian and Ubuntu ship), so scripts and
people used to it need not learn anything new.  Three backends run the command:

* ``--device PATH`` (or a plain ``DEVICE`` operand) alone: the CDB goes straight to the device
  with the ``SG_IO`` ioctl, as sg_persist sends it (with its standard INQUIRY first unless
  ``-n``);
* ``--helper SOCKET``: through a running qemu-pr-helper (a ``pr-manager-helper`` object);
* ``--object SPEC``: through a manager created from a QEMU ``--object`` string, e.g.
  ``pr-manager-emulated,id=emu0,state=/var/lib/qompr/pr.db``; ``--initiator`` and
  ``--target-port`` give the I_T nexus the command arrives on.

With a manager the DEVICE is opened and its file descriptor handed to
:meth:`~qompr.managers.PRManager.execute`; there is no INQUIRY (a manager runs only PERSISTENT
RESERVE commands), so the output starts as ``sg_persist -n`` output does.  ``--json`` prints a
machine-readable result on stdout instead of the text.

What is reproduced from sg3_utils (the code re-implemented here; the user-visible strings —
the exit-status texts and the ASC/ASCQ wordings, themselves from T10's list — are sg3_utils'
own, reproduced so the output matches; sg3_utils is BSD-licensed, (c) Douglas Gilbert):

* GNU ``getopt_long`` parsing (:mod:`qompr._getopt`) with sg_persist's option table
  (abbreviated long options, clustered short options, its error messages, and its exit
  status 0 after an unknown option);
* ``sscanf("%x")`` for keys, types and ports (hex, optional ``0x``, anything after the digits
  ignored, so ``12h`` is 12h), ``sg_get_num`` for ``--maxlen``;
* the TransportID forms of ``-X`` (hex bytes, ``sas,``/``fcp,``/``spi,``/``sbp,``/``srp,``/
  ``iqn.``, ``file=NAME`` and ``-`` for stdin) and the bytes sent for them;
* the decoding of the four PR IN responses, ``--hex`` dumps, TransportID and sense texts,
  and the exit statuses of sg3_utils(8) (24 for RESERVATION CONFLICT, 5 for ILLEGAL REQUEST,
  6 for UNIT ATTENTION, 50 + errno for OS errors, ...).

Deliberate differences: messages name ``qompr persist`` instead of ``sg_persist``; a transport
(host or driver) error of ``SG_IO`` exits with 35 rather than being taken for success; a
status other than those sg3_utils names exits with 99; and when the allocation length cuts a
READ KEYS list (``-m 20`` with three keys), sg_persist 0.67 prints ADDITIONAL LENGTH / 8 keys,
reading past the end of its response buffer (heap bytes: ``0x1110000000000000`` on LIO in
tests/vm/test_persist.py), where qompr persist prints the keys within max(allocation length,
24) bytes, the bytes the device did not send read as zeros.

The modules, one concern each: :mod:`~qompr.cli.persist.options` (the command line),
:mod:`~qompr.cli.persist.transport_ids` (``-X``), :mod:`~qompr.cli.persist.prout` (PR OUT
parameter lists), :mod:`~qompr.cli.persist.prin` (PR IN data as text),
:mod:`~qompr.cli.persist.report` (``--json``) and :mod:`~qompr.cli.persist.session` (the run);
what sg_turs shares with it (numbers, dumps, sense and exit texts, the pass-through) is in
:mod:`qompr.cli.sglib`.
"""

from qompr.cli.persist.session import add_parser as add_parser
from qompr.cli.persist.session import run as run

__all__ = ["add_parser", "run"]
