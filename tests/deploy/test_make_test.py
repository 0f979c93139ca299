"""`make test` (the README's test command) runs every test folder, the service's without torch."""

from __future__ import annotations

import re

from tests.support.repo_paths import ROOT

SERVICE_FOLDERS = {"app", "deploy", "docs", "e2e"}


def pytest_lines() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target is not None, "the Makefile has no test target"
    return [line for line in target.group(1).splitlines() if "pytest" in line]


def folders(line: str) -> set[str]:
    return set(re.findall(r"\btests/(\w+)", line))


def test_every_test_folder_is_run_once() -> None:
    with_tests = {
        path.parent.relative_to(ROOT / "tests").parts[0]
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.parent != ROOT / "tests"
    }
    run = [folder for line in pytest_lines() for folder in folders(line)]
    assert sorted(run) == sorted(set(run)), f"a folder runs twice: {run}"
    assert set(run) == with_tests
    assert not list((ROOT / "tests").glob("test_*.py")), "tests/ itself holds no test modules"


def test_the_service_tests_run_without_torch() -> None:
    blocked = [line for line in pytest_lines() if "--without-torch" in line]
    assert len(blocked) == 1
    assert folders(blocked[0]) == SERVICE_FOLDERS
