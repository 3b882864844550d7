# SPDX-License-Identifier: MIT
"""Every Python code block in README.md and docs/ type-checks under ``mypy --strict``.

A document's blocks are read as one program, in order (a later block may use what an earlier
one defined, as the reader does), each line at its own line number so that mypy's messages
point into the Markdown.  A block opts out only with a marker on the line before its fence
that says why::

    <!-- snippet: skip because it needs ... -->
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs
import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
_SKIP = re.compile(r"^<!--\s*snippet:\s*skip\b(?P<reason>.*?)-->\s*$")
_PYTHON = {"python", "py", "python3"}


@attrs.frozen
class Snippet:
    """One fenced Python block: where it starts (the first code line, 1-based) and its text."""

    document: Path
    line: int
    code: str
    skip_reason: str | None


def snippets(document: Path) -> list[Snippet]:
    """The Python blocks of *document*, in order."""
    lines = document.read_text(encoding="utf-8").splitlines()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None or not m.group("lang"):
            i += 1
            continue
        start, indent = i, m.group("indent")
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        if m.group("lang") in _PYTHON:
            body = [line.removeprefix(indent) for line in lines[start + 1 : i]]
            before = lines[start - 1] if start > 0 else ""
            skip = _SKIP.match(before)
            reason = skip.group("reason").strip() if skip else None
            out.append(Snippet(document, start + 2, "\n".join(body), reason))
        i += 1
    return out


def program(document: Path) -> str:
    """The document's checked blocks as one module, each line at its Markdown line number."""
    out: list[str] = []
    for snippet in snippets(document):
        if snippet.skip_reason is not None:
            continue
        out += [""] * (snippet.line - 1 - len(out))
        out += snippet.code.splitlines()
    return "\n".join(out) + "\n"


def _module_name(document: Path) -> str:
    return "snippet_" + re.sub(r"\W", "_", str(document.relative_to(ROOT)))


CHECKED = [d for d in DOCUMENTS if any(s.skip_reason is None for s in snippets(d))]


@pytest.fixture(scope="session")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One ``mypy --strict`` run over every document's program; its messages per document."""
    where = tmp_path_factory.mktemp("snippets")
    files: dict[str, Path] = {}
    for document in CHECKED:
        path = where / f"{_module_name(document)}.py"
        path.write_text(program(document), encoding="utf-8")
        files[path.name] = document
    # The example plugin packages, as the project's own mypy run sees them.
    plugins = [str(src) for src in sorted((ROOT / "plugins").glob("*/src"))]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MYPYPATH", os.pathsep.join(plugins))
        stdout, stderr, _ = mypy_api.run(
            [
                "--strict",
                "--config-file", str(ROOT / "pyproject.toml"),
                "--cache-dir", str(where / ".mypy_cache"),
                "--no-error-summary", "--show-error-codes",
                *(str(where / name) for name in files),
            ]
        )  # fmt: skip
    assert not stderr, stderr
    report: dict[str, list[str]] = {str(d.relative_to(ROOT)): [] for d in CHECKED}
    for line in stdout.splitlines():
        name, _, rest = line.partition(":")
        source = files.get(Path(name).name)
        assert source is not None, line
        report[str(source.relative_to(ROOT))].append(f"{source.relative_to(ROOT)}:{rest}")
    return report


def test_the_documents_have_python_snippets() -> None:
    names = {str(d.relative_to(ROOT)) for d in CHECKED}
    assert {"README.md", "docs/plugins/authoring.md"} <= names


@pytest.mark.parametrize("document", [str(d.relative_to(ROOT)) for d in CHECKED])
def test_snippets_type_check(document: str, mypy_report: dict[str, list[str]]) -> None:
    errors = [line for line in mypy_report[document] if ": note:" not in line]
    assert not errors, "\n".join(mypy_report[document])


def test_an_opt_out_says_why() -> None:
    for document in DOCUMENTS:
        for snippet in snippets(document):
            if snippet.skip_reason is not None:
                assert len(snippet.skip_reason.split()) >= 4, (
                    f"{document.relative_to(ROOT)}:{snippet.line}: say why the block is skipped"
                )


def test_the_extractor_keeps_line_numbers_and_honours_opt_outs(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# T\n\n```python\nx: int = 1\n```\n\ntext\n\n"
        "<!-- snippet: skip because it is pseudo-code on purpose -->\n```python\ny = ?\n```\n"
        "- item\n\n  ```py\n  z = x\n  ```\n```sh\nls\n```\n",
        encoding="utf-8",
    )
    found = snippets(doc)
    assert [(s.line, s.code, s.skip_reason) for s in found] == [
        (4, "x: int = 1", None),
        (11, "y = ?", "because it is pseudo-code on purpose"),
        (16, "z = x", None),
    ]
    assert program(doc).splitlines()[3] == "x: int = 1"
    assert program(doc).splitlines()[15] == "z = x"
    assert "y = ?" not in program(doc)
