"""Chinese-CLIP's image preprocessing, in numpy: PIL image -> normalised ``[1, 3, S, S]`` float32.

The steps and constants are those of ``image_transform`` in cn-clip's ``cn_clip/clip/utils.py``
(https://github.com/OFA-Sys/Chinese-CLIP), which its training, evaluation and ONNX export all use::

    Compose([Resize((S, S), interpolation=BICUBIC), convert("RGB"), ToTensor(),
             Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])

* The image is resized to exactly ``S x S`` (224, or 336 for ViT-L-14-336), aspect ratio not kept and
  nothing cropped (unlike OpenAI CLIP's resize-shorter-side + center crop).
* Resizing happens before the RGB conversion, in the image's own mode, as cn-clip does. For PIL images,
  torchvision's ``Resize`` is ``PIL.Image.resize`` with the same filter, so the pixels agree exactly.
* Channels stay in RGB order (not OpenCV's BGR); values are scaled to 0..1 (``ToTensor``: /255) and
  normalised per channel with the mean and standard deviation below, which cn-clip took over from
  OpenAI CLIP (``openai/CLIP``, ``clip/clip.py`` ``_transform``): the statistics of CLIP's training images.

EXIF orientation is not applied (cn-clip does not); callers decode already-oriented previews or apply
``PIL.ImageOps.exif_transpose`` first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel (R, G, B) mean of 0..1 pixel values: cn-clip ``cn_clip/clip/utils.py`` ``image_transform``,
taken from OpenAI CLIP ``clip/clip.py`` ``_transform``."""

CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel (R, G, B) standard deviation of 0..1 pixel values; same sources as :data:`CLIP_MEAN`."""

DEFAULT_IMAGE_SIZE = 224
"""Input side in pixels of every cn-clip variant except ViT-L-14-336 (336); cn-clip ``_MODEL_INFO``."""

_MEAN = np.asarray(CLIP_MEAN, dtype=np.float32).reshape(1, 1, 3)
_STD = np.asarray(CLIP_STD, dtype=np.float32).reshape(1, 1, 3)


def resize_rgb(image: Image.Image, size: int = DEFAULT_IMAGE_SIZE) -> Image.Image:
    """Resize ``image`` to ``size x size`` with PIL's bicubic filter, then convert it to RGB.

    The order (resize, then convert) is cn-clip's; for the few modes PIL cannot resize it converts first.
    Palette and 1-bit images are resized by PIL with nearest neighbour whatever the filter asked, as in
    cn-clip; a transparent area keeps the colour PIL stores under it.

    Raises:
        ValueError: ``size`` is not positive.
    """
    if size <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    try:
        resized = image.resize((size, size), Image.Resampling.BICUBIC)
    except (ValueError, OSError):
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return resized if resized.mode == "RGB" else resized.convert("RGB")


def normalise_rgb(image: Image.Image) -> np.ndarray:
    """Turn an RGB image into CHW float32 ``(value / 255 - mean) / std`` of shape ``[3, H, W]``.

    The arithmetic is torchvision's ``ToTensor`` + ``Normalize`` in float32, step for step.

    Raises:
        ValueError: the image is not in mode RGB.
    """
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
    normalised = (pixels - _MEAN) / _STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess_image(image: Image.Image, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Preprocess one image for a cn-clip image model.

    Args:
        image: a decoded PIL image of any mode and size.
        size: the model's input side in pixels (224, or 336 for ViT-L-14-336).

    Returns:
        float32 array ``[1, 3, size, size]``, channels R, G, B, normalised with :data:`CLIP_MEAN` and
        :data:`CLIP_STD`.

    Raises:
        ValueError: ``size`` is not positive.
        OSError: PIL cannot decode the image data (a lazily loaded, truncated or corrupt file).
    """
    return normalise_rgb(resize_rgb(image, size))[np.newaxis]


def preprocess_images(images: Sequence[Image.Image], size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Preprocess several images into one float32 batch ``[n, 3, size, size]`` (``n`` may be 0).

    Raises:
        ValueError, OSError: as :func:`preprocess_image`.
    """
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return np.concatenate([preprocess_image(image, size) for image in images], axis=0)
