"""The built-in demo source: frames made from public-domain face images, written to a temporary folder.

scikit-image's `astronaut` (Eileen Collins, NASA, public domain) moves across a
plain background, twice per frame (once mirrored), so the demo has two faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def astronaut_bgr() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as error:
        raise RuntimeError("the demo needs scikit-image: install emostream with the `demo` extra") from error
    rgb: np.ndarray = data.astronaut()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def demo_frames(count: int = 60, width: int = 800, height: int = 450) -> list[np.ndarray]:
    """`count` frames with the astronaut's head and shoulders twice, drifting sideways."""
    import cv2

    # MediaPipe's short-range model wants faces of about a fifth of the frame or more.
    face = cv2.resize(astronaut_bgr()[0:300, 100:400], (340, 340), interpolation=cv2.INTER_AREA)
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 200, dtype=np.uint8)
        shift = int(25 * np.sin(index / count * 2 * np.pi))
        frame[40:380, 30 + shift : 370 + shift] = face
        frame[70:410, 430 - shift : 770 - shift] = face[:, ::-1]
        frames.append(frame)
    return frames


def write_demo(folder: Path, count: int = 60) -> Path:
    """Write the demo frames as numbered JPEGs into `folder` and return it."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(demo_frames(count)):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), frame)
    return folder
