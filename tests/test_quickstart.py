# SPDX-License-Identifier: MIT
"""README's "Two nodes through one daemon": its five commands, run as written, print what the
README shows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Two nodes through one daemon"


def _blocks() -> tuple[list[str], str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    output = re.search(r"```console\n(.*?)```", section, re.S)
    assert commands is not None and output is not None
    return commands.group(1).splitlines(), output.group(1)


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    commands, shown = _blocks()
    assert len(commands) == 5
    daemon, *steps = commands
    assert daemon.endswith(" &")
    bindir = str(Path(sys.executable).parent)  # this installation's qompr and qompr-pr-helper
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    # The first command as written, with the shell's "&" done by Popen (to know its pid).
    proc = subprocess.Popen(
        ["sh", "-c", "exec " + daemon.removesuffix(" &")], cwd=tmp_path, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "qompr-demo.sock").exists():
            assert proc.poll() is None, "qompr-pr-helper exited"
            assert time.monotonic() < deadline, "qompr-pr-helper did not listen"
            time.sleep(0.05)
        outputs = []
        for step in steps:
            done = subprocess.run(
                ["sh", "-c", step],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert (done.returncode, done.stderr) == (0, ""), step
            outputs.append(done.stdout)
        assert outputs[:3] == ["", "", ""]
        assert outputs[3] == shown
        # node1 was preempted: its next command hears of it, once.
        turs = ["qompr", "turs", "--helper", "qompr-demo.sock", "--initiator", "node1", "/dev/null"]
        done = subprocess.run(
            turs, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert (done.returncode, "Registrations preempted" in done.stderr) == (6, True)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
