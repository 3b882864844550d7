# SPDX-License-Identifier: MIT
"""``qompr emulated list|show|power-cycle`` on an SQLite state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qompr.cli.main import main
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import Engine
from qompr.managers.emulated import SqliteStore
from qompr.managers.emulated import Store
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters

ENGINE = Engine()
A, B = Nexus("A"), Nexus("B")


def register(store: Store, lu: str, nexus: Nexus, key: int, *, aptpl: bool = False) -> None:
    data = PrOutParameters(sa_key=key, aptpl=aptpl).to_bytes()
    cdb = PrOutCdb(PrOutAction.REGISTER, 0, 0, len(data)).to_bytes()
    outcome = store.transact(lu, lambda state: ENGINE.execute(state, nexus, cdb, data))
    assert outcome.result is not None and outcome.result.ok


@pytest.fixture
def state(tmp_path: Path) -> str:
    path = str(tmp_path / "pr.db")
    store = SqliteStore(path)
    register(store, "disk1", A, 0x1)
    register(store, "disk1", B, 0x2)
    register(store, "disk2", A, 0x3, aptpl=True)
    store.close()
    return path


def test_list_and_show(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulated", "list", state]) == 0
    assert capsys.readouterr().out == (
        "disk1: 2 registrations, not reserved, PRgeneration=0x2, APTPL=0\n"
        "disk2: 1 registrations, not reserved, PRgeneration=0x1, APTPL=1\n"
    )
    assert main(["emulated", "list", "--json", state]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["lu"], r["registrations"]) for r in rows] == [("disk1", 2), ("disk2", 1)]
    assert main(["emulated", "show", "--lu", "disk1", state]) == 0
    assert capsys.readouterr().out == (
        "disk1: PRgeneration=0x2, APTPL=0\n"
        "  registered A port 1 key=0x1\n"
        "  registered B port 1 key=0x2\n"
        "  no reservation\n"
    )
    assert main(["emulated", "show", "--json", state]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["lu"] for e in entries] == ["disk1", "disk2"]
    assert entries[0]["registrations"][1]["key"] == "0x2"


def test_power_cycle_one_and_all(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulated", "power-cycle", "--lu", "disk1", state]) == 0
    store = SqliteStore(state, join=False)
    snap = store.snapshot("disk1")
    assert snap.registrations == ()
    assert snap.unit_attentions == ((A, (POWER_ON_OCCURRED,)), (B, (POWER_ON_OCCURRED,)))
    assert store.snapshot("disk2").keys == (0x3,)
    assert store.snapshot("disk2").unit_attentions == ()
    store.close()
    assert main(["emulated", "power-cycle", state]) == 0
    store = SqliteStore(state, join=False)
    assert store.snapshot("disk2").keys == (0x3,)  # APTPL
    assert store.snapshot("disk2").generation == 0
    assert store.snapshot("disk2").unit_attentions == ((A, (POWER_ON_OCCURRED,)),)
    store.close()
    assert main(["emulated", "show", "--lu", "disk2", state]) == 0
    assert "  unit attention for A port 1: 6/29/01\n" in capsys.readouterr().out


def test_errors(tmp_path: Path, state: str, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.db")
    assert main(["emulated", "list", missing]) == 1
    assert capsys.readouterr().err == f"qompr: PR state file '{missing}' does not exist\n"
    assert not Path(missing).exists()
    assert main(["emulated", "power-cycle", "--lu", "nope", state]) == 1
    assert capsys.readouterr().err == f"qompr: No logical unit 'nope' in '{state}'\n"
