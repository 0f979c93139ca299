"""What the suites' doc renderers share: reading a generated section back, checking that a
document is up to date, the ``[--check]`` command line of a renderer, and the options a
results file's recorded command was run with.

A generated section is the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
(``models.reporting.doc_sections``, which writes it); the prose around it is hand-written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.reporting.doc_sections import SectionError, replace_section


def section_body(text: str, name: str) -> str:
    """The body of the generated section ``name`` of ``text``, as written (stripped)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if stop < 0:
        raise SectionError(f"no section {begin} ... {end}")
    return text[start + len(begin) : stop].strip()


def stale_sections(path: Path, sections: Mapping[str, str]) -> list[str]:
    """The names of ``sections`` (name -> body) whose body in ``path`` differs."""
    text = path.read_text(encoding="utf-8")
    return [name for name, body in sections.items() if section_body(text, name) != body.strip()]


def write_sections(path: Path, sections: Mapping[str, str]) -> list[str]:
    """Rewrite each of ``sections`` in ``path``; the names of those that changed."""
    changed = stale_sections(path, sections)
    for name in changed:
        replace_section(path, name, sections[name])
    return changed


def sections_main(
    prog: str,
    description: str,
    doc: Path,
    render: Callable[[], Mapping[str, str]],
    argv: Sequence[str] | None = None,
) -> int:
    """``prog [--check]``: rewrite ``doc``'s sections from ``render()``, or with ``--check``
    exit 1 (naming them) when any of them is stale."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a section is stale"
    )
    args = parser.parse_args(argv)
    sections = render()
    if args.check:
        stale = stale_sections(doc, sections)
        for name in stale:
            print(f"{doc}: section {name!r} is stale; run {prog}", file=sys.stderr)
        return 1 if stale else 0
    changed = write_sections(doc, sections)
    print(f"{doc}: rewrote {changed or 'nothing'} of {list(sections)}")
    return 0


def recorded_options(command: str, option: str) -> list[str]:
    """Every value given to ``option`` (``--name VALUE`` or ``--name=VALUE``) in a recorded
    command line, in order."""
    words = shlex.split(command)
    values = []
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            values.append(words[index + 1])
        elif word.startswith(option + "="):
            values.append(word.split("=", 1)[1])
    return values


def recorded_option(command: str, option: str, default: str) -> str:
    """The value ``option`` had in a recorded command line (the last one given), else
    ``default`` (the runner's default for it)."""
    values = recorded_options(command, option)
    return values[-1] if values else default


@dataclass(frozen=True)
class GeneratedDoc:
    """The generated sections of one doc: ``sections()`` renders them from the committed
    results; ``write`` rewrites the stale ones, ``main`` is the suite's ``[--check]`` command."""

    prog: str
    description: str
    path: Path
    sections: Callable[[], Mapping[str, str]]

    def write(self) -> list[str]:
        """Rewrite the stale sections; their names."""
        return write_sections(self.path, self.sections())

    def main(self, argv: Sequence[str] | None = None) -> int:
        return sections_main(self.prog, self.description, self.path, self.sections, argv)
