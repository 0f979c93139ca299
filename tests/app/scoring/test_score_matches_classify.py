"""A scored row's answer is the one ``POST /classify`` gives for the same image and text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.app_setup import answered, classify_files, make_settings, wait_ready
from tests.support.score_tables import run_job, write_images, write_table


def test_scored_rows_equal_the_classify_answers(optional_bundle_dir: Path, tmp_path: Path) -> None:
    images = write_images(tmp_path, 3)
    rows: list[dict[str, str | None]] = [
        {"id": "both", "image": images[0], "text": "a small cat"},
        {"id": "image only", "image": images[1], "text": None},
        {"id": "text only", "image": None, "text": "a red bird"},
        {"id": "both again", "image": images[2], "text": "two dogs in the park"},
    ]
    table = write_table(tmp_path / "in.csv", rows)
    _, result = run_job(optional_bundle_dir, table, tmp_path / "out", top_k=3)
    scored = {row["id"]: row for row in result.to_pylist()}
    with TestClient(create_app(make_settings(optional_bundle_dir))) as client:
        wait_ready(client)
        for row in rows:
            image = None if row["image"] is None else (tmp_path / row["image"]).read_bytes()
            files = classify_files(image, row["text"])
            body = answered(client.post("/classify", files=files, data={"top_k": "3"}))
            got = scored[str(row["id"])]
            assert got["status"] == "ok"
            assert got["label"] == body["label"]
            assert got["labels"] == body["labels"]
            assert got["probability"] == pytest.approx(body["probability"], abs=1e-6)
            assert [p["label"] for p in got["top_k"]] == [p["label"] for p in body["predictions"]]
            for mine, theirs in zip(got["top_k"], body["predictions"], strict=True):
                assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
