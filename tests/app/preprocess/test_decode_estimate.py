"""The decode estimate against the measured peak memory, for every format and mode accepted.

Each case is decoded once in a child process (nothing else allocating) after the allocator
has returned its free memory: the peak is the rise of VmHWM over VmRSS, reset with
/proc/self/clear_refs just before the decode. The estimate may over-estimate; it must never
under-estimate by more than 10%, and an estimate more than twice the peak (plus 16 MiB of
fixed costs) would refuse images the budget could hold, so that is a failure too.

Every mode a file of an allowed format opens in is covered (HSV and PA come from no file).
The images are 2400x1600 (3.8 megapixels: reduced 2x and converted in several bands, as a
large image is) except the RLE8 BMP (1600x1600), in flat blocks so that they encode fast.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from bench.memory.near_cap_images import bmp_rle8
from tests.support.repo_paths import ROOT

SIZE = (2400, 1600)
MiB = 2**20


def _blocks() -> Image.Image:
    rng = np.random.default_rng(21)
    cells = rng.integers(0, 256, (SIZE[1] // 40, SIZE[0] // 40, 4), dtype=np.uint8)
    cells[..., 3] = np.linspace(0, 255, SIZE[0] // 40, dtype=np.uint8)[None, :]
    return Image.fromarray(cells, "RGBA").resize(SIZE, Image.Resampling.NEAREST)


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _cases() -> dict[str, Callable[[Image.Image], bytes]]:
    def grey16(rgba: Image.Image) -> Image.Image:
        return Image.fromarray(np.asarray(rgba.convert("L"), dtype=np.uint16) * 257)

    def rgb(rgba: Image.Image) -> Image.Image:
        return rgba.convert("RGB")

    return {
        "jpeg-rgb": lambda i: _save(rgb(i), "JPEG", quality=90),
        "jpeg-rgb-progressive": lambda i: _save(rgb(i), "JPEG", progressive=True, subsampling=0),
        "jpeg-l": lambda i: _save(i.convert("L"), "JPEG"),
        "jpeg-cmyk": lambda i: _save(i.convert("CMYK"), "JPEG"),
        "jpeg-cmyk-progressive": lambda i: _save(i.convert("CMYK"), "JPEG", progressive=True),
        "png-rgb": lambda i: _save(rgb(i), "PNG", compress_level=1),
        "png-rgba": lambda i: _save(i, "PNG", compress_level=1),
        "png-la": lambda i: _save(i.convert("LA"), "PNG", compress_level=1),
        "png-l": lambda i: _save(i.convert("L"), "PNG", compress_level=1),
        "png-p": lambda i: _save(rgb(i).quantize(64), "PNG"),
        "png-p-transparency": lambda i: _save(rgb(i).quantize(64), "PNG", transparency=3),
        "png-i16": lambda i: _save(grey16(i), "PNG", compress_level=1),
        "png-1": lambda i: _save(i.convert("1"), "PNG"),
        "gif-p": lambda i: _save(rgb(i).quantize(64), "GIF"),
        "webp-rgb": lambda i: _save(rgb(i), "WEBP", quality=80, method=0),
        "webp-rgba": lambda i: _save(i, "WEBP", lossless=True, quality=0, method=0),
        "bmp-rgb": lambda i: _save(rgb(i), "BMP"),
        "bmp-p": lambda i: _save(rgb(i).quantize(64), "BMP"),
        "bmp-1": lambda i: _save(i.convert("1"), "BMP"),
        "bmp-rle8": lambda i: bmp_rle8(min(SIZE)),
        "tiff-rgb": lambda i: _save(rgb(i), "TIFF", compression="tiff_deflate"),
        "tiff-rgba": lambda i: _save(i, "TIFF", compression="tiff_lzw"),
        "tiff-l": lambda i: _save(i.convert("L"), "TIFF", compression="tiff_deflate"),
        "tiff-i16": lambda i: _save(grey16(i), "TIFF", compression="tiff_deflate"),
        "tiff-cmyk": lambda i: _save(i.convert("CMYK"), "TIFF", compression="tiff_deflate"),
        "tiff-lab": lambda i: _save(rgb(i).convert("LAB"), "TIFF", compression="tiff_deflate"),
        "tiff-ycbcr": lambda i: _save(rgb(i).convert("YCbCr"), "TIFF"),
        "tiff-i16-big-endian": lambda i: _save(grey16(i).convert("I;16B"), "TIFF"),
        "tiff-1": lambda i: _save(i.convert("1"), "TIFF", compression="group4"),
        "tiff-jpeg": lambda i: _save(rgb(i), "TIFF", compression="jpeg"),
        "tiff-one-strip": lambda i: _save(
            rgb(i), "TIFF", compression="tiff_deflate", strip_size=2**30
        ),
        "tiff-uncompressed": lambda i: _save(rgb(i), "TIFF"),
    }


# Decodes every file of a folder as the service does (default bundle's preprocessing) and
# prints {name: [estimate, measured peak]} as JSON. JPEGs also without draft.
MEASURE = """
import ctypes, gc, json, os, re, sys
from app.preprocess.image import ImageDecoder
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS as SPEC

def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

trim = ctypes.CDLL(None).malloc_trim
decoders = {"": ImageDecoder(SPEC, max_pixels=10**8, jpeg_draft=True),
            "-undrafted": ImageDecoder(SPEC, max_pixels=10**8, jpeg_draft=False)}
folder = sys.argv[1]
files = {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}
for data in files.values():  # first use of every codec: its one-off allocations
    decoders[""](data)
results = {}
for name, data in files.items():
    for suffix, decode in decoders.items():
        if suffix and not name.startswith("jpeg"):
            continue
        estimate = decode.peak_bytes(data)
        gc.collect()
        trim(0)
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS
        decode(data)
        results[name + suffix] = [estimate, status("VmHWM") - before]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError as exc:
        pytest.skip(f"peak RSS cannot be reset here ({exc})")
    folder = tmp_path_factory.mktemp("decode-cases")
    image = _blocks()
    for name, encode in _cases().items():
        (folder / name).write_bytes(encode(image))
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results: dict[str, list[int]] = json.loads(done.stdout)
    return results


def test_every_case_was_measured(measured: dict[str, list[int]]) -> None:
    jpegs = [name for name in _cases() if name.startswith("jpeg")]
    assert set(measured) == set(_cases()) | {f"{name}-undrafted" for name in jpegs}


@pytest.mark.parametrize(
    "case",
    [*_cases(), *(f"{n}-undrafted" for n in _cases() if n.startswith("jpeg"))],
)
def test_estimate_covers_the_measured_peak(measured: dict[str, list[int]], case: str) -> None:
    estimate, peak = measured[case]
    assert peak > 0
    assert estimate >= 0.9 * peak, (
        f"{case}: estimate {estimate / MiB:.1f} MiB, peak {peak / MiB:.1f}"
    )
    assert estimate <= 2 * peak + 16 * MiB, f"{case}: {estimate / MiB:.1f} MiB for {peak / MiB:.1f}"
