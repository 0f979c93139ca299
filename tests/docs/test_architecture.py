"""docs/architecture.md names only files, functions and classes that exist, and the import
rules it states hold for the code."""

from __future__ import annotations

import ast
import re

import pytest

from tests.support.repo_paths import ROOT as REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
CHECKED_ROOTS = ("app", "models", "bench", "tests")
_ROOTS = "|".join(CHECKED_ROOTS)
_PATH = re.compile(r"(?<![\w./-])((?:" + _ROOTS + r")/[\w./-]*[\w/])")
_PATH_AND_NAME = re.compile(r"`((?:" + _ROOTS + r")/[\w/]+\.py)`\s+`([A-Za-z_][\w.]*)`")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_architecture_names_only_paths_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    paths = sorted(set(_PATH.findall(text)))
    assert len(paths) > 50  # the pattern still finds them
    missing = [path for path in paths if not (REPO_ROOT / path).exists()]
    assert missing == [], f"docs/architecture.md names paths that do not exist: {missing}"
    links = [link for link in _LINK.findall(text) if "://" not in link]
    broken = [link for link in links if not (ARCHITECTURE.parent / link).exists()]
    assert broken == [], f"docs/architecture.md links to files that do not exist: {broken}"


def _defined(tree: ast.Module, dotted: str) -> bool:
    """Whether ``dotted`` (``name`` or ``Class.member``) is defined at the top of ``tree``."""
    body: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        found = None
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name == part:
                    found = node
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == part for t in targets):
                    found = node
        if found is None:
            return False
        body = found.body if isinstance(found, ast.ClassDef) else []
    return True


def test_architecture_names_only_functions_and_classes_that_exist() -> None:
    pairs = sorted(set(_PATH_AND_NAME.findall(ARCHITECTURE.read_text(encoding="utf-8"))))
    assert len(pairs) > 30
    trees: dict[str, ast.Module] = {}
    wrong = []
    for path, name in pairs:
        if path not in trees:
            trees[path] = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
        if not _defined(trees[path], name):
            wrong.append(f"{path} {name}")
    assert wrong == [], f"docs/architecture.md names what these files do not define: {wrong}"


def _imports(folder: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in the Python files under ``folder``."""
    found = []
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith(".venv") or "/.venv" in relative:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(relative, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((relative, node.module))
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("app", ("models", "bench", "tests")),
        ("models", ("bench", "tests")),
        ("bench", ("models.recipes", "tests.app", "tests.models", "tests.bench", "tests.e2e")),
        (
            "tests/support",
            ("tests.app", "tests.models", "tests.bench", "tests.deploy", "tests.e2e"),
        ),
    ],
)
def test_architecture_import_directions(folder: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{path} imports {module}"
        for path, module in _imports(folder)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    ]
    assert wrong == [], f"docs/architecture.md, Layers: {wrong}"


def test_no_test_module_is_imported() -> None:
    """Shared builders and fakes live in tests/support or fixtures, never in a test module."""
    wrong = [
        f"{path} imports {module}"
        for folder in ("tests", "bench")
        for path, module in _imports(folder)
        if module.startswith("tests.")
        and module.rsplit(".", 1)[-1].startswith(("test_", "conftest"))
    ]
    assert wrong == []


# app/'s packages, bottom first (docs/architecture.md, "Inside app/"): a module imports only its
# own layer and those below it.
APP_LAYERS = (
    ("app.errors", "app.config"),
    ("app.bundle", "app.preprocess", "app.memory"),
    ("app.core",),
    ("app.observability", "app.workers"),
    ("app.asgi",),
    ("app.rest", "app.oip", "app.oip_grpc"),
    ("app.main", "app.server", "app.cli", "app.__main__", "app.scoring"),
)


def _layer(module: str) -> int | None:
    for index, names in enumerate(APP_LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return index
    return None


def _module_of(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_every_app_module_is_in_a_layer() -> None:
    modules = {_module_of(path) for path, _ in _imports("app")}
    unplaced = sorted(m for m in modules if _layer(m) is None and m != "app")
    assert unplaced == [], f"add these to APP_LAYERS and docs/architecture.md: {unplaced}"


def test_app_imports_go_down_the_layers() -> None:
    wrong = []
    for path, imported in _imports("app"):
        if not imported.startswith("app."):
            continue
        importer, target = _layer(_module_of(path)), _layer(imported)
        if importer is not None and target is not None and target > importer:
            wrong.append(f"{path} imports {imported}")
    assert wrong == [], f"docs/architecture.md, Inside app/: {wrong}"


def test_no_app_module_imports_itself_through_others() -> None:
    edges: dict[str, set[str]] = {}
    for path, imported in _imports("app"):
        if imported.startswith("app."):
            edges.setdefault(_module_of(path), set()).add(imported)
    cycles = []
    for start in edges:
        seen, stack = set(), list(edges[start])
        while stack:
            module = stack.pop()
            if module == start:
                cycles.append(start)
                break
            if module not in seen:
                seen.add(module)
                stack.extend(edges.get(module, ()))
    assert cycles == [], f"modules of app/ in an import circle: {sorted(cycles)}"
