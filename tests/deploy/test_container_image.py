"""The container image: the Dockerfile's contract, the checks of deploy/verify_image.py, and
(marked slow) the real build, start, /classify and SIGTERM by that script. See docs/docker.md."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.config.settings import Settings
from tests.support.repo_paths import ROOT

DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_TARGETS = {"runtime": "cpu", "runtime-gpu": "cuda"}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DEPLOY / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def verify_image() -> ModuleType:
    return load("verify_image")


@pytest.fixture(scope="module")
def image_requirements() -> ModuleType:
    return load("image_requirements")


def stages() -> dict[str, list[tuple[str, str]]]:
    """Dockerfile instructions per named stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            current = []
            match = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
            result[match.group(1) if match else f"unnamed-{len(result)}"] = current
        current.append((keyword.upper(), rest.strip()))
    return result


def last(instructions: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for key, rest in instructions if key == keyword]
    assert values, f"no {keyword}"
    return values[-1]


def stage_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, rest in instructions:
        if key == "ENV":
            env |= dict(re.findall(r"(\w+)=(\S+)", rest))
    return env


@pytest.mark.parametrize(("target", "device"), RUNTIME_TARGETS.items())
def test_runtime_stage_contract(target: str, device: str) -> None:
    instructions = stages()[target]
    cmd = json.loads(last(instructions, "CMD"))  # exec form is a JSON array
    assert cmd[-1] == "serve"
    assert not any(key == "ENTRYPOINT" for key, _ in instructions)
    user = last(instructions, "USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    health = last(instructions, "HEALTHCHECK")
    assert "/livez" in health
    assert json.loads(health[health.index("CMD") + 3 :])[0].startswith("/")
    env = stage_env(instructions)
    assert env["FUSIONSERVE_HOST"] == "0.0.0.0"
    assert env["FUSIONSERVE_DEVICE"] == device
    run_lines = " ".join(rest for key, rest in instructions if key == "RUN")
    assert "torch" not in run_lines


def test_dockerfile_env_names_are_real_settings() -> None:
    names = {name for instructions in stages().values() for name in stage_env(instructions)}
    fusion = {name for name in names if name.startswith("FUSIONSERVE_")}
    assert fusion
    fields = {f"FUSIONSERVE_{field.upper()}" for field in Settings.model_fields}
    assert fusion <= fields, fusion - fields


def test_default_target_is_the_cpu_image() -> None:
    final = list(stages())[-1]
    assert stages()[final] == [("FROM", "runtime")]


def test_requirements_swap_onnxruntime_for_the_gpu_build(image_requirements: ModuleType) -> None:
    pyproject = ROOT / "pyproject.toml"
    cpu = image_requirements.requirements(pyproject, [], [])
    gpu = image_requirements.requirements(pyproject, ["gpu"], ["onnxruntime"])
    names = [image_requirements.requirement_name(r) for r in gpu]
    assert "onnxruntime" not in names
    assert "onnxruntime-gpu" in names
    assert [r for r in cpu if not r.startswith("onnxruntime")] == gpu[: len(cpu) - 1]
    with pytest.raises(ValueError, match="unknown extras"):
        image_requirements.requirements(pyproject, ["no-such-extra"], [])


def good_config() -> dict[str, Any]:
    return {
        "User": "10001:10001",
        "Cmd": ["/opt/venv/bin/fusionserve", "serve"],
        "Entrypoint": [],
        "Healthcheck": {"Test": ["CMD", "/opt/venv/bin/python", "-c", "... /livez ..."]},
        "Env": ["FUSIONSERVE_HOST=0.0.0.0", "FUSIONSERVE_DEVICE=cpu", "FUSIONSERVE_BUNDLE_PATH=/b"],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"User": ""}, "non-root"),
        ({"User": "0:0"}, "non-root"),
        ({"User": "fusionserve"}, "numeric"),
        ({"Cmd": ["/bin/sh", "-c", "fusionserve serve"]}, "exec form"),
        ({"Entrypoint": ["/bin/sh", "-c"]}, "exec form"),
        ({"Healthcheck": None}, "HEALTHCHECK"),
        ({"Healthcheck": {"Test": ["CMD-SHELL", "curl /livez"]}}, "HEALTHCHECK"),
        ({"Env": ["FUSIONSERVE_DEVICE=cpu", "FUSIONSERVE_BUNDLE_PATH=/b"]}, "FUSIONSERVE_"),
    ],
)
def test_config_check_rejects(
    verify_image: ModuleType, change: dict[str, Any], message: str
) -> None:
    assert verify_image.check_config(good_config(), "cpu")["user"] == "10001:10001"
    with pytest.raises(verify_image.VerifyError, match=message):
        verify_image.check_config(good_config() | change, "cpu")


def fake_root(tmp_path: Path, *dists: str) -> Path:
    site = tmp_path / "opt/venv/lib/python3.11/site-packages"
    site.mkdir(parents=True)
    for dist in dists:
        (site / f"{dist}-1.0.dist-info").mkdir()
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "srv/bundle").mkdir(parents=True)
    (tmp_path / "srv/bundle/manifest.json").write_text("{}")
    return tmp_path


def test_contents_check_accepts_a_lean_image(verify_image: ModuleType, tmp_path: Path) -> None:
    root = fake_root(tmp_path, "onnxruntime", "fastapi")
    result = verify_image.check_contents(root, "onnxruntime", "/srv/bundle")
    assert result["onnxruntime"] == ["onnxruntime"]


def test_the_gpu_image_may_hold_nvimagecodec_alone(
    verify_image: ModuleType, tmp_path: Path
) -> None:
    allowed = verify_image.GPU_IMAGE_WHEELS
    root = fake_root(tmp_path / "gpu", "onnxruntime_gpu", "nvidia_nvimgcodec_cu13")
    result = verify_image.check_contents(root, "onnxruntime_gpu", "/srv/bundle", allowed)
    assert result["onnxruntime"] == ["onnxruntime_gpu"]
    with pytest.raises(verify_image.VerifyError, match="CUDA wheels"):
        verify_image.check_contents(root, "onnxruntime_gpu", "/srv/bundle")  # not on CPU
    heavy = fake_root(tmp_path / "heavy", "onnxruntime_gpu", "nvidia_cudnn_cu13")
    with pytest.raises(verify_image.VerifyError, match="nvidia_cudnn_cu13"):
        verify_image.check_contents(heavy, "onnxruntime_gpu", "/srv/bundle", allowed)


@pytest.mark.parametrize(
    ("dists", "compiler", "message"),
    [
        (("onnxruntime", "torch"), None, "torch"),
        (("onnxruntime", "nvidia_cudnn_cu13"), None, "CUDA wheels"),
        (("onnxruntime", "onnxruntime_gpu"), None, "exactly"),
        (("fastapi",), None, "exactly"),
        (("onnxruntime",), "gcc", "compilers"),
    ],
)
def test_contents_check_rejects(
    verify_image: ModuleType,
    tmp_path: Path,
    dists: tuple[str, ...],
    compiler: str | None,
    message: str,
) -> None:
    root = fake_root(tmp_path, *dists)
    if compiler:
        (root / "usr/bin" / compiler).write_text("")
    with pytest.raises(verify_image.VerifyError, match=message):
        verify_image.check_contents(root, "onnxruntime", "/srv/bundle")


@pytest.mark.slow
def test_image_builds_starts_classifies_and_stops_cleanly(tmp_path: Path) -> None:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (apt-get install buildah debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("deploy/verify_image.py needs root (chroot, mounts, PID namespace)")
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "verify_image.py"), "--report", str(report_path)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = json.loads(report_path.read_text())
    assert report["ok"], report.get("error")
    sample = json.loads((ROOT / "models/samples/samples.json").read_text())[0]
    for target in RUNTIME_TARGETS:
        run = report["checks"][target]["run"]
        assert run["classify"]["label"] == sample["label"]
        assert set(run["demo_page_bytes"]) == {"/", "/demo/demo.js"}
        assert run["sigterm_exit"] == 0
        assert run["pid_in_namespace"] == 1
        assert run["uids"] == ["10001"]
        assert run["ready"]["device"] == "cpu"
    assert report["checks"]["runtime"]["contents"]["onnxruntime"] == ["onnxruntime"]
    gpu = report["checks"]["runtime-gpu"]
    assert gpu["contents"]["onnxruntime"] == ["onnxruntime_gpu"]
    assert gpu["device_cuda_without_gpu"]["exit"] != 0
