"""The fp16 recipe's device choice and its comparison with the committed fp32 evaluation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from models.recipes.fashion_mnist import build_fp16_bundle
from models.recipes.fashion_mnist.variant_build import EVALUATION_FILE, SOURCE_DIR

CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_without_the_cuda_provider_stops_at_once_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_fp16_bundle.ort, "get_available_providers", lambda: CPU_ONLY)
    with pytest.raises(SystemExit, match="needs a CUDA device") as raised:
        build_fp16_bundle.resolve_device("cuda")
    assert "onnxruntime-gpu" in str(raised.value)
    assert build_fp16_bundle.resolve_device("auto") == "cpu"
    assert build_fp16_bundle.resolve_device("cpu") == "cpu"
    with pytest.raises(SystemExit):
        build_fp16_bundle.main(["--device", "cuda", "--work", "/nonexistent"])


def test_auto_takes_cuda_when_onnx_runtime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_fp16_bundle.ort, "get_available_providers", lambda: WITH_CUDA)
    assert build_fp16_bundle.resolve_device("auto") == "cuda"
    assert build_fp16_bundle.resolve_device("cuda") == "cuda"


def _fp16(fp32: dict[str, Any], accuracy_change: float) -> dict[str, Any]:
    fp16 = copy.deepcopy(fp32)
    fp16["metrics"]["accuracy"] += accuracy_change
    fp16["ablation"][0]["accuracy"] += accuracy_change
    fp16["bundle"]["providers"] = {m: ["CUDAExecutionProvider"] for m in ("a", "b", "c")}
    return fp16


CHECK = {
    "rows": 256,
    "image_cosine": {"min": 0.99994},
    "text_cosine": {"min": 0.999999},
    "fused_top1_agreement": 0.996,
    "fused_max_abs_probability_diff": 0.0097,
}


def test_a_cpu_evaluation_says_it_did_not_check_float16_arithmetic() -> None:
    fp32 = json.loads((SOURCE_DIR / EVALUATION_FILE).read_text())
    fp16 = _fp16(fp32, 0.0)
    fp16["bundle"]["providers"] = {"a": ["CPUExecutionProvider"]}
    table = build_fp16_bundle.comparison(fp32, fp16, {"check": CHECK})
    assert "not float16 arithmetic, which `--device cuda` checks" in table


@pytest.mark.parametrize(("change", "verdict"), [(-0.0015, "PASS"), (0.0025, "MISS")])
def test_comparison_states_where_each_ran_and_the_verdict(change: float, verdict: str) -> None:
    fp32 = json.loads((SOURCE_DIR / EVALUATION_FILE).read_text())
    table = build_fp16_bundle.comparison(fp32, _fp16(fp32, change), {"check": CHECK})
    assert "fp32 on CPUExecutionProvider, fp16 on CUDAExecutionProvider." in table
    assert "float32" not in table  # no CPU caveat: the arithmetic was float16
    assert f"| Fused accuracy | {fp32['metrics']['accuracy']:.4f} |" in table
    assert f"Measured: {100 * change:+.2f} points: **{verdict}**" in table
