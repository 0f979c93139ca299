"""Print the project's requirements from pyproject.toml, one per line, for `pip install -r`.

The image installs its dependencies from this list before it copies the code, so that a code
change does not invalidate the dependency layer. Standard library only: it runs in the bare
base image. Usage: ``python3 image_requirements.py pyproject.toml [--extra NAME]...
[--exclude NAME]...`` (``--exclude onnxruntime`` for the GPU image, which installs
onnxruntime-gpu in its place).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return _normalise(match.group(1))


def requirements(pyproject: Path, extras: list[str], exclude: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"unknown extras: {', '.join(unknown)}")
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted.extend(optional[extra])
    excluded = {_normalise(name) for name in exclude}
    return [req for req in dict.fromkeys(wanted) if requirement_name(req) not in excluded]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, args.extra, args.exclude)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"image_requirements: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
