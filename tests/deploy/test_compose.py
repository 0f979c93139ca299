"""compose.yaml against the Compose Specification schema (shipped with check-jsonschema, no
network) and against the app: its settings, port, healthcheck and Prometheus scrape target."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from fastapi.testclient import TestClient

from app.rest.routes import READYZ
from bench.memory.sizing_rule import needed_limit_bytes
from tests.support.deploy_files import METRICS_PATH, ROOT, Manifest, is_setting, settings_from_env
from tests.support.memory_sizing import compose_bytes, worst_case_bytes


@pytest.fixture(scope="module")
def compose() -> Manifest:
    data: Manifest = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_file_is_valid_compose() -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (dev extra) not installed")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_service_matches_the_app(
    compose: Manifest, clean_env: pytest.MonkeyPatch, app_client: TestClient
) -> None:
    service = compose["services"]["fusionserve"]
    env = {name: str(value) for name, value in service["environment"].items()}
    for variable in env:
        assert is_setting(variable), variable
    settings = settings_from_env(env, clean_env)
    published = [str(p).rsplit(":", 1)[1] for p in service["ports"]]
    assert published == [str(settings.port), str(settings.grpc_port)]
    check = " ".join(service["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", check)
    assert url is not None
    assert int(url.group(1)) == settings.port
    assert url.group(2) == READYZ
    assert app_client.get(url.group(2)).status_code == 200
    assert int(service["stop_grace_period"].removesuffix("s")) > settings.shutdown_grace_s
    target = service["build"]["target"]
    assert re.search(
        rf"^FROM\s+\S+\s+AS\s+{target}\s*$", (ROOT / "Dockerfile").read_text(), re.M | re.I
    )


def test_compose_memory_limit_covers_the_worst_case(
    compose: Manifest, clean_env: pytest.MonkeyPatch
) -> None:
    service = compose["services"]["fusionserve"]
    env = {name: str(value) for name, value in service["environment"].items()}
    settings = settings_from_env(env, clean_env)
    (tmp,) = [t for t in service["tmpfs"] if t.split(":")[0] == "/tmp"]
    # A tmpfs is memory: uploads spooled there count against mem_limit (they are among the
    # copies of the bodies held that the worst case counts).
    cpus = float(service["cpus"])
    terms = worst_case_bytes(settings, cuda=settings.device == "cuda", cpus=cpus)
    assert compose_bytes(service["mem_limit"]) >= needed_limit_bytes(terms), terms
    size = compose_bytes(re.fullmatch(r"/tmp:size=(\w+)", tmp).group(1))  # type: ignore[union-attr]
    bodies = settings.body_memory_mb * 2**20
    assert bodies <= size <= 2 * bodies


def test_compose_prometheus_scrapes_the_service(compose: Manifest) -> None:
    prometheus = compose["services"]["prometheus"]
    (mount,) = [v for v in prometheus["volumes"] if v.split(":")[1].endswith("prometheus.yml")]
    scrape = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == METRICS_PATH
    port = compose["services"]["fusionserve"]["environment"]["FUSIONSERVE_PORT"]
    assert job["static_configs"][0]["targets"] == [f"fusionserve:{port}"]
