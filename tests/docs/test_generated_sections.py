"""docs/operations.md's measured figures are generated: each generated section is exactly what
its renderer makes of the committed results, no figure of a section is typed again in the
prose around it, and the sizing sum the doc shows is the one tests/deploy checks deploy/'s
memory limits against.

A stale section fails here; ``python -m bench.memory.memory_doc`` and
``python -m bench.soak.soak_doc`` rewrite them.
"""

from __future__ import annotations

import re

import pytest

from app.config.settings import Settings
from bench.harness.generated_docs import section_body
from bench.memory import memory_doc
from bench.memory.sizing_rule import MARGIN, needed_limit_bytes
from bench.soak import soak_doc
from tests.support import memory_sizing
from tests.support.repo_paths import ROOT

DOC = ROOT / "docs" / "operations.md"
RENDERED = {**memory_doc.committed_sections(), **soak_doc.committed_sections()}
# Decimals and numbers of four digits or more: the figures a reader would take as measured
# (three-digit integers are mostly HTTP statuses).
FIGURE = re.compile(r"(?<![\w.])(?:\d+\.\d+|\d{4,})(?![\d.])")
RULE = {f"{MARGIN:g}"}  # the sizing rule's margin, stated in prose and shown summed


def _prose(text: str) -> str:
    """``text`` without its generated sections (markers included)."""
    return re.sub(r"<!-- begin ([\w-]+) -->.*?<!-- end \1 -->", "", text, flags=re.S)


def test_the_renderers_cover_every_generated_section_of_the_doc() -> None:
    names = re.findall(r"<!-- begin ([\w-]+) -->", DOC.read_text(encoding="utf-8"))
    assert sorted(names) == sorted(RENDERED) == sorted(set(names))


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_the_section_is_what_the_committed_results_render(name: str) -> None:
    written = section_body(DOC.read_text(encoding="utf-8"), name)
    assert written == RENDERED[name].strip(), (
        f"docs/operations.md section {name!r} is stale: run python -m bench.memory.memory_doc "
        "and python -m bench.soak.soak_doc"
    )


def test_no_generated_figure_is_typed_again_in_the_prose() -> None:
    generated = set(FIGURE.findall("\n".join(RENDERED.values())))
    assert {"407.9", "1.04", "36.5", "0.05", "710.8"} <= generated  # the pattern finds them
    typed = set(FIGURE.findall(_prose(DOC.read_text(encoding="utf-8"))))
    assert sorted((typed & generated) - RULE) == []


def test_the_figure_pattern_tells_figures_from_names() -> None:
    found = FIGURE.findall("366.2 MB, 1.034x, 10185 x 200, MALLOC_ARENA_MAX=2, v1.2.3, =1048576")
    assert found == ["366.2", "1.034", "10185", "1048576"]


def test_the_doc_shows_the_sum_tests_deploy_checks() -> None:
    defaults = Settings.model_construct()
    terms = memory_sizing.worst_case_bytes(defaults, cuda=False)
    warm = memory_sizing.measured_warm_rss_bytes() / 1e6
    ours = memory_doc.sizing_terms_mb(warm, defaults)
    assert sum(ours.values()) * 1e6 == pytest.approx(sum(terms.values()), abs=4)
    needed_gb = needed_limit_bytes(terms) / 1e9
    assert f"= **{needed_gb:.2f} GB**" in section_body(DOC.read_text(), "memory-sizing")
