"""``fusionserve`` command line: serve, predict, score, build-default-bundle, train-head,
evaluate, quantize-bundle, settings-doc."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.config.settings import Settings
from app.errors import FusionServeError, RequestError

logger = logging.getLogger("fusionserve")


def _settings(args: argparse.Namespace) -> Settings:
    bundle = getattr(args, "bundle", None)
    several = isinstance(bundle, list) and len(bundle) > 1
    if isinstance(bundle, list):
        bundle = None if several else bundle[0]
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "bundle_path": bundle,
            "bundles": getattr(args, "bundle", None) if several else None,
            "device": getattr(args, "device", None),
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }.items()
        if value is not None
    }
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from app.observability.logging_setup import setup_logging
    from app.server import run_server
    from app.workers.worker_pool import available_cores, resolve_workers, serve_workers

    settings = _settings(args)
    setup_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    workers = resolve_workers(settings.workers, available_cores())
    if workers == 1:
        return run_server(settings)
    return serve_workers(settings, workers, run_server)


def _predict(args: argparse.Namespace) -> int:
    from app.core.classification import ClassifiedItem, Timings
    from app.core.engine import build_engine
    from app.rest.rest_answers import classify_response

    settings = _settings(args)
    # A one-shot command for people: warnings as plain text on stderr, the result on stdout.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engine = build_engine(settings)
    started = time.perf_counter()
    try:
        image = None if args.image is None else Path(args.image).read_bytes()
        item = engine.prepare(image, args.text)
    except RequestError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    prepared = time.perf_counter()
    probabilities = engine.pipeline.run([item])[0]
    timings = Timings(prepared - started, time.perf_counter() - prepared)
    answer = ClassifiedItem(probabilities, item.missing, timings)
    response = classify_response(answer, engine.bundle.manifest, args.top_k)
    print(response.model_dump_json(indent=2))
    return 0


def _score(args: argparse.Namespace) -> int:
    # pyarrow is the `score` extra's: the server never needs it.
    if importlib.util.find_spec("pyarrow") is None:
        print("fusionserve score needs pyarrow: pip install 'fusionserve[score]'", file=sys.stderr)
        return 2
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        print(
            "fusionserve score --engine ray needs Ray: pip install 'fusionserve[ray]'",
            file=sys.stderr,
        )
        return 2
    from app.scoring.score_answers import AnswerColumns
    from app.scoring.score_input import Columns
    from app.scoring.score_job import ScoreOptions, run_score
    from app.workers.worker_pool import available_cores

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = ScoreOptions(
        input=args.input,
        output=args.output,
        columns=Columns(image=args.image_column, text=args.text_column, id=args.id_column),
        answer=AnswerColumns(top_k=args.top_k, all_probabilities=args.all_probabilities),
        shard_rows=args.shard_rows,
        limit=args.limit,
        max_error_rate=args.max_error_rate,
        # Ray: the threads of each preparing task (one CPU each); local: of the process.
        workers=args.workers or (1 if args.engine == "ray" else available_cores()),
        force=args.force,
        progress_every_s=args.progress_every,
        write_deadline_s=args.write_deadline,
    )
    if args.engine == "ray":
        from app.scoring.ray_job import RayOptions, run_ray_score

        cluster = RayOptions(
            address=args.ray_address,
            prepare_tasks=args.ray_prepare_tasks,
            model_actors=args.ray_model_actors,
            model_cpus=args.ray_model_cpus,
            **({"round_rows": args.ray_round_rows} if args.ray_round_rows else {}),
            **({"stall_timeout_s": args.ray_stall_timeout} if args.ray_stall_timeout else {}),
        )
        summary = run_ray_score(options, _settings(args), cluster)
    else:
        summary = run_score(options, _settings(args))
    print(summary.line())
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def _add_score(commands: Any) -> None:
    score = commands.add_parser(
        "score", help="score a CSV, JSON Lines or Parquet table into a Parquet dataset"
    )
    score.add_argument("--bundle", type=Path)
    score.add_argument("--device", choices=["auto", "cuda", "cpu"])
    score.add_argument("--input", type=Path, required=True, help=".csv, .jsonl or .parquet")
    score.add_argument("--output", type=Path, required=True, help="the dataset's directory")
    score.add_argument(
        "--image-column", default="image", help="image paths, relative to the input's folder"
    )
    score.add_argument("--text-column", default="text")
    score.add_argument(
        "--id-column", default="id", help="absent from the input: the row number is the id"
    )
    ranking = score.add_mutually_exclusive_group()
    ranking.add_argument("--top-k", type=_positive, default=5, help="ranked labels kept")
    ranking.add_argument(
        "--all-probabilities",
        action="store_true",
        help="every label's probability, in the manifest's order, instead of top_k",
    )
    score.add_argument("--limit", type=_positive, help="score the first N rows only")
    score.add_argument("--shard-rows", type=_positive, default=1000)
    score.add_argument("--max-error-rate", type=float, default=0.1)
    score.add_argument(
        "--workers",
        type=_positive,
        help="decoding threads (default: the cores available; with --engine ray, per "
        "preparing task, default 1)",
    )
    score.add_argument(
        "--progress-every", type=float, default=10.0, help="seconds between progress lines"
    )
    score.add_argument(
        "--write-deadline",
        type=float,
        default=300.0,
        help="seconds one shard's Parquet write may take before the job stops",
    )
    score.add_argument(
        "--force", action="store_true", help="start over, deleting the output's earlier job"
    )
    _add_ray_options(score)
    score.set_defaults(handler=_score)


def _add_ray_options(score: Any) -> None:
    score.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: Ray Data on a cluster (the fusionserve[ray] extra)",
    )
    ray = score.add_argument_group("--engine ray")
    ray.add_argument(
        "--ray-address",
        help="the cluster to join (default: RAY_ADDRESS, else a cluster on this machine)",
    )
    ray.add_argument(
        "--ray-prepare-tasks",
        "--ray-prepare-actors",  # its name before preparation ran as tasks
        type=_positive,
        dest="ray_prepare_tasks",
        help="tasks reading, decoding and tokenising at once, one CPU each (default: the "
        "cluster's CPUs less the model actors')",
    )
    ray.add_argument("--ray-model-actors", type=_positive, default=1, help="model actors")
    ray.add_argument(
        "--ray-model-cpus",
        type=_positive,
        default=1,
        help="CPUs (ONNX Runtime threads) per model actor",
    )
    ray.add_argument(
        "--ray-round-rows",
        type=_positive,
        help="rows sent to the cluster per round, in whole shards (default 50000)",
    )
    ray.add_argument(
        "--ray-stall-timeout",
        type=float,
        help="seconds without answered rows before the job stops (default 600)",
    )


def _run_models_module(module: str, arguments: list[str]) -> int:
    # Export and training need torch; they run in a child process so that no CLI or server
    # process imports it.
    if importlib.util.find_spec(module) is None:
        print("models/ is not importable: run from the repository checkout", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", module, *arguments])


def _build_default_bundle(args: argparse.Namespace) -> int:
    arguments = ["--out", str(args.out)]
    if args.skip_existing:
        arguments.append("--skip-existing")
    return _run_models_module("models.recipes.fashion_mnist.build_default_bundle", arguments)


# Sub-commands whose every option (and --help) belongs to a models/ module run in a child
# process: torch (train-head), scikit-learn and matplotlib (evaluate) and onnx (the
# quantisation tools) stay out of CLI and server processes.
PASS_THROUGH = {
    "export-encoders": (
        "models.encoders.export_encoders",
        "export local image and text checkpoints to a base bundle, parity with them checked",
    ),
    "train-head": (
        "models.training.train_head",
        "train a fusion head on a labelled dataset and write a new bundle",
    ),
    "evaluate": (
        "models.evaluation.evaluate",
        "score a bundle on a labelled dataset and write a report",
    ),
    "quantize-bundle": (
        "models.quantization.quantize_bundle",
        "write an int8 copy of a bundle (ONNX Runtime quantisation) and check it",
    ),
    "fp16-bundle": (
        "models.precision.fp16_bundle",
        "write an fp16 copy of a bundle for GPUs and check it",
    ),
}


def _settings_doc(args: argparse.Namespace) -> int:
    from app.config.settings_doc import DOC_PATH, shown, stale, write

    path: Path = args.out or DOC_PATH
    try:
        if args.check:
            difference = stale(path)
            if difference is not None:
                print(difference, file=sys.stderr)
                print("stale: run `fusionserve settings-doc` to rewrite it", file=sys.stderr)
                return 1
            print(f"{shown(path)} is up to date")
            return 0
        changed = write(path)
    except ValueError as exc:  # a setting without a description, or a bad group
        print(f"fusionserve settings-doc: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {shown(path)}" if changed else f"{shown(path)} is up to date")
    return 0


def _pass_through(args: argparse.Namespace) -> int:
    module, _ = PASS_THROUGH[args.command]
    return _run_models_module(module, args.passthrough)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the HTTP service (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--bundle",
        type=Path,
        action="append",
        help="bundle directory; repeat it to serve several (the first is the default)",
    )
    serve.add_argument("--device", choices=["auto", "cuda", "cpu"])
    serve.set_defaults(handler=_serve)

    predict = commands.add_parser("predict", help="classify one image in-process")
    predict.add_argument("image", type=Path, nargs="?", help="left out: classify the text alone")
    predict.add_argument("--text", help="left out: classify the image alone")
    predict.add_argument("--top-k", type=int, default=None)
    predict.add_argument("--bundle", type=Path)
    predict.add_argument("--device", choices=["auto", "cuda", "cpu"])
    predict.set_defaults(handler=_predict)

    _add_score(commands)

    build = commands.add_parser(
        "build-default-bundle", help="export the default encoders and write the bundle manifest"
    )
    build.add_argument("--out", type=Path, default=Path("models/default"))
    build.add_argument("--skip-existing", action="store_true", help="reuse exported encoders")
    build.set_defaults(handler=_build_default_bundle)

    settings_doc = commands.add_parser(
        "settings-doc", help="write docs/configuration.md from the Settings class"
    )
    settings_doc.add_argument(
        "--out", type=Path, default=None, help="where to write (default: docs/configuration.md)"
    )
    settings_doc.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 (printing the difference) if the file is not current",
    )
    settings_doc.set_defaults(handler=_settings_doc)

    for name, (_, summary) in PASS_THROUGH.items():
        command = commands.add_parser(
            name, help=f"{summary} (options: fusionserve {name} --help)", add_help=False
        )
        command.set_defaults(handler=_pass_through, passes_through=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "passes_through", False):
        args.passthrough = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.handler(args)
    except FusionServeError as exc:
        print(f"fusionserve: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"fusionserve: invalid settings: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
