"""What turns a request into a batch item, without the models: a bundle's request policy
(``app.core.request_policy``), its image decoder and its tokenizer. The service's engine has
one (``Engine.preparer``); ``build_preparer`` loads one alone, for processes that only
prepare items (the Ray engine's preparing tasks, ``app.scoring.ray_stages``), so that they
hold no ONNX Runtime session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.bundle import load_bundle
from app.config.settings import Settings
from app.core.encoders import open_preprocessing
from app.core.request_policy import RequestPolicy
from app.preprocess.image import ImageDecoder
from app.preprocess.text import TextTokenizer


@dataclass(frozen=True)
class ItemPreparer:
    """A bundle's request policy, image decoder and tokenizer."""

    policy: RequestPolicy
    decoder: ImageDecoder
    tokenizer: TextTokenizer

    def decode(self, image: bytes) -> np.ndarray:
        """The image encoder's input for an image the policy accepted; raises
        ``RequestError`` subclasses for one that cannot be decoded."""
        return self.decoder(image)

    def tokenise(self, text: str) -> np.ndarray:
        """The token ids of a text the policy accepted (and cleaned)."""
        return self.tokenizer.encode(text)


def build_preparer(settings: Settings) -> ItemPreparer:
    """The preparer of the bundle at ``settings.bundle_path`` (hashes checked as the service
    checks them), decoding on the CPU; raises ``StartupError``."""
    bundle = load_bundle(settings.bundle_path, verify_hashes=settings.verify_bundle_hashes)
    decoder, tokenizer = open_preprocessing(bundle, settings)
    policy = RequestPolicy(bundle.manifest.fusion_head, settings.max_text_chars)
    return ItemPreparer(policy, decoder, tokenizer)
