"""A scoring job from start to end: the engine built from the settings, the job recorded in
(or matched against) the output's ``job.json``, the committed shards skipped and the others
scored and committed in order, stopping once too many rows failed. Three stages overlap:
the rows ahead are read and prepared in the thread pool (``RowScorer``), the model runs on
this thread, and the shard scored last is written in a thread of its own (``ShardWriter``)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.bundle.loader import Bundle, sha256_file
from app.config.settings import Settings
from app.core.engine import build_engine
from app.scoring.score_answers import AnswerColumns
from app.scoring.score_errors import ErrorRateExceeded, JobMismatch
from app.scoring.score_input import Columns, InputRow, fingerprint, read_rows, total_rows
from app.scoring.score_output import ScoreOutput, ShardCounts, output_schema
from app.scoring.score_progress import Progress, ScoreSummary
from app.scoring.score_rows import RowLimits, RowScorer, window_rows
from app.scoring.score_writer import ShardWriter

# The error rate is judged once at least these many rows were scored in this run.
MIN_ROWS_FOR_ERROR_RATE = 20
# The longest wait for one shard's Parquet file to be written, fsynced and committed.
WRITE_DEADLINE_S = 300.0  # the default of --write-deadline


@dataclass(frozen=True)
class ScoreOptions:
    """What ``fusionserve score`` was asked: the input and output, which columns to read and
    write, how to cut the output into shards, when to stop, how many preparing threads."""

    input: Path
    output: Path
    columns: Columns
    answer: AnswerColumns
    shard_rows: int = 1000
    limit: int | None = None
    max_error_rate: float = 0.1
    workers: int = 1
    force: bool = False
    progress_every_s: float = 10.0
    write_deadline_s: float = WRITE_DEADLINE_S  # how long one shard's write may take

    def recorded(self) -> dict[str, Any]:
        """The options that decide the output; a resumed run must be given the same."""
        return {
            "columns": asdict(self.columns),
            "answer": asdict(self.answer),
            "shard_rows": self.shard_rows,
            "limit": self.limit,
        }


def run_score(options: ScoreOptions, settings: Settings) -> ScoreSummary:
    """Score the input into the output directory; raises ``ScoreError`` subclasses (a job
    that differs from the one recorded, too many failed rows) and ``StartupError``."""
    engine = build_engine(settings)
    output, committed = claimed_output(options, engine.bundle)
    limits = RowLimits(
        max_batch_size=settings.max_batch_size,
        window=window_rows(settings.max_batch_size, options.workers),
        max_image_bytes=settings.max_image_bytes,
        prepare_timeout_s=settings.request_timeout_s,
    )
    progress = job_progress(options)
    try:
        with (
            ThreadPoolExecutor(options.workers, thread_name_prefix="score") as pool,
            committing_writer(output, options, progress) as writer,
        ):
            scorer = RowScorer(engine, options.input.parent, options.answer, limits, pool)
            to_score = shards_to_score(options, committed, progress)
            with contextlib.closing(scorer.score_shards(to_score)) as scored:
                for index, records in scored:
                    writer.submit(index, records)
    finally:
        progress.close()
    return progress.summary()


def claimed_output(
    options: ScoreOptions, bundle: Bundle
) -> tuple[ScoreOutput, dict[int, ShardCounts]]:
    """The job's output directory, made this job's (``_claim``), and its committed
    shards (none on a fresh start)."""
    output = ScoreOutput(options.output)
    _claim(output, describe_job(bundle, options), options.force)
    return output, output.committed_shards()


def committing_writer(
    output: ScoreOutput, options: ScoreOptions, progress: Progress
) -> ShardWriter:
    """The writer of the job's shards: each commit advances ``progress`` and checks the
    error rate (``_check_error_rate``)."""

    def committed_one(counts: ShardCounts) -> None:
        progress.advance(counts.ok, counts.error)
        _check_error_rate(progress, options.max_error_rate)

    schema = output_schema(options.answer.all_probabilities)
    return ShardWriter(output, schema, committed_one, options.write_deadline_s)


def shards_to_score(
    options: ScoreOptions, committed: dict[int, ShardCounts], progress: Progress
) -> Iterator[tuple[int, list[InputRow]]]:
    """The input's shards not yet committed, with their indices (the others counted as
    skipped)."""
    return _uncommitted(_shards(options), committed, progress)


def job_progress(options: ScoreOptions) -> Progress:
    """The job's progress reporter, told the rows to score where the input says (Parquet)."""
    total = total_rows(options.input)
    if options.limit is not None:
        total = options.limit if total is None else min(total, options.limit)
    return Progress(total, options.progress_every_s)


def describe_job(bundle: Bundle, options: ScoreOptions) -> dict[str, Any]:
    """What ``job.json`` records: the bundle (name, version, every file's sha256), the input
    (path and fingerprint) and the options that decide the output."""
    manifest = bundle.manifest
    files = {
        path.relative_to(bundle.root).as_posix(): sha256_file(path)
        for path in sorted(bundle.root.rglob("*"))
        if path.is_file()
    }
    return {
        "bundle": {"name": manifest.name, "version": manifest.version, "files": files},
        "input": {
            "path": str(options.input.resolve()),
            "fingerprint": fingerprint(options.input),
        },
        "options": options.recorded(),
    }


def _claim(output: ScoreOutput, job: dict[str, Any], force: bool) -> None:
    """Make the output directory this job's: resume a matching job, start over with
    ``force``, refuse otherwise."""
    recorded = output.read_job()
    if not force:
        if recorded is None and output.has_foreign_files():
            raise JobMismatch(
                f"{output.directory} holds files that are not a scoring job's: choose an "
                "empty or new directory (or --force to write there anyway)"
            )
        differences = [] if recorded is None else _differences(recorded, job)
        if differences:
            raise JobMismatch(
                f"{output.directory} holds another job: its {', '.join(differences)} "
                "differ from this run's; rerun with the same bundle, input and options to "
                "resume it, or --force to start over"
            )
        if recorded is not None:
            return
    output.clear()
    output.write_job(job)


def _differences(recorded: dict[str, Any], job: dict[str, Any]) -> list[str]:
    found = []
    bundle, was = job["bundle"], recorded.get("bundle", {})
    if any(bundle[key] != was.get(key) for key in ("name", "version", "files")):
        found.append("bundle")
    if job["input"]["fingerprint"] != recorded.get("input", {}).get("fingerprint"):
        found.append("input file (size or sha256)")
    if job["options"] != recorded.get("options"):
        found.append("options")
    return found


def _shards(options: ScoreOptions) -> Iterator[list[InputRow]]:
    rows: Iterator[InputRow] = read_rows(options.input, options.columns)
    if options.limit is not None:
        rows = itertools.islice(rows, options.limit)
    while shard := list(itertools.islice(rows, options.shard_rows)):
        yield shard


def _uncommitted(
    shards: Iterator[list[InputRow]], committed: dict[int, ShardCounts], progress: Progress
) -> Iterator[tuple[int, list[InputRow]]]:
    """The shards still to score, with their indices; the committed ones are counted as
    skipped as the input reaches them."""
    for index, rows in enumerate(shards):
        if index in committed:
            progress.skip(len(rows))
            continue
        yield index, rows


def _check_error_rate(progress: Progress, max_error_rate: float) -> None:
    rows = progress.ok + progress.error
    if rows >= MIN_ROWS_FOR_ERROR_RATE and progress.error / rows > max_error_rate:
        raise ErrorRateExceeded(
            f"stopped: {progress.error} of the {rows} rows scored in this run failed "
            f"({progress.error / rows:.1%}, over --max-error-rate {max_error_rate:.1%}); the "
            f"shards written are committed. See the error_stage, error_code and error_message "
            f"columns of the output"
        )
