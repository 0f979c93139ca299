"""Where the repository, the default bundle and its samples are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


DEFAULT_BUNDLE = ROOT / "models" / "default"


SAMPLES = ROOT / "models" / "samples"


TAGS_BUNDLE = ROOT / "models" / "fashion-tags"
