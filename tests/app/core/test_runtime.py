"""Provider selection. CUDA cannot run here, so its paths are driven through ORT for real where
possible: asking a CPU-only ONNX Runtime for CUDA shows the silent fallback we must detect."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from app.config.settings import Settings
from app.core import runtime
from app.core.engine import build_engine
from app.errors import StartupError

HAS_CUDA = runtime.CUDA in ort.get_available_providers()


def test_cpu_device_uses_cpu_provider(tiny_bundle_dir: Path) -> None:
    engine = build_engine(Settings(bundle_path=tiny_bundle_dir, device="cpu"))
    assert set(engine.providers) == {"image_encoder", "text_encoder", "fusion_head"}
    assert all(p == [runtime.CPU] for p in engine.providers.values())
    assert not engine.on_cuda


@pytest.mark.skipif(HAS_CUDA, reason="needs an ONNX Runtime without CUDA")
def test_cuda_required_but_missing_fails_startup(tiny_bundle_dir: Path) -> None:
    with pytest.raises(StartupError, match="device=cuda but ONNX Runtime has no CUDA"):
        build_engine(Settings(bundle_path=tiny_bundle_dir, device="cuda"))


@pytest.mark.skipif(HAS_CUDA, reason="needs an ONNX Runtime without CUDA")
def test_auto_falls_back_to_cpu_and_logs(
    tiny_bundle_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = build_engine(Settings(bundle_path=tiny_bundle_dir, device="auto"))
    assert all(p == [runtime.CPU] for p in engine.providers.values())
    assert "running on CPU" in caplog.text


class _FallbackSession:
    """A real CPU session that, like a CUDA provider failing to initialise, ignores CUDA."""

    def __init__(self, path: str, sess_options: object, providers: list[object]) -> None:
        self.requested = providers
        self._session = _REAL_SESSION(path, sess_options=sess_options, providers=[runtime.CPU])

    def get_providers(self) -> list[str]:
        return list(self._session.get_providers())


_REAL_SESSION = ort.InferenceSession


def test_cuda_requested_when_available(
    tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    providers = runtime.requested_providers(Settings(device="auto", cuda_device_id=1))
    cuda = {"device_id": 1, "arena_extend_strategy": "kNextPowerOfTwo"}
    assert providers == [(runtime.CUDA, cuda), runtime.CPU]
    assert runtime.requested_providers(Settings(device="cpu")) == [runtime.CPU]


def test_session_that_silently_drops_cuda_is_caught(
    tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # ORT can fall back to CPU without an error when CUDA fails to initialise
    # (onnxruntime#23372); what the session reports is what counts.
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime.ort, "InferenceSession", _FallbackSession)
    path = tiny_bundle_dir / "head.onnx"
    with pytest.raises(StartupError, match="CUDA provider failed to initialise"):
        runtime.create_session(path, Settings(device="cuda"))
    session = runtime.create_session(path, Settings(device="auto"))
    assert session.get_providers() == [runtime.CPU]
    assert session.requested[0] == (runtime.CUDA, runtime.cuda_options(Settings()))
    assert "fell back" in caplog.text


def test_thread_settings_reach_session_options() -> None:
    options = runtime.session_options(
        Settings(intra_op_threads=3, inter_op_threads=2, allow_spinning=True)
    )
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    default = runtime.session_options(Settings())
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_broken_model_file_is_a_startup_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(StartupError, match="could not load broken.onnx"):
        runtime.create_session(broken, Settings(device="cpu"))


def test_cuda_arena_settings_reach_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    settings = Settings(cuda_arena_extend_strategy="kSameAsRequested", cuda_mem_limit_mb=512)
    ((name, options), cpu) = runtime.requested_providers(settings)
    assert (name, cpu) == (runtime.CUDA, runtime.CPU)
    assert options == {
        "device_id": 0,
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": 512 * 2**20,
    }


def test_tensorrt_goes_first_with_its_engine_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(tensorrt=True, tensorrt_cache_dir=tmp_path, cuda_device_id=1)
    gpu = [runtime.TENSORRT, runtime.CUDA, runtime.CPU]
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: gpu)
    providers = runtime.requested_providers(settings)
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == gpu
    trt = providers[0]
    assert isinstance(trt, tuple)
    assert trt[1]["device_id"] == 1
    assert trt[1]["trt_engine_cache_enable"] is True
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path)
    # Without TensorRT in this ONNX Runtime: CUDA alone, and a warning.
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: gpu[1:])
    assert [p[0] for p in runtime.requested_providers(settings)[:1]] == [runtime.CUDA]
    assert "no TensorrtExecutionProvider" in caplog.text
