"""``fusionserve score --engine ray``: the same job as the local engine (the same ``job.json``,
shards, parts, markers and resume, so a job may be resumed by either engine) with preparation
and the model as Ray Data stages (preparing tasks, a pool of model actors) across a cluster.

The driver reads the input as the local engine does and cuts it into the same shards; the
uncommitted ones go to Ray in rounds of about ``round_rows`` rows (a round is a dataset of
small blocks: ``prepare_block`` as tasks of one CPU each, then ``ModelStage`` in batches of the
bundle's size on a pool of model actors, with a GPU each where the bundle runs on CUDA). Ray
does not keep the rows' order and retries the work of lost nodes, so the driver files each
answered row under its shard and position (a row answered twice counts once) and commits a
shard, in order of its position, as soon as all its rows are in. A round that gives no
answered rows for ``stall_timeout_s`` stops the job (``app.scoring.stall_watch``). The
bundle, the input file and the images must be at the same paths on every node (shared
storage)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
import ray.exceptions

from app.bundle.loader import load_bundle
from app.config.settings import Settings
from app.scoring.ray_stages import INPUT_SCHEMA, ModelStage, PrepareConfig, prepare_block
from app.scoring.score_errors import ScoreError
from app.scoring.score_input import InputRow
from app.scoring.score_job import (
    ScoreOptions,
    claimed_output,
    committing_writer,
    job_progress,
    shards_to_score,
)
from app.scoring.score_progress import ScoreSummary
from app.scoring.stall_watch import within_deadline

ROUND_ROWS = 50_000  # the default of --ray-round-rows
BLOCK_ROWS = 32  # input rows per block: one preparing call
# The longest the driver waits for the next answered rows (the default of
# --ray-stall-timeout): longer than any actor's start-up (loading a bundle) and any block's
# scoring, shorter than an operator's patience with a job that cannot go on.
STALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RayOptions:
    """How the job uses the cluster: where it is (None: ``RAY_ADDRESS``, else a local
    cluster started for the job), the preparing tasks run at once (None: the cluster's CPUs
    less the model actors'), the model actors and the CPUs (ONNX Runtime threads) each
    takes, the rows sent to the cluster per round, and the longest wait for answered rows
    before the job stops (a cluster that cannot place the actors asked for would wait for
    ever)."""

    address: str | None = None
    prepare_tasks: int | None = None
    model_actors: int = 1
    model_cpus: int = 1
    round_rows: int = ROUND_ROWS
    block_rows: int = BLOCK_ROWS
    stall_timeout_s: float = STALL_TIMEOUT_S


def run_ray_score(options: ScoreOptions, settings: Settings, cluster: RayOptions) -> ScoreSummary:
    """Score the input into the output directory on a Ray cluster; raises what ``run_score``
    raises."""
    bundle = load_bundle(settings.bundle_path, verify_hashes=settings.verify_bundle_hashes)
    output, committed = claimed_output(options, bundle)
    started = _connect(cluster.address)
    _quiet_ray_data()
    # The job's clock starts once connected (a cluster started here is not counted, as the
    # local engine's figure leaves out its engine's load); the actors' start-up is counted.
    progress = job_progress(options)
    try:
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        stages = RoundStages(options, settings, cluster, plan_stages(settings, cluster, resources))
        with committing_writer(output, options, progress) as writer:
            to_score = shards_to_score(options, committed, progress)
            for shards in _rounds(to_score, cluster.round_rows):
                for index, table in _score_round(stages, shards):
                    writer.submit_table(index, table)
    except ray.exceptions.ActorDiedError as exc:
        # An actor's __init__ failed (the bundle missing on a node, no GPU driver): its
        # error is the last line of Ray's message, after the actor's traceback.
        cause = str(exc).strip().splitlines()[-1]
        raise ScoreError(f"a Ray actor could not start: {cause}") from exc
    finally:
        progress.close()
        if started:
            ray.shutdown()
    return progress.summary()


@dataclass(frozen=True)
class StagePlan:
    """How many preparing tasks a round runs at once, and the GPUs each model actor takes (1
    where the bundle runs on CUDA, else 0)."""

    prepare_tasks: int
    model_gpus: float


def plan_stages(
    settings: Settings, cluster: RayOptions, resources: Mapping[str, float]
) -> StagePlan:
    """The stages for a cluster with ``resources`` (``ray.cluster_resources()``): the model
    actors on GPUs with ``--device cuda``, or ``auto`` on a cluster that has GPUs; as many
    preparing tasks at once as asked, else one per CPU the model actors leave. Raises
    ``ScoreError`` for ``--device cuda`` on a cluster without GPUs (its actors would wait
    for ever)."""
    has_gpus = resources.get("GPU", 0) > 0
    if settings.device == "cuda" and not has_gpus:
        raise ScoreError("--device cuda: the Ray cluster has no GPU")
    on_gpu = settings.device == "cuda" or (settings.device == "auto" and has_gpus)
    spare = int(resources.get("CPU", 1)) - cluster.model_actors * cluster.model_cpus
    return StagePlan(
        prepare_tasks=cluster.prepare_tasks or max(1, spare),
        model_gpus=1.0 if on_gpu else 0.0,
    )


@dataclass(frozen=True)
class RoundStages:
    """The dataset plan of a round."""

    options: ScoreOptions
    settings: Settings
    cluster: RayOptions
    plan: StagePlan

    def dataset(self, blocks: list[pa.Table]) -> ray.data.Dataset:
        prepare = PrepareConfig(
            settings=self.settings,
            base=self.options.input.resolve().parent,
            threads=self.options.workers,
            timeout_s=self.settings.request_timeout_s,
        )
        model_settings = self.settings.model_copy(
            update={"intra_op_threads": self.cluster.model_cpus}
        )
        return (
            ray.data.from_arrow(blocks)
            .map_batches(
                partial(prepare_block, config=prepare),
                batch_format="pyarrow",
                batch_size=None,
                # Tasks, not actors: see app.scoring.ray_stages. No more at once than the
                # round has blocks (Ray Data warns of a limit it cannot reach).
                compute=ray.data.TaskPoolStrategy(size=min(self.plan.prepare_tasks, len(blocks))),
                num_cpus=1,
                # A worker process runs any number of preparing tasks, keeping the preparer it
                # loaded (Ray's default for CPU tasks, said here). Remote arguments of its own
                # also keep Ray Data from fusing this stage into the model actors (it does when
                # their arguments agree and this stage's size equals the pool's), which would
                # prepare and score in one actor, one after the other: 30 against 45 rows/s
                # on 2 cores.
                max_calls=0,
            )
            .map_batches(
                ModelStage,
                fn_constructor_args=(model_settings, self.options.answer),
                batch_format="pyarrow",
                # A block's worth of rows per call (Ray needs a size for GPU actors), run in
                # batches of max_batch_size.
                batch_size=self.cluster.block_rows,
                compute=ray.data.ActorPoolStrategy(size=self.cluster.model_actors),
                num_cpus=self.cluster.model_cpus,
                num_gpus=self.plan.model_gpus,
            )
        )


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``; without either, start one on
    this machine) unless this process is already connected; whether it connected."""
    if ray.is_initialized():
        return False
    arguments: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    if address is None and "RAY_ADDRESS" not in os.environ:
        arguments["include_dashboard"] = False
    ray.init(**arguments)
    return True


def _quiet_ray_data() -> None:
    """Ray Data's progress bars and per-dataset log lines off: the job reports rows."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _rounds(
    shards: Iterable[tuple[int, list[InputRow]]], round_rows: int
) -> Iterator[list[tuple[int, list[InputRow]]]]:
    """Whole shards, grouped into rounds of at least ``round_rows`` rows (the last fewer)."""
    group: list[tuple[int, list[InputRow]]] = []
    rows = 0
    for shard in shards:
        group.append(shard)
        rows += len(shard[1])
        if rows >= round_rows:
            yield group
            group, rows = [], 0
    if group:
        yield group


def _score_round(
    stages: RoundStages, shards: Sequence[tuple[int, list[InputRow]]]
) -> Iterator[tuple[int, pa.Table]]:
    """Each shard of the round, as its index and its answered rows in order, as soon as all
    its rows are in."""
    sizes = {index: len(rows) for index, rows in shards}
    arrived: dict[int, list[pa.Table]] = {index: [] for index in sizes}
    seen: dict[int, set[int]] = {index: set() for index in sizes}
    blocks = _input_blocks(shards, stages.cluster.block_rows)
    dataset = stages.dataset(blocks)
    del blocks  # in the object store now
    batches = dataset.iter_batches(batch_format="pyarrow", batch_size=None)
    for batch in within_deadline(iter(batches), stages.cluster.stall_timeout_s, _stalled):
        assert isinstance(batch, pa.Table)  # batch_format="pyarrow"
        for index in pc.unique(batch.column("shard")).to_pylist():
            rows = _new_rows(batch.filter(pc.equal(batch.column("shard"), index)), seen[index])
            arrived[index].append(rows)
            if len(seen[index]) == sizes[index]:
                yield index, pa.concat_tables(arrived.pop(index)).sort_by("position")
    if arrived:
        missing = ", ".join(str(index) for index in sorted(arrived))
        raise ScoreError(f"the cluster returned no answer for some rows of shards {missing}")


def _stalled(timeout_s: float) -> ScoreError:
    return ScoreError(
        f"no answered rows came back from the Ray cluster for {timeout_s:g} s "
        "(--ray-stall-timeout): can it place the actors asked for (--ray-model-cpus, GPUs, "
        "memory)? The shards committed before stay committed"
    )


def _new_rows(rows: pa.Table, seen: set[int]) -> pa.Table:
    """``rows`` without those answered before (a retried task's repeats)."""
    keep = []
    for position in rows.column("position").to_pylist():
        keep.append(position not in seen)
        seen.add(position)
    return rows if all(keep) else rows.filter(pa.array(keep))


def _input_blocks(shards: Sequence[tuple[int, list[InputRow]]], block_rows: int) -> list[pa.Table]:
    """The round's rows as blocks of ``block_rows`` (never across shards)."""
    blocks = []
    for index, rows in shards:
        for start in range(0, len(rows), block_rows):
            chunk = rows[start : start + block_rows]
            blocks.append(
                pa.Table.from_pylist(
                    [
                        {
                            "shard": index,
                            "position": start + i,
                            "id": row.id,
                            "image": row.image,
                            "text": row.text,
                        }
                        for i, row in enumerate(chunk)
                    ],
                    schema=INPUT_SCHEMA,
                )
            )
    return blocks
