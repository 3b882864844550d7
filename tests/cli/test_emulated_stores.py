# SPDX-License-Identifier: MIT
"""``qompr emulated`` on every store: ``clear`` of one logical unit, and list/show/
power-cycle/clear/schema on a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qompr.cli.main import main
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import Store
from qompr.managers.emulated import StoreOptions
from qompr.managers.emulated import open_store
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import SenseCode

from .test_emulated import ENGINE
from .test_emulated import A
from .test_emulated import B
from .test_emulated import register


def reserve(store: Store, lu: str, nexus: Nexus, key: int) -> None:
    data = PrOutParameters(reservation_key=key).to_bytes()
    cdb = PrOutCdb(PrOutAction.RESERVE, 0, 1, len(data)).to_bytes()
    outcome = store.transact(lu, lambda state: ENGINE.execute(state, nexus, cdb, data))
    assert outcome.result is not None and outcome.result.ok


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        where = str(tmp_path / "pr.db")
    else:
        pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")
        where = request.getfixturevalue("postgres_uri")
        assert main(["emulated", "schema", "--apply", where]) == 0
    store = open_store(where, StoreOptions())
    register(store, "disk1", A, 0x1)
    register(store, "disk1", B, 0x2)
    reserve(store, "disk1", A, 0x1)
    register(store, "disk2", A, 0x3, aptpl=True)
    store.close()
    return where


def _show(state: str, capsys: pytest.CaptureFixture[str], lu: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["emulated", "show", "--json", "--lu", lu, state]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert isinstance(entry, dict)
    return entry


def test_list_show_power_cycle_clear(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["emulated", "list", state]) == 0
    assert capsys.readouterr().out == (
        "disk1: 2 registrations, reserved, PRgeneration=0x2, APTPL=0\n"
        "disk2: 1 registrations, not reserved, PRgeneration=0x1, APTPL=1\n"
    )
    entry = _show(state, capsys, "disk1")
    assert entry["reservation"] == {
        "type": "WE",
        "scope": 0,
        "holder": "A",
        "holder-target-port": 1,
    }
    # An administrator's clear: registrations and reservation go, registrants are told.
    assert main(["emulated", "clear", "--lu", "disk1", state]) == 0
    entry = _show(state, capsys, "disk1")
    assert entry["registrations"] == []
    assert entry["reservation"] is None
    assert entry["generation"] == 3
    preempted = SenseCode.RESERVATIONS_PREEMPTED
    code = f"{preempted.key:x}/{preempted.asc:02x}/{preempted.ascq:02x}"
    assert [(u["initiator"], u["sense"]) for u in entry["unit-attentions"]] == [  # type: ignore[attr-defined]
        ("A", [code]),
        ("B", [code]),
    ]
    # disk2 untouched; a power cycle keeps its APTPL registration and tells its nexus.
    assert main(["emulated", "power-cycle", "--lu", "disk2", state]) == 0
    entry = _show(state, capsys, "disk2")
    assert [r["key"] for r in entry["registrations"]] == ["0x3"]  # type: ignore[attr-defined]
    power_on = f"{POWER_ON_OCCURRED.key:x}/29/01"
    assert entry["unit-attentions"] == [{"initiator": "A", "target-port": 1, "sense": [power_on]}]


def test_clear_names_one_existing_logical_unit(
    state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["emulated", "clear", state])  # --lu is required
    capsys.readouterr()
    assert main(["emulated", "clear", "--lu", "nope", state]) != 0
    assert "No logical unit 'nope'" in capsys.readouterr().err


def test_schema_prints_and_refuses_what_is_not_postgresql(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")
    assert main(["emulated", "schema", "postgresql://u:secret@db.example/pr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- pr-manager-emulated's persistent-reservation state")
    assert "CREATE TABLE IF NOT EXISTS qompr.lu" in out
    assert main(["emulated", "schema", str(tmp_path / "pr.db")]) != 0
    assert "is not a postgresql:// URI" in capsys.readouterr().err


def test_a_database_without_schema_is_refused(
    postgres_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")
    capsys.readouterr()
    assert main(["emulated", "list", postgres_uri]) != 0
    err = capsys.readouterr().err
    assert "has no qompr schema" in err
    assert "qompr emulated schema --apply" in err
