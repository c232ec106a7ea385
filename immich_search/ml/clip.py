"""CLIP for ``ml``: a loaded cn-clip variant, answering image and text requests as vectors.

Immich reads a CLIP answer as a pgvector literal inside a JSON string (``"[0.01,-0.2,...]"``) and stores
it as it is; MT Photos reads a list of decimal strings. The vectors are cn-clip's, L2-normalised
(see :mod:`immich_search.runtime.model`), computed from RGB pixels as cn-clip was trained.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from immich_search.ml.errors import RequestError
from immich_search.runtime.model import ClipModel

MAX_TEXT_CHARS = 2000
"""Longest query accepted, in characters; cn-clip reads 50 tokens, so more is pointless (and suspect)."""


def vector_literal(vector: np.ndarray) -> str:
    """Format a float vector as Immich's ML service does: a JSON array string (``"[0.1,-0.2]"``).

    Each value is written with 9 significant digits (enough to restore a float32 exactly); pgvector
    and JSON both read the occasional exponent (``1e-05``).
    """
    return "[" + ",".join(format(value, ".9g") for value in np.asarray(vector, dtype=np.float32).tolist()) + "]"


class ClipService:
    """The loaded cn-clip model: image -> vector, text -> vector, one at a time (callers bound concurrency).

    Args:
        model: a :class:`ClipModel`; its encoders load on first use unless :meth:`warm_up` is called.
    """

    def __init__(self, model: ClipModel) -> None:
        self.model = model
        self.variant = model.variant

    def warm_up(self, roles: tuple[str, ...] = ("image", "text")) -> None:
        """Load the encoders now, so a broken file fails at start-up (raises ModelError)."""
        if "image" in roles:
            _ = self.model.image_encoder
        if "text" in roles:
            _ = self.model.text_encoder

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """Return the L2-normalised float32 vector ``[embed_dim]`` of an RGB image (raises ModelError)."""
        return self.model.encode_images([image])[0]

    def encode_text(self, text: str) -> np.ndarray:
        """Return the L2-normalised float32 vector ``[embed_dim]`` of a text.

        Raises:
            RequestError: 422 for an empty or overlong text.
            ModelError: inference failed.
        """
        if not text.strip():
            raise RequestError(422, "the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestError(422, f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted")
        return self.model.encode_texts([text])[0]
