"""Generated sections of hand-written docs: the text between ``<!-- begin NAME -->`` and
``<!-- end NAME -->`` is replaced by a tool's output; the prose around it is left alone."""

from __future__ import annotations

import re
from pathlib import Path


class SectionError(ValueError):
    """The document lacks the section's markers."""


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the generated section ``name`` of ``path`` with ``body``."""
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise SectionError(f"{path} has no section {begin} ... {end}")
    replacement = f"{begin}\n{body.strip()}\n{end}"
    path.write_text(pattern.sub(lambda _: replacement, text, count=1), encoding="utf-8")
