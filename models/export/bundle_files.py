"""Writing a new bundle directory safely: output checks, staging, linking unchanged files.

Shared by the tools that derive a bundle from another one (``train-head``, ``quantize-bundle``);
torch-free, so a tool that does not train imports nothing heavy through it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """The output directory cannot be written (it exists and ``--force`` was not given...)."""


def check_output(out: Path, base_bundle: Path | None, force: bool, label: str = "--out") -> None:
    """Fail early, before any work, if ``out`` cannot receive the bundle (errors name the
    output as ``label``: the option or argument the user gave it with). ``base_bundle``: the
    bundle the new one derives from, if any."""
    if base_bundle is not None and out.resolve() == base_bundle.resolve():
        raise OutputError(f"{label} {out} is the base bundle; write the new bundle elsewhere")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{label} {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(f"{label} {out} is not empty; pass --force to replace it")


@contextmanager
def staged_bundle(
    out: Path, base_bundle: Path | None, force: bool, label: str = "--out"
) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``out``, else it is removed."""
    check_output(out, base_bundle, force, label)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = out.parent / f".{out.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
        check_output(out, base_bundle, force, label)  # nothing appeared meanwhile
        old = out.parent / f".{out.name}.old-{tag}"
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` (symlinks resolved) to ``target`` (same file system), else copy it.

    Resolving first matters: ``link`` on a symlink links the symlink itself, and a relative
    one would then point elsewhere from the new bundle."""
    target.parent.mkdir(parents=True, exist_ok=True)
    real = source.resolve(strict=True)
    try:
        os.link(real, target)
    except OSError:
        shutil.copy2(real, target)
