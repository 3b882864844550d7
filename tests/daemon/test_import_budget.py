# SPDX-License-Identifier: MIT
"""qompr-pr-helper's start-up budget, counted in modules, not in time (issue 14).

libvirt starts one helper per VM, so what it imports is paid per VM, in memory and in time to
a listening socket.  Each case runs the real start-up (options, executor, listening socket)
in a fresh interpreter and looks at the modules it had imported when serving would begin,
then after one request: serving must import nothing more (after the privilege drop the
interpreter may not be able to read its own library).  Timing is bench/helper.py's business.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: What the daemon never imports at start-up: the asyncio loop and the ssl it pulls in, thread
#: pools, entry points (plugins load only when named), the asyncio client, the command line,
#: the embedding and testing kits.
NEVER = {
    "asyncio",
    "ssl",
    "concurrent.futures",
    "importlib.metadata",
    "qompr.transport.aio",
    "qompr.managers._helper_aio",
    "qompr.cli",
    "qompr.embed",
    "qompr.testing",
}
#: What the default executor (SG_IO, no --backend) does not use either: the plugin machinery
#: and -object parsing, every manager package, the helper client, JSON, and the SCSI codecs
#: of CDBs, parameter lists and PR IN data (the protocol and the SG_IO executor pass those
#: bytes through); the user and group databases either, which only -u/-g with a name reads.
DEFAULT_ONLY = NEVER | {
    "argparse",
    "grp",
    "pwd",
    "json",
    "pluggy",
    "sqlite3",
    "qompr.hookspecs",
    "qompr.options",
    "qompr.plugins",
    "qompr.managers._direct",
    "qompr.managers._helper",
    "qompr.managers.emulated",
    "qompr.managers.multipath",
    "qompr.protocol.retry",
    "qompr.scsi._cdb",
    "qompr.scsi._params",
    "qompr.scsi._prin",
    "qompr.scsi._transport_id",
    "qompr.transport.sync",
}

#: The built-in manager packages: a --backend imports the one it names, and no other.
MANAGERS = {
    "qompr.managers._direct",
    "qompr.managers._helper",
    "qompr.managers.emulated",
    "qompr.managers.multipath",
}

_RUN = """
import os, socket, sys
from qompr.daemon import _server

def serve_one(self):
    ready = sorted(sys.modules)
    self.listener.setblocking(False)
    self.loop.add_reader(self.listener.fileno(), self._accept)
    client = socket.socket(socket.AF_UNIX)
    client.connect(self.listener.getsockname())
    self.loop.call_soon(self.loop.stop)
    self.loop.run()  # accepts and sends the handshake
    client.recv(4)
    client.sendall(bytes(4))
    fd = os.open(os.devnull, os.O_RDWR)
    cdb = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 255]).ljust(16, b"\\0")
    socket.send_fds(client, [cdb], [fd])
    self.loop._stop = False
    self.loop.call_later(0.5, self.loop.stop)
    self.loop.run()  # reads, executes and answers
    assert len(client.recv(8300)) >= 104
    served = sorted(sys.modules)
    import json
    with open(os.environ["MODULES_OUT"], "w") as out:
        json.dump({"ready": ready, "served": served}, out)
    self.listener.close()

_server.HelperServer.serve_forever = serve_one
# PRELUDE
from qompr.daemon.main import main
sys.exit(main(["qompr-pr-helper", "--keep-privileges", *sys.argv[1:]]))
"""


def start_up(tmp_path: Path, *argv: str, prelude: str = "") -> tuple[set[str], set[str]]:
    """(modules when serving would begin, modules after one request) of a daemon started
    with *argv*, after the statements *prelude* (which may patch the host's view)."""
    out = tmp_path / "modules.json"
    env = dict(os.environ, MODULES_OUT=str(out), QOMPR_LOAD_PLUGINS="")
    sock = str(tmp_path / "helper.sock")
    done = subprocess.run(
        [sys.executable, "-c", _RUN.replace("# PRELUDE", prelude), "-k", sock, *argv],
        env=env,
        check=False,
        timeout=60,
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    found = json.loads(out.read_text())
    return set(found["ready"]), set(found["served"])


def test_the_default_executor_imports_only_what_it_runs(tmp_path: Path) -> None:
    ready, served = start_up(tmp_path)
    assert "qompr.daemon._server" in ready
    assert ready & DEFAULT_ONLY == set()
    assert served - ready == set()  # serving imported nothing


def test_json_logging_imports_json_before_serving(tmp_path: Path) -> None:
    ready, served = start_up(tmp_path, "--log-format=json")
    assert "json" in ready
    assert ready & NEVER == set()
    assert served - ready == set()


def test_a_backend_loads_the_object_machinery_but_no_loop_or_entry_point(
    tmp_path: Path,
) -> None:
    # --backend builds its manager through -object parsing and the built-in types' plugin,
    # which registers the built-in manager types by name: only the one named is imported.
    # No event loop, no entry point.
    ready, served = start_up(tmp_path, "--backend", "pr-manager-emulated,id=emu")
    assert {"qompr.managers.emulated", "qompr.options"} <= ready
    assert ready & NEVER == set()
    assert ready & MANAGERS == {"qompr.managers.emulated"}
    assert served - ready == set()


def test_a_backend_imports_only_the_manager_type_it_names(tmp_path: Path) -> None:
    ready, _ = start_up(tmp_path, "--backend", "pr-manager-direct,id=d")
    assert ready & MANAGERS == {"qompr.managers._direct"}
    assert "sqlite3" not in ready


def test_a_user_or_group_name_is_looked_up_before_serving(tmp_path: Path) -> None:
    # The databases are read while the options are parsed, before the privilege drop (the
    # daemon may not read them afterwards), and the first request is still answered.
    ready, served = start_up(tmp_path, "-u", "root", "-g", "root")
    assert {"pwd", "grp"} <= ready
    assert ready & NEVER == set()
    assert served - ready == set()


#: A host with device-mapper (LVM) but without multipath-tools: /dev/mapper/control opens,
#: libmpathpersist does not load.
_LVM_HOST = """
from qompr.daemon import _backends
_backends.open_control = lambda: os.open(os.devnull, os.O_RDWR)
_backends._MULTIPATH_LIBRARY = "libqompr-test-missing.so.0"
"""


def test_without_libmpathpersist_the_multipath_manager_is_not_imported(tmp_path: Path) -> None:
    # It would stay imported for nothing (about 1.1 MB of every helper on such a host).
    ready, served = start_up(tmp_path, prelude=_LVM_HOST)
    assert ready & DEFAULT_ONLY == set()
    assert served - ready == set()
