"""The start of a child process that decodes images as a checkout's service does.

bench.memory.decode_memory times decodes with it and bench.memory.decode_instructions counts
their instructions; each appends its own loop. The child imports the checkout's own code
(``app``, ``models.export``), not this one's, so it is Python source run with ``python -c``.
"""

from __future__ import annotations

# A child process's decoder, as the service calls it (with a decode budget where the checkout
# has one): argv[1] the checkout, argv[2] a pickle of [(encoded image, format)].
DECODER_SETUP = """
import json, pickle, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from app.preprocess.image import ImageDecoder
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS
images = pickle.load(open(sys.argv[2], "rb"))
decoder = ImageDecoder(EFFICIENTNET_LITE_PREPROCESS, max_pixels=50_000_000, min_side=8)
try:  # as the service calls it: with a decode budget, where the checkout has one
    from app.memory.memory_budget import MemoryBudget
    from app.preprocess.decode_budget import DecodeBudget
    from app.preprocess.decode_pace import DecodePace
    budget = DecodeBudget(MemoryBudget(256 * 2**20), DecodePace(), float("inf"))
    decode = lambda data: decoder(data, budget)
except ImportError:
    decode = decoder
"""
