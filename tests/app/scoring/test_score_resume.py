"""``fusionserve score`` killed with SIGKILL while it runs, then run again with the same
arguments: every id exactly once, and the same results as a run that was never stopped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from app.scoring.score_output import ScoreOutput
from tests.support.repo_paths import ROOT
from tests.support.score_tables import run_job, score_command, write_images, write_table

ROWS = 1500
SHARD_ROWS = 5


def _command(bundle: Path, table: Path, output: Path) -> list[str]:
    return score_command(bundle, table, output, "--shard-rows", str(SHARD_ROWS), "--workers", "2")


def test_a_killed_job_resumes_to_every_id_once(optional_bundle_dir: Path, tmp_path: Path) -> None:
    images = write_images(tmp_path, 4)
    rows = [{"id": f"r{i}", "image": images[i % 4], "text": f"item {i}"} for i in range(ROWS)]
    table = write_table(tmp_path / "in.csv", rows)
    output = tmp_path / "out"
    env = {"FUSIONSERVE_INTRA_OP_THREADS": "1"}
    job = subprocess.Popen(
        _command(optional_bundle_dir, table, output),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | env,
    )
    deadline = time.monotonic() + 60
    while not (output / "part-00000.done").exists():
        assert job.poll() is None, "the job ended before its first shard was committed"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    job.kill()
    job.wait()
    cut_short = len(ScoreOutput(output).committed_shards())
    assert 0 < cut_short < ROWS // SHARD_ROWS, "the job was not stopped part-way"

    rerun = subprocess.run(
        _command(optional_bundle_dir, table, output),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "skipped (already committed)" in rerun.stdout
    resumed = ScoreOutput(output).read_results()
    ids = resumed.column("id").to_pylist()
    assert sorted(ids) == sorted(f"r{i}" for i in range(ROWS))
    assert len(set(ids)) == ROWS

    _, straight = run_job(optional_bundle_dir, table, tmp_path / "straight", shard_rows=5)
    assert resumed.sort_by("id").equals(straight.sort_by("id"))
