"""Detector benchmark: cost per frame and recall per face-size bucket of each detection range, in process.

    uv run python bench/detection.py [--frames 60] [--data ../shared/data/fer2013/validation]

Runs the detector's FaceFinder (no Redis, no classifier) on the frames of bench/pipeline.py's
scenarios: `near` (640x360, three 190 px faces, also padded to 640x480) and `far` (1280x720,
eight faces of 40-128 px), and on `heads`: 1280x720 frames with six real heads and shoulders
(scikit-image's astronaut) whose faces are 40-110 px, since FER-2013's tight face crops are harder
for a detector than faces with a head around them. For each range (near, far, auto) it prints milliseconds per frame
(wall and CPU of this process, LiteRT on one thread), model calls per frame (the same on any
machine), recall per bucket and false positives. The first frame of each video is a warm-up and
not counted; each range starts with an empty memory of the camera. Last, `demo`: the 60 frames of
the built-in demo (`emostream up` with no source, two astronauts drifting, 800x450), counting the
frames where a range finds other than the demo's two faces.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from emostream_detector.detection import RANGES, FaceFinder
from emostream_detector.model_file import FAR, NEAR, fetch_model
from emostream_detector.settings import DetectorRange

from emostream.demo import astronaut_bgr, demo_frames

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import Truth, bucket_name, compose, load_faces

HEAD_CROP = (0, 300, 100, 400)  # astronaut rows, columns: head and shoulders, the face a third of the side
HEAD_FACE = (75 / 300, 75 / 300, 100 / 300)  # the face's left, top and side as shares of that crop


def compose_heads(frames: int, path: Path) -> list[Truth]:
    """1280x720 frames with six real heads (scikit-image's astronaut) whose faces are 40-110 px; 5 frames a scene."""
    y0, y1, x0, x1 = HEAD_CROP
    head = astronaut_bgr()[y0:y1, x0:x1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (1280, 720))
    truths: list[Truth] = []
    for seq in range(frames):
        rng = np.random.default_rng(seq // 5)
        frame = np.full((720, 1280, 3), 90, dtype=np.uint8)
        for slot in range(6):
            face = int(rng.integers(40, 111))  # heads of up to 330 px fit their cells
            side = round(face / HEAD_FACE[2])
            cell_x, cell_y = slot % 3 * 426, slot // 3 * 360
            x = cell_x + int(rng.integers(0, max(1, 426 - side)))
            y = cell_y + int(rng.integers(0, max(1, 360 - side)))
            patch = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)[: 720 - y, : 1280 - x]
            frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
            truths.append(Truth(seq, (x + round(HEAD_FACE[0] * side), y + round(HEAD_FACE[1] * side), face, face), ""))
        writer.write(frame)
    writer.release()
    return truths


def read_frames(video: Path, height: int) -> list[np.ndarray]:
    """The video's frames, padded at the bottom with background up to `height` rows."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        pad = max(0, height - frame.shape[0])
        frames.append(cv2.copyMakeBorder(frame, 0, pad, 0, 0, cv2.BORDER_CONSTANT, value=(90, 90, 90)))


def inside(box: tuple[int, int, int, int], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def measure(finder: FaceFinder, frames: list[np.ndarray], truths: list[Truth]) -> dict[str, object]:
    finder.find(frames[0], "warm-up")  # first calls allocate
    found: dict[int, list[tuple[float, float]]] = {}
    wall, cpu, calls = time.perf_counter(), time.process_time(), finder.model_calls
    for seq, frame in enumerate(frames):
        found[seq] = [(d.box.x + d.box.w / 2, d.box.y + d.box.h / 2) for d in finder.find(frame, "bench")]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    calls = finder.model_calls - calls
    buckets: dict[str, list[int]] = {}
    for truth in truths:
        tally = buckets.setdefault(bucket_name(truth.box[2]), [0, 0])
        tally[0] += 1
        tally[1] += any(inside(truth.box, x, y) for x, y in found[truth.seq])
    false_positives = sum(
        1
        for seq, centres in found.items()
        for x, y in centres
        if not any(inside(t.box, x, y) for t in truths if t.seq == seq)
    )
    return {
        "ms_per_frame_wall": round(wall / len(frames) * 1000, 1),
        "ms_per_frame_cpu": round(cpu / len(frames) * 1000, 1),
        "model_calls_per_frame": round(calls / len(frames), 2),
        "recall": round(sum(hit for _, hit in buckets.values()) / len(truths), 4),
        "buckets": {name: round(hit / n, 4) for name, (n, hit) in sorted(buckets.items())},
        "false_positives": false_positives,
    }


def measure_demo(finder: FaceFinder) -> dict[str, object]:
    """The built-in demo: cost per frame, and the frames with other than its two faces."""
    frames = demo_frames()
    cpu, calls = time.process_time(), finder.model_calls
    counts = [len(finder.find(frame, "demo")) for frame in frames]
    return {
        "ms_per_frame_cpu": round((time.process_time() - cpu) / len(frames) * 1000, 1),
        "model_calls_per_frame": round((finder.model_calls - calls) / len(frames), 2),
        "frames": len(frames),
        "frames_with_an_extra_face": sum(count > 2 for count in counts),
        "frames_missing_a_face": sum(count < 2 for count in counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--ranges", nargs="+", choices=RANGES, default=list(RANGES))
    parser.add_argument("--min-face-px", type=int, default=48, help="smallest face far and auto look for")
    parser.add_argument("--whole-frame", choices=("full", "short"), default="short", help="auto's whole-frame model")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--new-face-score", type=float, default=0.6)
    args = parser.parse_args()
    faces = load_faces(args.data, per_class=200, seed=0)
    near, far = fetch_model(NEAR), fetch_model(FAR) if args.whole_frame == "full" else None

    def finder_for(detector_range: DetectorRange) -> FaceFinder:
        """A finder with an empty memory of every camera, as the arguments set it."""
        return FaceFinder(
            near,
            far,
            detector_range=detector_range,
            min_face_px=args.min_face_px,
            min_score=args.min_score,
            new_face_score=args.new_face_score,
        )

    with tempfile.TemporaryDirectory() as folder:
        for scenario, height in (("near", 360), ("near", 480), ("far", 720), ("heads", 720)):
            video = Path(folder) / f"{scenario}.avi"
            if scenario == "heads":
                truths = compose_heads(args.frames, video)
            else:
                truths = compose(scenario, faces, args.frames, 15.0, video)
            frames = read_frames(video, height)
            for detector_range in args.ranges:
                finder = finder_for(detector_range)
                size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
                result = measure(finder, frames, truths)
                print(json.dumps({"scenario": scenario, "frame": size, "range": detector_range, **result}))
                finder.close()
    for detector_range in args.ranges:
        finder = finder_for(detector_range)
        print(json.dumps({"scenario": "demo", "frame": "800x450", "range": detector_range, **measure_demo(finder)}))
        finder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
