"""A frame's JPEG to pixels, refusing from the header alone what would not fit in memory.

The header names the image's size; decoding a 12000x12000 JPEG of 2 MB costs over a gigabyte,
so the size is checked before a single pixel is decoded. Pillow reads only the header here
(`Image.open` is lazy); OpenCV decodes.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from emostream.wire import Frame, WireError

MAX_PIXELS = 7680 * 4320
"""8K UHD: the largest frame decoded (about 100 MB as BGR)."""


def jpeg_size(data: bytes, what: str = "frame") -> tuple[int, int]:
    """(width, height) from a JPEG's header; WireError if it is not a JPEG."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as header:
                width, height = header.size
    except Image.DecompressionBombError as error:
        raise WireError(f"{what}: JPEG header: {error}", "too_many_pixels") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise WireError(f"{what}: image bytes are not a decodable JPEG", "undecodable") from error
    return int(width), int(height)


def decode_image(frame: Frame, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The frame as BGR pixels, after its header passed the size checks."""
    what = f"frame {frame.camera}/{frame.seq}"
    width, height = jpeg_size(frame.jpeg, what)
    if width * height > max_pixels:
        raise WireError(
            f"{what}: JPEG of {width}x{height} pixels ({width * height / 1e6:.1f} MP) is over the "
            f"{max_pixels / 1e6:.1f} MP limit; not decoded",
            "too_many_pixels",
        )
    if (width, height) != (frame.width, frame.height):
        raise WireError(f"{what}: says {frame.width}x{frame.height} but its JPEG is {width}x{height}", "bad_size")
    image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (height, width):
        raise WireError(f"{what}: image bytes are not a decodable JPEG", "undecodable")
    return image
