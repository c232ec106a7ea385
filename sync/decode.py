"""Decode preview bytes into an RGB image, rejecting bad input with a reason and bounded memory."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from immich_search.sync.errors import PermanentJobError

MAX_PIXELS = 64_000_000
"""Largest image decoded (8000 x 8000). Immich's previews are 1440 px on the shorter side (about 3 MP
for 3:2); anything far larger is a mis-set path or a decompression bomb."""

MAX_SIDE = 4096
"""Decoded images are reduced to at most this many pixels on the longer side before inference."""


def decode_preview(data: bytes) -> Image.Image:
    """Decode image bytes (JPEG, WebP, PNG, ... as Pillow reads them) into an RGB image.

    Args:
        data: the file's bytes.

    Returns:
        A loaded ``RGB`` image whose longer side is at most :data:`MAX_SIDE` pixels.

    Raises:
        PermanentJobError: zero bytes, not an image, truncated or corrupt, more than :data:`MAX_PIXELS`
            pixels (a decompression bomb).
    """
    if not data:
        raise PermanentJobError("preview file is empty (zero bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise PermanentJobError(
                    f"image too large: {width}x{height} pixels exceeds {MAX_PIXELS:,} (decompression bomb?)"
                )
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly, which bounds memory for huge files.
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image.load()
    except PermanentJobError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentJobError(f"image too large (decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise PermanentJobError("not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PermanentJobError(f"corrupt or truncated image: {exc}") from None
    if image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
    return image
