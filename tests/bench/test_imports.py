"""bench's import graph, read from the source: no import cycle, no recipe code, layers kept
(the harness imports no suite; a suite imports only the harness and itself), and one
statistics module."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import bench

BENCH_DIR = Path(bench.__file__).resolve().parent
SKIPPED_DIRS = {".venvs", ".cache", "results", "__pycache__"}


def bench_modules() -> dict[str, Path]:
    """Every module of the bench package, by dotted name."""
    modules = {}
    for path in sorted(BENCH_DIR.rglob("*.py")):
        relative = path.relative_to(BENCH_DIR.parent)
        if SKIPPED_DIRS & set(relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _dynamic_imports(tree: ast.AST) -> Iterator[str]:
    """Names given as literals to importlib.import_module(...) or __import__(...)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func, first = node.func, node.args[0]
        named = isinstance(func, ast.Name) and func.id == "__import__"
        attribute = isinstance(func, ast.Attribute) and func.attr == "import_module"
        if (named or attribute) and isinstance(first, ast.Constant):
            yield str(first.value)


def imported_names(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, at module level or inside functions, as absolute dotted
    names; ``from X import y`` gives both X and X.y (y may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set(_dynamic_imports(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports."""
    modules = bench_modules()
    return {
        name: {other for other in imported_names(name, path) if other in modules} - {name}
        for name, path in modules.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    for start in sorted(graph):
        if start in state:
            continue
        path: list[str] = [start]
        stack: list[Iterator[str]] = [iter(sorted(graph[start]))]
        state[start] = "open"
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(following) == "open":
                return [*path[path.index(following) :], following]
            elif following not in state:
                state[following] = "open"
                path.append(following)
                stack.append(iter(sorted(graph.get(following, set()))))
    return None


def _suite(name: str) -> str:
    """bench.<suite>.<module> -> bench.<suite> ("bench" for the top package)."""
    return ".".join(name.split(".")[:2])


def test_the_cycle_finder_finds_planted_cycles_and_only_those() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_the_walk_reads_imports_of_every_kind(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import bench.harness.paths\n"
        "from bench.harness import statistics\n"
        "from . import benchmarks_doc\n"
        "def later():\n"
        "    from models.recipes.fashion_mnist.titles import describe\n"
        "    importlib.import_module('bench.soak.soak_benchmark')\n"
    )
    found = imported_names("bench.peers.probe", source)
    assert {
        "bench.harness.paths",
        "bench.harness.statistics",
        "bench.peers.benchmarks_doc",
        "models.recipes.fashion_mnist.titles",
        "bench.soak.soak_benchmark",
    } <= found


def test_the_graph_holds_bench_modules_and_their_imports() -> None:
    graph = import_graph()
    assert {
        "bench.harness.loadgen",
        "bench.peers.peer_benchmark",
        "bench.memory.decode_memory",
    } <= set(graph)
    assert {
        "bench.peers.peer_summary",
        "bench.peers.benchmarks_doc",
        "bench.harness.loadgen",
    } <= graph["bench.peers.peer_benchmark"]
    assert (
        "bench.peers.throughput_plot" in graph["bench.peers.benchmarks_doc"]
    )  # imported in a function


def test_bench_has_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_bench_imports_no_recipe() -> None:
    offenders = {
        name: sorted(n for n in imported_names(name, path) if n.startswith("models.recipes"))
        for name, path in bench_modules().items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def _allowed(importer: str, imported: str) -> bool:
    """The harness imports only the harness; a suite, the harness and itself."""
    if _suite(importer) == "bench.harness":
        return _suite(imported) == "bench.harness"
    return _suite(importer) == "bench" or _suite(imported) in {_suite(importer), "bench.harness"}


def test_the_layering_check_rejects_crossings() -> None:
    assert _allowed("bench.peers.peer_benchmark", "bench.harness.loadgen")
    assert _allowed("bench.peers.peer_benchmark", "bench.peers.peer_summary")
    assert not _allowed("bench.harness.servers", "bench.peers.systems")
    assert not _allowed("bench.variants.variant_benchmark", "bench.peers.peer_benchmark")


def test_the_harness_imports_no_suite_and_a_suite_no_other_suite() -> None:
    crossings = [
        f"{name} -> {other}"
        for name, imports in import_graph().items()
        for other in sorted(imports)
        if not _allowed(name, other)
    ]
    assert crossings == []


def test_only_the_harness_statistics_module_imports_statistics() -> None:
    """Medians, means and ratios come from bench.harness.statistics, not each suite's own."""
    users = sorted(
        name
        for name, path in bench_modules().items()
        if "statistics" in imported_names(name, path) and name != "bench.harness.statistics"
    )
    assert users == []
