"""deploy/kserve/ against KServe's and Kubernetes' schemas and against the code.

The ClusterServingRuntime and the InferenceService are custom resources that
kubernetes-validate has no schema for: their own fields are checked against small closed
schemas of the fields used (from KServe's API types, serving.kserve.io v1alpha1 and v1beta1),
and the runtime's containers, which are core Kubernetes containers, are validated strictly
inside a Pod by kubernetes-validate. The other tests tie the files to the code: every
FUSIONSERVE_* name and value goes through ``Settings``, the port is the one KServe routes to,
the probes and the scrape path are requested from a running app, the runtime's model format
versions are the bundle schema versions the loader reads, and the InferenceService's is the
default bundle's.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.bundle.manifest import MANIFEST_FILENAME, SUPPORTED_SCHEMA_VERSIONS
from app.oip.http_routes import LIVE, READY
from bench.memory.sizing_rule import needed_limit_bytes
from tests.support.deploy_files import (
    KUBERNETES_VERSION,
    METRICS_PATH,
    ROOT,
    Manifest,
    cpu_cores,
    dockerfile_uids,
    is_setting,
    settings_from_env,
)
from tests.support.memory_sizing import kubernetes_bytes, worst_case_bytes

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is not installed"
)
jsonschema = pytest.importorskip("jsonschema")

KSERVE = ROOT / "deploy" / "kserve"
# What KServe expects of a runtime: its container's name, the port it routes to (Knative's
# name for an HTTP/1 port), and where the storage initializer puts the model.
CONTAINER_NAME = "kserve-container"
KSERVE_PORT = 8080
PORT_NAME = "http1"
MODEL_DIR = "/mnt/models"


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required or [],
    }


STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = _closed({"name": {"type": "string"}, "labels": STRING_MAP}, ["name"])
# ServingRuntimeSpec (v1alpha1): the fields deploy/kserve uses.
SERVING_RUNTIME_SCHEMA = _closed(
    {
        "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
        "kind": {"enum": ["ClusterServingRuntime", "ServingRuntime"]},
        "metadata": OBJECT_META,
        "spec": _closed(
            {
                "annotations": STRING_MAP,
                "supportedModelFormats": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "autoSelect": {"type": "boolean"},
                            "priority": {"type": "integer", "minimum": 1},
                        },
                        ["name"],
                    ),
                },
                "protocolVersions": {
                    "type": "array",
                    "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
                },
                "containers": {"type": "array", "minItems": 1},
                "volumes": {"type": "array"},
            },
            ["containers"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)
# InferenceService (v1beta1): a predictor with a model on a named runtime.
INFERENCE_SERVICE_SCHEMA = _closed(
    {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": OBJECT_META,
        "spec": _closed(
            {
                "predictor": _closed(
                    {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                        "scaleTarget": {"type": "integer", "minimum": 1},
                        "model": _closed(
                            {
                                "modelFormat": _closed(
                                    {"name": {"type": "string"}, "version": {"type": "string"}},
                                    ["name"],
                                ),
                                "runtime": {"type": "string"},
                                "protocolVersion": {"enum": ["v1", "v2", "grpc-v2"]},
                                "storageUri": {"type": "string", "pattern": "^[a-z0-9]+://"},
                            },
                            ["modelFormat"],
                        ),
                    },
                    ["model"],
                )
            },
            ["predictor"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)


def _load(name: str) -> Manifest:
    documents = [d for d in yaml.safe_load_all((KSERVE / name).read_text()) if d]
    assert len(documents) == 1
    document: Manifest = documents[0]
    return document


@pytest.fixture(scope="module")
def runtime() -> Manifest:
    return _load("servingruntime.yaml")


@pytest.fixture(scope="module")
def service() -> Manifest:
    return _load("inferenceservice.yaml")


def _container(runtime: Manifest) -> Manifest:
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == CONTAINER_NAME
    return container


def _env(runtime: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(runtime)["env"]}


def test_resources_have_the_kserve_shape(runtime: Manifest, service: Manifest) -> None:
    jsonschema.Draft202012Validator(SERVING_RUNTIME_SCHEMA).validate(runtime)
    jsonschema.Draft202012Validator(INFERENCE_SERVICE_SCHEMA).validate(service)
    misspelt = {**service, "spec": {"predictor": {"model": {"modelFomat": {"name": "x"}}}}}
    with pytest.raises(jsonschema.ValidationError, match="modelFomat"):
        jsonschema.Draft202012Validator(INFERENCE_SERVICE_SCHEMA).validate(misspelt)


def test_runtime_containers_are_valid_kubernetes(runtime: Manifest) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": runtime["metadata"]["name"]},
        "spec": {k: runtime["spec"][k] for k in ("containers", "volumes") if k in runtime["spec"]},
    }
    assert kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_runtime_speaks_v2_for_fusionserve_bundles(runtime: Manifest, service: Manifest) -> None:
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2"]
    formats = spec["supportedModelFormats"]
    assert {f["name"] for f in formats} == {"fusionserve"}
    assert sorted(f["version"] for f in formats) == [str(v) for v in SUPPORTED_SCHEMA_VERSIONS]
    default_manifest = json.loads((ROOT / "models" / "default" / MANIFEST_FILENAME).read_text())
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {
        "name": "fusionserve",
        "version": str(default_manifest["schema_version"]),
    }
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in spec["protocolVersions"]


def test_env_and_port_match_the_settings(runtime: Manifest, clean_env: pytest.MonkeyPatch) -> None:
    env = _env(runtime)
    for variable in env:
        assert is_setting(variable), variable
    settings = settings_from_env(env, clean_env)
    (port,) = _container(runtime)["ports"]
    assert (port["name"], port["containerPort"]) == (PORT_NAME, KSERVE_PORT)
    assert settings.port == KSERVE_PORT
    assert settings.host == "0.0.0.0"
    assert str(settings.bundle_path) == MODEL_DIR
    cores = cpu_cores(_container(runtime)["resources"]["limits"]["cpu"])
    assert settings.intra_op_threads == cores
    assert settings.preprocess_threads <= cores


def test_memory_limit_covers_the_worst_case(
    runtime: Manifest, clean_env: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env(_env(runtime), clean_env)
    resources = _container(runtime)["resources"]
    limit = kubernetes_bytes(resources["limits"]["memory"])
    assert kubernetes_bytes(resources["requests"]["memory"]) == limit
    cpus = float(resources["limits"]["cpu"])
    terms = worst_case_bytes(settings, cuda=settings.device == "cuda", cpus=cpus)
    assert limit >= needed_limit_bytes(terms), terms


def test_probes_and_scraping_request_real_routes(
    runtime: Manifest, clean_env: pytest.MonkeyPatch, app_client: TestClient
) -> None:
    container = _container(runtime)
    settings = settings_from_env(_env(runtime), clean_env)
    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == READY
    assert probes["livenessProbe"]["path"] == LIVE
    for probe in probes.values():
        assert probe["port"] == settings.port
        assert app_client.get(probe["path"]).status_code == 200
    annotations = runtime["spec"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == settings.port
    assert annotations["prometheus.kserve.io/path"] == METRICS_PATH
    assert app_client.get(METRICS_PATH).status_code == 200


def test_image_and_user_are_the_dockerfiles(runtime: Manifest) -> None:
    container = _container(runtime)
    overlay = yaml.safe_load(
        (ROOT / "deploy" / "overlays" / "cpu" / "kustomization.yaml").read_text()
    )
    (image,) = overlay["images"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    security = container["securityContext"]
    assert {security["runAsUser"]} == dockerfile_uids()
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_service_is_named_after_the_default_bundle(service: Manifest) -> None:
    # The model name in /v2 paths is the manifest's; the URL KServe gives is the service's.
    source = (ROOT / "models" / "recipes" / "fashion_mnist" / "build_default_bundle.py").read_text()
    name = re.search(r'^NAME = "([^"]+)"$', source, re.M)
    assert name is not None
    assert service["metadata"]["name"] == name.group(1)
    assert service["spec"]["predictor"]["model"]["storageUri"].endswith("/" + name.group(1))
