"""docs/benchmarks.md (and its figure) rendered from a peer benchmark results file: the
numbers are never typed by hand; the discussion comes from analysis.md beside this module.

``python -m bench.peers.benchmarks_doc [bench/results/results.json]`` rebuilds the doc and the
figure from a results file without re-running anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.harness.formatting import fixed
from bench.harness.generated_docs import section_body
from bench.harness.paths import DOCS_DIR, RESULTS_DIR
from bench.harness.statistics import ratio_or_none
from bench.peers.peer_summary import summarize

DOC = DOCS_DIR / "benchmarks.md"
PLOT = DOCS_DIR / "img" / "throughput_vs_p99.png"
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
# Hand-written: what was measured on the request path and not taken, after its section.
LEFT_OUT = Path(__file__).resolve().parents[1] / "overhead" / "left_out.md"
# The generated sections other suites write into this page (bench.overhead.overhead_doc,
# bench.overhead.request_path_doc): this renderer writes their headings and markers and keeps
# the bodies the page has.
OVERHEAD = "overhead"
OVERHEAD_HEAD = """## The overhead-bound case (tiny bundle)

With a model that costs nothing, a server's throughput and CPU are those of its serving layer
(HTTP, form parsing, hand-offs, response building). Issue 15 sets targets for FusionServe in
this case against LitServe. Everything between the markers below is written by
`python -m bench.overhead.overhead_benchmark` from `bench/results/overhead.json`
(`python -m bench.overhead.overhead_doc` re-renders it, `--check` tells whether it is stale);
see [bench/README.md](../bench/README.md).
"""


REQUEST_PATH = "request-path"
REQUEST_PATH_HEAD = """### The request path, before and after issue 26

Between the markers: `python -m bench.overhead.request_path_doc` renders it from the A/B runs
of `bench.overhead.request_overhead` (tiny bundle with `--profile`; default bundle with
`--default-bundle`) and `bench.overhead.multipart_parsers`; `--check` tells whether it is stale.
Each A/B runs both checkouts on one machine in one session (the sessions' machines differ:
AMD EPYC and Intel Xeon cores have both been lent), so compare their ratios, not their
milliseconds, with other tables.
"""


def kept_section(name: str) -> str:
    """The body of the generated section ``name`` as the page has it now ("" if none)."""
    try:
        return section_body(DOC.read_text(encoding="utf-8"), name)
    except (OSError, ValueError):  # no page yet, or no such section (SectionError)
        return ""


def overhead_part(body: str, request_path: str = "", left_out: str = "") -> str:
    """The overhead-bound case's heading, intro and markers around ``body``, then the request
    path's around ``request_path``, then ``left_out`` (Markdown) if any."""
    return (
        f"\n{OVERHEAD_HEAD}\n<!-- begin {OVERHEAD} -->\n{body}\n<!-- end {OVERHEAD} -->\n"
        f"\n{REQUEST_PATH_HEAD}\n<!-- begin {REQUEST_PATH} -->\n{request_path}\n"
        f"<!-- end {REQUEST_PATH} -->\n" + (f"\n{left_out}" if left_out else "")
    )


def summary_table(summary: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """The main Markdown table (medians across repeats)."""
    rows = [
        "| System | Saturation (req/s) | p50 / p99 at saturation (ms) | p50 / p99 at the 70% "
        "rate (ms) | non-200 at 70% | Single client p50 (ms) | Server CPU per request at "
        "saturation (ms) | Start-up (s) | RSS (MiB) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, s in summary["systems"].items():
        name = labels[key] if labels else key
        non_200 = ", ".join(f"{k}: {v}" for k, v in s["open_non_200"].items()) or "none"
        if s["errors"]:
            non_200 += f"; {len(s['errors'])} failed run(s)"
        rows.append(
            f"| ({key}) {name} | {fixed(s['saturation_rps'])} | "
            f"{fixed(s['saturation_p50_ms'], 0)} / "
            f"{fixed(s['saturation_p99_ms'], 0)} | {fixed(s['open_p50_ms'], 0)} / "
            f"{fixed(s['open_p99_ms'], 0)} | {non_200} | {fixed(s['single_p50_ms'])} | "
            f"{fixed(s['server_cpu_ms_per_request'])} | {fixed(s['startup_s'])} | "
            f"{fixed(s['rss_mib_tree'], 0)} |"
        )
    inproc = summary["inprocess"]
    rows.append(
        f"| (c) in-process limit (no HTTP) | {fixed(inproc['best_items_per_s'])} items/s (best "
        f"batch size per repeat: {'/'.join(map(str, inproc['best_batch_sizes']))}) | - | - | - "
        f"| {fixed(inproc['single_item_median_ms'])} (one item) | "
        f"{fixed(inproc.get('cpu_ms_per_item_at_best'))} "
        "(per item) | - | - |"
    )
    return "\n".join(rows)


def targets_table(summary: dict[str, Any]) -> str:
    rows = ["| Target | Measured | Verdict |", "| --- | --- | --- |"]
    rows += [
        f"| {t['target']} | {t['measured']} | **{t['verdict']}** |" for t in summary["targets"]
    ]
    return "\n".join(rows)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _by_repeat(results: dict[str, Any], key: str) -> dict[int, dict[str, Any]]:
    """System ``key``'s runs that completed, by repeat."""
    return {
        r["repeat"]: r for r in results["raw"]["systems"] if r["system"] == key and "error" not in r
    }


def _spread(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    if not values:
        return "-"
    return f"{fixed(min(values) * scale, digits)} to {fixed(max(values) * scale, digits)}"


def repeats_section(results: dict[str, Any]) -> str:
    """Each repeat's own runs, which the medians above hide: the systems' ratios within a
    repeat (run minutes apart), the in-process batch-size curve, and each system's spread."""
    s, raw = results["summary"], results["raw"]
    labels = {k: v["label"] for k, v in results["systems"].items()}
    peer = s["ratios"]["best_peer"]
    ours, theirs = _by_repeat(results, "a"), _by_repeat(results, peer) if peer else {}
    rates = {c["repeat"]: c["open_rate_rps"] for c in raw["calibration"]}
    inprocess = raw["inprocess"]
    peer_head = (
        f" | ({peer}) {labels[peer]} saturation (req/s) | (a) / ({peer}) | (c) / ({peer})"
        if peer
        else ""
    )
    rows = [
        "| Repeat | Open-loop rate (req/s) | (c) in-process best (items/s) | (a) saturation "
        f"(req/s) | (a) / (c){peer_head} |",
        "| ---: | ---: | ---: | ---: | ---:" + " | ---: | ---: | ---:" * bool(peer) + " |",
    ]
    for i, run in enumerate(inprocess):
        best = run["best_items_per_s"]
        sat = ours[i]["saturation"]["throughput_rps"] if i in ours else None
        cells = [
            str(i + 1),
            fixed(rates.get(i)),
            fixed(best),
            fixed(sat),
            _times(ratio_or_none(sat, best)),
        ]
        if peer:
            peer_sat = theirs[i]["saturation"]["throughput_rps"] if i in theirs else None
            cells += [
                fixed(peer_sat),
                _times(ratio_or_none(sat, peer_sat)),
                _times(ratio_or_none(best, peer_sat)),
            ]
        rows.append("| " + " | ".join(cells) + " |")

    sizes = sorted({row["batch_size"] for run in inprocess for row in run["throughput"]})
    curve = [
        "| Repeat | "
        + " | ".join(f"batch {b}" for b in sizes)
        + " | best / batch 1 | single item, median (ms) |",
        "| ---: |" + " ---: |" * (len(sizes) + 2),
    ]
    for i, run in enumerate(inprocess):
        by_size = {row["batch_size"]: row["items_per_s"] for row in run["throughput"]}
        curve.append(
            f"| {i + 1} | "
            + " | ".join(fixed(by_size.get(b)) for b in sizes)
            + f" | {_times(ratio_or_none(run['best_items_per_s'], by_size.get(1)))} | "
            f"{fixed(run['single_item']['median_ms'])} |"
        )

    spread = [
        "| System | Saturation (req/s) | p99 at the 70% rate (ms) | Server + client CPU busy "
        "at saturation (% of all cores) | Server CPU per request at saturation (ms) | "
        "503s at saturation (per run) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for key in results["systems"]:
        runs = [r for _, r in sorted(_by_repeat(results, key).items())]
        cpu = [r["saturation_cpu"] for r in runs if "saturation_cpu" in r]
        refused = [str(r["saturation"]["status_counts"].get("503", 0)) for r in runs]
        spread.append(
            f"| ({key}) {labels[key]} | "
            f"{_spread([r['saturation']['throughput_rps'] for r in runs])} | "
            f"{_spread([r['open']['latency_ms']['p99'] for r in runs], 0)} | "
            f"{_spread([c['cpu_utilisation'] for c in cpu], 0, 100)} | "
            f"{_spread([c['server_cpu_ms_per_ok'] for c in cpu])} | "
            f"{' / '.join(refused) if any(n != '0' for n in refused) else 'none'} |"
        )

    lines = []
    if peer:
        best_vs_peer = ratio_or_none(
            s["inprocess"]["best_items_per_s"], s["systems"][peer]["saturation_rps"]
        )
        lines.append(f"- In-process limit / {labels[peer]} (medians): **{_times(best_vs_peer)}**")
    server_p50 = s["systems"].get("a", {}).get("single_server_p50_ms")
    if server_p50 is not None:
        lines.append(
            "- FusionServe's own `timing.total_ms` for the single-client requests (median of the "
            f"repeats' medians): {fixed(server_p50)} ms"
        )
    return "\n".join(
        [
            "### Per repeat",
            "",
            "**Ratios by repeat.** The medians above hide how far runs moved between repeats",
            "on this machine. Below, each repeat's own runs (`raw` in the results file); a ratio",
            "within a repeat compares systems that ran minutes apart:",
            "",
            *rows,
            "",
            "**In-process limit by repeat**, items/s at each batch size:",
            "",
            *curve,
            "",
            "**Spread across repeats**, lowest to highest, per system:",
            "",
            *spread,
            "",
            *lines,
        ]
    )


def _overload_section(summary: dict[str, Any]) -> str:
    o = summary["overload"]
    if o is None:
        return "Not run in this session.\n"
    counts = ", ".join(f"{k}: {v}" for k, v in o["status_counts"].items())
    return (
        f"Open loop at {o['rate_rps']} req/s (2x FusionServe's median saturation) for "
        f"{o['duration_s']:g} s: {counts}; all 503s carried Retry-After: "
        f"{'yes' if o['all_503_retry_after'] else 'no'}. Accepted: {o['accepted_rps']} req/s, "
        f"p50 {o['accepted_p50_ms']} ms, p99 {o['accepted_p99_ms']} ms "
        f"({o['p99_vs_open_p99']}x the 70%-load p99). Server RSS: {o['rss_mb_after_warmup']} MB "
        f"after warm-up, {o['rss_mb_end']} MB when the load stopped, {o['rss_mb_settled']} MB "
        f"10 s later ({o['rss_delta_mb']:+} MB).\n"
    )


def _span(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{min(known):+.2f} to {max(known):+.2f}" if known else "not recorded"


def _versions(machine: dict[str, Any]) -> str:
    parts = [f"Python {machine['versions']['python']}"]
    for env, pins in machine["versions"].items():
        if isinstance(pins, dict):
            parts.append(f"{env}: " + ", ".join(f"{k} {v}" for k, v in pins.items()))
    return "; ".join(parts)


def render(
    results: dict[str, Any],
    analysis: str,
    plot_path: str,
    overhead: str = "",
    request_path: str = "",
    left_out: str = "",
) -> str:
    s, m, plan = results["summary"], results["machine"], results["plan"]
    req = results["requests"]
    labels = {k: v["label"] for k, v in results["systems"].items()}
    ratios = s["ratios"]
    inproc = s["inprocess"]
    by_batch = ", ".join(f"{b}: {v}" for b, v in inproc["items_per_s_by_batch_size"].items())
    agreement = ", ".join(
        f"({k}) {v['agreement_max_abs_diff']:.1e}"
        for k, v in s["systems"].items()
        if v["agreement_max_abs_diff"] is not None
    )
    rates = ", ".join(f"{r:g}" for r in s["open_rate_rps"])
    return f"""# Benchmarks: FusionServe against the in-process limit and three serving frameworks

Issue 3 asks for dynamic batching that beats the peers and a benchmark that shows it side by
side. Everything below is produced by one command, `{results["command"]}`, which took
{results["wall_s"] / 60:.1f} minutes on {results["started"]}; the raw runs are in
[bench/results/results.json](../bench/results/results.json) and the harness in
[bench/](../bench/README.md). Git commit `{m["git_commit"][:12]}`{
        " (with uncommitted changes under app/)" if m.get("app_dirty") else ""
    }.

**Machine:** {m["nproc"]} CPU cores ({m["cpu_model"]}), {m["mem_gib"]} GiB RAM, Linux
{m["kernel"]}, no GPU. **The load generator runs on the same {m["nproc"]} cores** as the
server under test (measured: {
        fixed(s["systems"].get("a", {}).get("client_cpu_ms_per_request"), 2)
    } ms of client CPU per request against FusionServe at saturation), so every HTTP number here
includes that competition; the in-process limit (c) has no client at all.

## Results (medians of {plan["repeats"]} repeats)

{summary_table(s, labels)}

![Throughput against p99 latency]({plot_path})

- FusionServe saturation / in-process limit: **{ratios["saturation_vs_inprocess"]}x**
- FusionServe saturation / best peer ({labels.get(ratios["best_peer"] or "", "-")}):
  **{ratios["saturation_vs_best_peer"]}x**
- FusionServe with batching / without (max_batch_size=1): **{ratios["batching_vs_no_batching"]}x**
- p99 at the 70% rate, FusionServe / peer: {
        ", ".join(f"{labels[k]} {v}x" for k, v in ratios["open_p99_vs_peer"].items())
    }
- Single-client median minus in-process single-item median: **{
        ratios["single_minus_inprocess_ms"]
    } ms**
- In-process items/s by batch size (medians): {by_batch}

{repeats_section(results)}

## Targets

{targets_table(s)}

### Overload (FusionServe, batching)

{_overload_section(s)}
{analysis}
## Method

**Systems.** Each serves `POST /classify` (multipart `image` + `text`) on 127.0.0.1 from the
same bundle (`models/default`), and each runs FusionServe's own torch-free code for decoding,
tokenising and the three ONNX models (`app.core.engine.build_engine` ->
`Pipeline.prepare` / `Pipeline.run`), so only the serving layer differs:

- (a) FusionServe, default settings (dynamic batching up to 8 items, no extra wait, at most
  24 items in flight; refused clients are told `Retry-After` and wait, see the load generator).
- (b) FusionServe with `FUSIONSERVE_MAX_BATCH_SIZE=1` (batching off).
- (c) In-process limit (`bench/harness/inprocess.py`): decode in a 2-thread pool overlapping
  `Pipeline.run` at fixed batch sizes 1, 4, 8, 16, 32 for {plan["inprocess_s"]:g} s each, no
  HTTP; the best batch size counts. Single-item latency: decode + run of one item, median of
  192 sequential items.
- (d) LitServe 0.2.19: `LitAPI(max_batch_size=16, batch_timeout=0.005)`; `decode_request`
  decodes in the inference worker, one API-server process.
- (e) BentoML 1.4.30: a front service (multipart parsing, decode) calling a batchable model
  service (`max_batch_size=16`) through `bentoml.depends`; one worker each.
- (f) Ray Serve 2.60: one replica, `@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)`,
  decode in a thread, `max_ongoing_requests=128` (Ray's default of 5 would cap batches at 5).

Each peer runs in its own virtual environment (`bench/.venvs/<name>`) holding only its framework
plus the same versions of onnxruntime, pillow, numpy, tokenizers and pydantic as FusionServe.
Every system gets the same ONNX Runtime settings: intra-op threads = {m["nproc"]} (all cores),
inter-op 1, spinning off. Before measuring (first repeat), each system answered
{48} reference requests and its probabilities were compared with the in-process pipeline's:
max absolute difference {agreement} (tolerance 1e-4).

**Requests.** {req["images"]} images made at start-up from scikit-learn's two sample photos
(`china.jpg`, `flower.jpg`), cropped and resized to {", ".join(req["dimensions"])}; {req["jpeg"]}
JPEG and {req["png"]} PNG, median {req["image_kib_median"]} KiB, largest
{req["image_kib_max"]} KiB. Texts: {req["distinct_texts"]} distinct generated product
descriptions (`models.recipes.fashion_mnist.titles`, drawn once into
`bench/harness/payload_texts.json`); request *i* pairs image *i* mod {req["images"]} with text
*i*, and the index keeps counting across runs, so no server ever sees a text twice. This
matters because FusionServe's pipeline caches text embeddings: with a few repeated texts the
benchmark would measure that cache rather than the models (all systems share the cache, so
repeated texts would help them alike). Multipart bodies are pre-built in two parts (image
part, text part), so the client only concatenates bytes per request.

**Load generator** (`bench/harness/loadgen.py`, asyncio + aiohttp on uvloop, one process).
Closed-loop saturation: {plan["concurrency"]} clients back to back for {plan["saturation_s"]:g} s;
throughput = 200 responses completed inside the window / window. Open loop: Poisson arrivals
at a fixed rate for {plan["open_s"]:g} s, latency counted from each request's *scheduled* send
time (no coordinated omission), every answer awaited (client timeout 30 s). Single client:
sequential requests for {plan["single_s"]:g} s. Status codes are counted, connection errors and
timeouts included.

**Session.** For each repeat: the in-process limit; a FusionServe (a) calibration run
(start, warm-up, saturation) whose throughput x {plan["open_fraction"]} is the repeat's
open-loop rate, the same absolute rate for every system (this session: {rates} req/s); then
the five systems in an order rotated by one each repeat. Per system: start, wait until a real
`/classify` succeeds, warm up ({plan["warmup_s"]:g} s closed loop), saturation, open loop,
single client, then stop the whole process tree (SIGTERM, then SIGKILL for leftovers) and
wait until the port is free. After the repeats, the overload run: FusionServe (a) at
{plan["overload_factor"]:g}x its median saturation for {plan["overload_s"]:g} s, RSS
(`/proc/<pid>/status` VmRSS) read after warm-up, at the end and {plan["overload_settle_s"]:g} s
after the load stopped. Start-up and RSS in the table: time to the first successful request,
and the RSS of the whole process tree after warm-up (Ray's includes its GCS, raylet, proxy,
controller and agents).

**Contention check.** CPU seconds used by anything other than the measured processes
(from /proc/stat, so it includes kernel time for loopback networking), per run: in-process
runs {_span(s["other_cpu_s"]["inprocess"])} CPU-s; 20 s saturation runs {
        _span([v for runs in s["other_cpu_s"]["saturation"].values() for v in runs])
    } CPU-s (about zero: nothing else competed for the cores).

**Versions.** {_versions(m)}.

## Reproduce

```bash
. .venv/bin/activate
pip install -e '.[bench]'          # aiohttp, matplotlib, scikit-learn, uvloop
python -m bench.peers.peer_benchmark --repeats 3    # builds bench/.venvs/* on first use; ~{
        round(results["wall_s"] / 60)
    } min here
python -m bench.peers.peer_benchmark --quick --repeats 1   # smoke test, into bench/results/quick/
```
{overhead_part(overhead, request_path, left_out)}"""


def page(results: dict[str, Any], analysis: str | None = None) -> str:
    """docs/benchmarks.md for ``results``, around ``analysis`` (by default analysis.md; "" gives
    the generated part alone)."""
    if analysis is None:
        analysis = ANALYSIS.read_text() if ANALYSIS.exists() else ""
    plot_path = PLOT.relative_to(DOC.parent).as_posix()
    left_out = LEFT_OUT.read_text(encoding="utf-8") if LEFT_OUT.exists() else ""
    overhead, request_path = kept_section(OVERHEAD), kept_section(REQUEST_PATH)
    return render(results, analysis, plot_path, overhead, request_path, left_out)


def write_docs(results: dict[str, Any]) -> None:
    from bench.peers.throughput_plot import plot  # matplotlib: only when drawing

    PLOT.parent.mkdir(parents=True, exist_ok=True)
    plot(results, PLOT)
    DOC.write_text(page(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.benchmarks_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS_DIR / "results.json")
    parser.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the summary from the raw runs before writing",
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if args.resummarize or "summary" not in results:
        results["summary"] = summarize(results)
        args.results.write_text(json.dumps(results, indent=2))
    write_docs(results)
    print(summary_table(results["summary"], {k: v["label"] for k, v in results["systems"].items()}))
    print(targets_table(results["summary"]))


if __name__ == "__main__":
    main()
