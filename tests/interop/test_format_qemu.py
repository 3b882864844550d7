# SPDX-License-Identifier: MIT
"""What qompr formats back into ``-object`` strings, real QEMU accepts and reads the same way.

For awkward property values (commas, spaces, ``=``, quotes, backslashes, non-ASCII), qompr
builds the object, formats it as key=value and as JSON, and the real ``qemu-system-x86_64``
creates an object from each with identical ``qom-get`` results.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.options import process
from qompr.options import to_json_string
from qompr.options import to_keyval
from tests._support import placeholders
from tests._support.qemu_run import Case
from tests._support.qemu_run import run_case

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.interop

# Names the corpus environment provides as links to a listening fake helper.
ALIASES = ["a,b.sock", "a,,b.sock", "a b.sock", "\u00e9t\u00e9.sock", "a=b.sock", "x\\y.sock",
           "'q'.sock", '"dq".sock', "link.sock"]  # fmt: skip


@pytest.fixture(scope="module")
def tmp_env() -> Any:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed: run scripts/run-tests to install it")
    with placeholders.environment() as tmp:
        yield tmp


@pytest.mark.parametrize("alias", ALIASES)
def test_formatted_strings_make_the_same_object_in_qemu(tmp_env: Path, alias: str) -> None:
    path = str(tmp_env / alias)
    tree = qompr.new_tree(load_entrypoints=False)
    spec = json.dumps({"qom-type": "pr-manager-helper", "id": "h0", "path": path})
    objects = process(tree, [spec], complete=False)
    assert isinstance(objects, list)
    (obj,) = objects
    assert tree.qom_get("/objects/h0", "path") == path
    for spec in (to_keyval(obj), to_json_string(obj)):
        case = Case(group="format", name=alias, args=(spec,))
        result: Any = run_case(case, tmp_env, abs(hash(spec)) % 10000, 20.0)
        assert result["exit_status"] == 0, result["stderr"]
        assert result["stderr"] == ""
        (recorded,) = result["objects"]
        values = {p["name"]: p.get("value") for p in recorded["properties"]}
        # run_case records paths with the temporary directory as @TMP@ again.
        assert values == {"path": f"@TMP@/{alias}", "type": "pr-manager-helper"}
