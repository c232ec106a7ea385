"""Decoding the images that reach ``ml``: every way an upload can be bad becomes a clear 4xx.

Immich sends the bytes of an asset's preview JPEG; MT Photos sends the photo itself. Both can be empty,
not an image, truncated or enormous; PIL's exceptions for those are turned into
:class:`~immich_search.ml.errors.RequestError` here so that no handler ever answers 500 for bad input.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from immich_search.ml.errors import RequestError

DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest upload accepted, in bytes (50 MiB: a 1440 px preview is ~0.2 MB, a 100 MP JPEG ~30 MB)."""

DEFAULT_MAX_PIXELS = 120_000_000
"""Largest image accepted, in pixels (width x height): above PIL's own bomb limit (89.5 MP) and any
camera's output, below what would take gigabytes of RAM to decode (120 MP RGB is 360 MB)."""


def decode_image(
    data: bytes, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode an uploaded image fully into an RGB PIL image, EXIF orientation applied.

    Args:
        data: the uploaded bytes.
        max_bytes: uploads larger than this are refused (413).
        max_pixels: images with more pixels than this are refused (413) before they are decoded.

    Returns:
        the loaded image, mode ``RGB``.

    Raises:
        RequestError: 400 empty, not an image, truncated or corrupt; 413 too large.
    """
    if not data:
        raise RequestError(400, "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise RequestError(413, f"the image is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        with warnings.catch_warnings():
            # PIL warns (DecompressionBombWarning) before it raises; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise RequestError(
                    413, f"the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return image if image.mode == "RGB" else image.convert("RGB")
    except RequestError:
        raise
    except UnidentifiedImageError as error:
        raise RequestError(400, "the upload is not an image PIL can read (JPEG, PNG, WebP, ...)") from error
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"the image is too large: {error}") from error
    except (OSError, ValueError, SyntaxError) as error:
        # PIL: "image file is truncated", "broken data stream", bad headers (SyntaxError in some plugins).
        raise RequestError(400, f"the image cannot be decoded: {error}") from error
