"""bench.harness.generated_docs: reading sections back, finding stale ones, rewriting only
those, the renderers' ``--check`` command line, and options read from recorded commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.generated_docs import (
    recorded_option,
    recorded_options,
    section_body,
    sections_main,
    stale_sections,
    write_sections,
)
from models.reporting.doc_sections import SectionError

DOC = """# Title

Prose before, 1.5 typed.

<!-- begin one -->
old body
<!-- end one -->

Between.

<!-- begin two -->
current
<!-- end two -->
"""


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(DOC, encoding="utf-8")
    return path


def test_section_body_reads_between_the_markers() -> None:
    assert section_body(DOC, "one") == "old body"
    assert section_body(DOC, "two") == "current"
    with pytest.raises(SectionError):
        section_body(DOC, "three")
    with pytest.raises(SectionError):
        section_body("<!-- begin one --> no end", "one")


def test_only_changed_sections_are_stale_and_rewritten(doc: Path) -> None:
    sections = {"one": "new body\n", "two": "current"}
    assert stale_sections(doc, sections) == ["one"]
    assert write_sections(doc, sections) == ["one"]
    text = doc.read_text(encoding="utf-8")
    assert section_body(text, "one") == "new body"
    assert "Prose before, 1.5 typed." in text
    assert "Between." in text
    assert stale_sections(doc, sections) == []
    assert write_sections(doc, sections) == []


def test_check_exits_1_when_stale_and_changes_nothing(
    doc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def render() -> dict[str, str]:
        return {"one": "new body", "two": "current"}

    assert sections_main("prog", "d", doc, render, ["--check"]) == 1
    assert doc.read_text(encoding="utf-8") == DOC
    assert "section 'one' is stale" in capsys.readouterr().err
    assert sections_main("prog", "d", doc, render, []) == 0
    assert section_body(doc.read_text(encoding="utf-8"), "one") == "new body"
    assert sections_main("prog", "d", doc, render, ["--check"]) == 0


def test_recorded_options() -> None:
    command = (
        "python -m bench.memory.decode_memory --baseline-env A=1 --settle-s 2 "
        "--baseline-env=B='x y' --settle-s=3"
    )
    assert recorded_options(command, "--baseline-env") == ["A=1", "B=x y"]
    assert recorded_option(command, "--settle-s", "5") == "3"
    assert recorded_option(command, "--latency-rounds", "6") == "6"
    assert recorded_options("python -m x --out", "--out") == []
