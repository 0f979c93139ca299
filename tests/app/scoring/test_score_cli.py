"""``fusionserve score`` on the command line: its summary, its exit codes (1 when the job
stops, 2 without pyarrow, or without Ray for ``--engine ray``), and pyarrow and Ray kept
out of the server's and the CLI's imports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from tests.support.repo_paths import ROOT
from tests.support.score_tables import write_images, write_table


def _arguments(bundle: Path, table: Path, output: Path) -> list[str]:
    return ["score", "--bundle", str(bundle), "--device", "cpu", "--input", str(table)] + [
        "--output",
        str(output),
        "--workers",
        "1",
    ]


def test_score_prints_a_summary(
    optional_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = write_images(tmp_path, 2)
    rows = [{"image": images[0], "text": "a cat"}, {"image": "images/nowhere.png", "text": "x"}]
    table = write_table(tmp_path / "in.jsonl", rows)
    code = cli.main([*_arguments(optional_bundle_dir, table, tmp_path / "out"), "--top-k", "2"])
    assert code == 0
    assert "scored 2 rows: 1 ok, 1 error" in capsys.readouterr().out


def test_too_many_errors_exit_1(
    optional_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"image": "images/nowhere.png", "text": "x"}] * 25
    table = write_table(tmp_path / "in.csv", rows)
    code = cli.main([*_arguments(optional_bundle_dir, table, tmp_path / "out")])
    assert code == 1
    assert "--max-error-rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("missing", "engine", "extra"),
    [("pyarrow", [], "score"), ("ray", ["--engine", "ray"], "ray")],
)
def test_without_its_packages_score_exits_2(
    missing: str,
    engine: list[str],
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name)
    )
    arguments = [*_arguments(tmp_path, tmp_path / "in.csv", tmp_path / "out"), *engine]
    assert cli.main(arguments) == 2
    assert f"pip install 'fusionserve[{extra}]'" in capsys.readouterr().err


def test_the_server_and_the_cli_do_not_import_pyarrow_or_ray() -> None:
    script = (
        "import sys, app.cli, app.main, app.server\n"
        "app.main.create_app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'ray'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("flag", ["--ray-prepare-tasks", "--ray-prepare-actors"])
def test_the_preparing_tasks_keep_their_old_flag(flag: str, tmp_path: Path) -> None:
    arguments = [*_arguments(tmp_path, tmp_path / "in.csv", tmp_path / "out"), flag, "3"]
    assert cli._parser().parse_args(arguments).ray_prepare_tasks == 3
