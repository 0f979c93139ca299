"""The output of a scoring job: a directory of Parquet shards, ``part-00000.parquet`` per
``shard_rows`` input rows, each written under a temporary name, fsynced, renamed, then
committed by its marker ``part-00000.done`` (its row counts); and ``job.json``, what the job
is (bundle, input, options), which a resumed run must match. A part without its marker was
cut short and is written again."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

JOB_FILE = "job.json"
_PART = "part-{:05d}"


def output_schema(all_probabilities: bool) -> pa.Schema:
    """The columns of every shard: the row's id and outcome, its answer, and its ranked
    predictions (``top_k``) or every label's probability in the manifest's order."""
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_stage", pa.string()),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("label", pa.string()),
        pa.field("probability", pa.float64()),
        pa.field("labels", pa.list_(pa.string())),
    ]
    if all_probabilities:
        fields.append(pa.field("probabilities", pa.list_(pa.float64())))
    else:
        ranked = pa.struct([("label", pa.string()), ("probability", pa.float64())])
        fields.append(pa.field("top_k", pa.list_(ranked)))
    return pa.schema(fields)


@dataclass(frozen=True)
class ShardCounts:
    """What a committed shard holds: its rows answered and its rows in error."""

    ok: int
    error: int

    @property
    def rows(self) -> int:
        return self.ok + self.error


class ScoreOutput:
    """The output directory of one job."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def part(self, index: int) -> Path:
        """Shard ``index``'s Parquet file."""
        return self.directory / (_PART.format(index) + ".parquet")

    def marker(self, index: int) -> Path:
        """Shard ``index``'s commit marker."""
        return self.directory / (_PART.format(index) + ".done")

    def read_job(self) -> dict[str, Any] | None:
        """The recorded ``job.json``, or None when there is none."""
        path = self.directory / JOB_FILE
        if not path.is_file():
            return None
        job: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return job

    def write_job(self, job: dict[str, Any]) -> None:
        """Record the job (durably, before any shard)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_durably(self.directory / JOB_FILE, json.dumps(job, indent=2).encode())

    def has_foreign_files(self) -> bool:
        """Whether the directory holds files this job format did not write."""
        if not self.directory.is_dir():
            return False
        return any(not _ours(path.name) for path in self.directory.iterdir())

    def clear(self) -> None:
        """Delete every file of a previous job (and only those)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if _ours(path.name) and path.is_file():
                path.unlink()
        _fsync_directory(self.directory)

    def committed_shards(self) -> dict[int, ShardCounts]:
        """The committed shards by index, with their row counts (from their markers)."""
        found: dict[int, ShardCounts] = {}
        if not self.directory.is_dir():
            return found
        for path in self.directory.glob("part-*.done"):
            index = int(path.stem.removeprefix("part-"))
            if not self.part(index).is_file():
                continue
            counts = json.loads(path.read_text(encoding="utf-8"))
            found[index] = ShardCounts(int(counts["ok"]), int(counts["error"]))
        return found

    def write_shard(self, index: int, table: pa.Table) -> ShardCounts:
        """Write shard ``index`` and commit it: the part under a temporary name (hidden from
        dataset readers), fsynced, renamed, then the marker, likewise."""
        self.marker(index).unlink(missing_ok=True)
        part = self.part(index)
        temporary = part.with_name("." + part.name + ".tmp")
        pq.write_table(table, temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(part)
        _fsync_directory(self.directory)
        statuses: list[str] = table.column("status").to_pylist()
        counts = ShardCounts(statuses.count("ok"), len(statuses) - statuses.count("ok"))
        marker = json.dumps({"ok": counts.ok, "error": counts.error}).encode()
        _write_durably(self.marker(index), marker)
        return counts

    def read_results(self) -> pa.Table:
        """Every committed shard, in shard order, as one table (for tests and small jobs)."""
        parts: Sequence[Path] = [self.part(i) for i in sorted(self.committed_shards())]
        return pa.concat_tables([pq.read_table(path) for path in parts])


def _ours(name: str) -> bool:
    return name == JOB_FILE or (
        name.lstrip(".").startswith("part-") and name.endswith((".parquet", ".done", ".tmp"))
    )


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name("." + path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
