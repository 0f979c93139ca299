"""IO binding (``app.core.bound_session``) on the CPU provider, where it runs the same code path as
on CUDA with the host as the device: the same answers as plain sessions, image features kept
for the head when the batch allows it, the host path otherwise. The CUDA run is marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.core.bound_session import BoundSession
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import TinyHead, make_tiny_bundle_with_head

TEXTS = ["a small red cat", "the big dog", "a photo of a bird"]


@pytest.fixture(scope="module")
def optional_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    root = tmp_path_factory.mktemp("bound")
    return root, make_tiny_bundle_with_head(root, presence=True, temperature=2.0)


def _engine(bundle: Path, io_binding: str, device: str = "cpu") -> Engine:
    return build_engine(make_settings(bundle, device=device, io_binding=io_binding))


def _items(engine: Engine, explain: bool = False) -> list[PreparedItem]:
    images = [encode_image(photo(40 + 8 * i, 36, seed=i), "PNG") for i in range(len(TEXTS))]
    return [
        engine.pipeline.prepare(image, text, explain)
        for image, text in zip(images, TEXTS, strict=True)
    ]


class CountingSession(BoundSession):
    """A bound session that counts how often each way of running is used."""

    def __init__(self, bound: BoundSession) -> None:
        super().__init__(bound.session, bound.device, bound.device_id)
        self.kept = 0
        self.copied = 0

    def run(self, output_names: list[str] | None, input_feed: Any) -> list[np.ndarray]:
        self.copied += 1
        return super().run(output_names, input_feed)

    def run_kept(self, output_name: str, input_feed: Any) -> ort.OrtValue:
        self.kept += 1
        return super().run_kept(output_name, input_feed)


def test_auto_binds_nothing_on_the_cpu_and_on_binds_every_session(
    optional_bundle: tuple[Path, TinyHead],
) -> None:
    plain = _engine(optional_bundle[0], "auto")
    bound = _engine(optional_bundle[0], "on")
    off = _engine(optional_bundle[0], "off")
    for engine in (plain, off):
        sessions = (engine.pipeline._image, engine.pipeline._text, engine.pipeline._head)
        assert not any(isinstance(s, BoundSession) for s in sessions)
    sessions = (bound.pipeline._image, bound.pipeline._text, bound.pipeline._head)
    assert all(isinstance(s, BoundSession) and s.device == "cpu" for s in sessions)


def test_bound_run_gives_the_plain_sessions_outputs(
    optional_bundle: tuple[Path, TinyHead],
) -> None:
    plain = _engine(optional_bundle[0], "off")
    bound = _engine(optional_bundle[0], "on")
    items = _items(plain)
    pixels = np.stack([item.pixels for item in items if item.pixels is not None])
    expected = plain.pipeline.encode_images(pixels)
    np.testing.assert_array_equal(bound.pipeline.encode_images(pixels), expected)
    kept = bound.pipeline._keeping
    assert kept is not None
    value = kept.run_kept(
        bound.bundle.manifest.image_encoder.output, bound.pipeline.image_feed(pixels)
    )
    assert isinstance(value, ort.OrtValue)
    assert value.device_name() == "cpu"
    np.testing.assert_array_equal(value.numpy(), expected)


def test_a_full_batch_keeps_image_features_for_the_head_with_the_same_answers(
    optional_bundle: tuple[Path, TinyHead],
) -> None:
    plain = _engine(optional_bundle[0], "off")
    bound = _engine(optional_bundle[0], "on")
    image = CountingSession(bound.pipeline._image)  # type: ignore[arg-type]
    bound.pipeline._image = image
    bound.pipeline._keeping = image
    items = _items(plain)
    np.testing.assert_allclose(bound.pipeline.run(items), plain.pipeline.run(items), atol=1e-6)
    assert (image.kept, image.copied) == (1, 0)
    results = bound.pipeline.run_items(items)
    assert (image.kept, image.copied) == (2, 0)
    for result, expected in zip(results, plain.pipeline.run(items), strict=True):
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)


@pytest.mark.parametrize("case", ["image missing", "explain"])
def test_batches_that_need_host_features_take_the_host_path(
    optional_bundle: tuple[Path, TinyHead], case: str
) -> None:
    plain = _engine(optional_bundle[0], "off")
    bound = _engine(optional_bundle[0], "on")
    image = CountingSession(bound.pipeline._image)  # type: ignore[arg-type]
    bound.pipeline._image = image
    bound.pipeline._keeping = image
    items = _items(plain, explain=case == "explain")
    if case == "image missing":
        items[1] = plain.pipeline.prepare(None, TEXTS[1])
    results = bound.pipeline.run_items(items)
    expected = plain.pipeline.run_items(items)
    assert (image.kept, image.copied) == (0, 1)
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
        for a, b in (
            (got.without_image, want.without_image),
            (got.without_text, want.without_text),
        ):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                np.testing.assert_allclose(a, b, atol=1e-6)
    if case == "explain":
        assert all(result.without_image is not None for result in results)


@pytest.mark.cuda
def test_on_cuda_features_stay_on_the_gpu_and_answers_match_the_cpu(
    optional_bundle: tuple[Path, TinyHead],
) -> None:
    cpu = _engine(optional_bundle[0], "off")
    gpu = _engine(optional_bundle[0], "auto", device="cuda")
    kept = gpu.pipeline._keeping
    assert isinstance(kept, BoundSession)
    assert kept.device == "cuda"
    items = _items(cpu)
    pixels = np.stack([item.pixels for item in items if item.pixels is not None])
    value = kept.run_kept(gpu.bundle.manifest.image_encoder.output, gpu.pipeline.image_feed(pixels))
    assert value.device_name().lower() == "cuda"
    np.testing.assert_allclose(gpu.pipeline.run(items), cpu.pipeline.run(items), atol=1e-4)


def test_info_says_how_the_models_run(optional_bundle: tuple[Path, TinyHead]) -> None:
    for io_binding, bound in (("auto", False), ("on", True)):
        settings = make_settings(optional_bundle[0], io_binding=io_binding)
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            execution = client.get("/info").json()["execution"]
        assert execution == {
            "io_binding": bound,
            "image_decoder": "cpu",
            "gpu_decode_fallbacks": 0,
        }
