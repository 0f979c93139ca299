# What app/preprocess/jpeg_pixels.py and jpeg_header.py call, with simplejpeg 1.9.0's signature (its own
# _jpeg.pyi, which the package ships without a py.typed marker).
from typing import SupportsFloat, SupportsInt

import numpy as np

__version__: str

def decode_jpeg(
    data: bytes,
    colorspace: str = "rgb",
    fastdct: bool = False,
    fastupsample: bool = False,
    min_height: SupportsInt = 0,
    min_width: SupportsInt = 0,
    min_factor: SupportsFloat = 1,
    buffer: object = None,
    strict: bool = True,
) -> np.ndarray: ...
def decode_jpeg_header(
    data: bytes,
    min_height: SupportsInt = 0,
    min_width: SupportsInt = 0,
    min_factor: SupportsFloat = 1,
    strict: bool = True,
) -> tuple[int, int, str, str]: ...
