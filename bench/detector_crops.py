"""Labelled detector crops for the promotion gate: the pipeline benchmark's faces, as the detector crops them.

The benchmark video's frames (bench/pipeline.py: FER-2013 validation faces upscaled at known places)
go through the real MediaPipe detector and crop; each crop whose box lies on a known face is saved
as a 48x48 PNG under OUT/<label>/, the class-folder layout `emostream deploy promote --crops` reads:

    uv run python bench/detector_crops.py [--data ../shared/data/fer2013/validation] [--out runs/detector-crops]

These are crops of a public dataset's faces, written only where asked; live faces are never written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from pipeline import FACE_SIDE, FRAME_H, FRAME_W, LABELS, SLOTS, load_faces

Placed = list[tuple[tuple[int, int], str]]


def frames(faces: list[tuple[np.ndarray, str]], count: int) -> list[tuple[np.ndarray, Placed]]:
    """The benchmark's frames with, per frame, each face's top-left corner and label."""
    out = []
    for seq in range(count):
        frame = np.full((FRAME_H, FRAME_W, 3), 90, dtype=np.uint8)
        placed: Placed = []
        for slot, (x, y) in enumerate(SLOTS):
            grey, label = faces[(seq // 5 * len(SLOTS) + slot) % len(faces)]
            big = cv2.resize(grey, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
            frame[y : y + FACE_SIDE, x : x + FACE_SIDE] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
            placed.append(((x, y), label))
        out.append((frame, placed))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--out", type=Path, default=Path("runs/detector-crops"))
    parser.add_argument("--frames", type=int, default=1000, help="every 5 frames show 3 new faces")
    args = parser.parse_args()
    from emostream_detector.detection import finder_from_settings
    from emostream_detector.model_file import fetch
    from emostream_detector.settings import DetectorSettings

    settings = DetectorSettings()  # the detector service's own settings (DETECTOR_* variables)
    models = fetch(settings.model_dir)
    finder = finder_from_settings(settings, models)
    if args.out.exists():
        shutil.rmtree(args.out)
    written: Counter[str] = Counter()
    seen: set[tuple[int, int]] = set()
    for seq, (frame, placed) in enumerate(frames(load_faces(args.data, per_class=200, seed=0), args.frames)):
        if seq % 5:  # a face stays 5 frames: one crop of each is enough
            continue
        for detection in finder.find(frame, "bench"):
            cx, cy = detection.box.x + detection.box.w / 2, detection.box.y + detection.box.h / 2
            for slot, ((x, y), label) in enumerate(placed):
                if x <= cx <= x + FACE_SIDE and y <= cy <= y + FACE_SIDE and (seq, slot) not in seen:
                    seen.add((seq, slot))
                    (args.out / label).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(args.out / label / f"{seq:05d}-{slot}.png"), detection.crop)
                    written[label] += 1
    finder.close()
    total = len(range(0, args.frames, 5)) * len(SLOTS)
    print(f"{sum(written.values())} crops of {total} faces into {args.out}: {dict(sorted(written.items()))}")
    return 0 if written and set(written) == set(LABELS) else 1


if __name__ == "__main__":
    sys.exit(main())
