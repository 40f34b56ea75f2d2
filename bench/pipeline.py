"""Pipeline benchmark: FER-2013 validation faces in a generated video, through `emostream up --once`.

Faces (happy, neutral, fear) are scaled and placed at known positions, so the
run measures detection recall, precision and label accuracy as well as speed:

    uv run python bench/pipeline.py [--scenario near|far] [--data ../shared/data/fer2013/validation] [--frames 300]

Scenarios: `near`, 640x360 frames with three 190 px faces (a person at a webcam);
`far`, 1280x720 frames with eight faces of 40-128 px (a camera across a room).
Prints frames/s, faces/s, capture-to-event latency p50/p99, detection recall and
label accuracy per face-size bucket, once as fast as the pipeline goes and once
paced at --fps. Extra arguments go to `emostream up` (e.g. --range near, or
`--model-config-file F`); the last run's events and shadow counters stay in the
Redis db for `emostream deploy shadow`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import redis

LABELS = ("happy", "neutral", "fear")
FRAME_W, FRAME_H = 640, 360
FACE_SIDE = 190  # near: a third of the frame height, a person at a webcam
SLOTS = ((15, 60), (225, 110), (435, 60))  # near: top-left corners of the faces in every frame
FAR_W, FAR_H = 1280, 720
FAR_CELLS = (4, 2)  # far: one face per cell of a 4x2 grid, at a random size and place inside it
BUCKETS = ((40, 56), (56, 80), (80, 129), (129, 400))  # face sides in px: [low, high)


@dataclass(frozen=True)
class Truth:
    seq: int
    box: tuple[int, int, int, int]
    label: str


def load_faces(data: Path, per_class: int, seed: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    faces = []
    for label in LABELS:
        files = sorted((data / label).glob("*.jpg"))
        for path in rng.choice(files, size=min(per_class, len(files)), replace=False):
            faces.append((cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), label))
    order = rng.permutation(len(faces))
    return [faces[i] for i in order]


def compose_video(faces: list[tuple[np.ndarray, str]], frames: int, fps: float, path: Path) -> list[Truth]:
    """Each frame shows three faces; each face stays for 5 frames, so the video looks like people."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_W, FRAME_H))
    truths: list[Truth] = []
    for seq in range(frames):
        frame = np.full((FRAME_H, FRAME_W, 3), 90, dtype=np.uint8)
        for slot, (x, y) in enumerate(SLOTS):
            grey, label = faces[(seq // 5 * len(SLOTS) + slot) % len(faces)]
            big = cv2.resize(grey, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
            frame[y : y + FACE_SIDE, x : x + FACE_SIDE] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
            truths.append(Truth(seq, (x, y, FACE_SIDE, FACE_SIDE), label))
        writer.write(frame)
    writer.release()
    return truths


def compose_far_video(faces: list[tuple[np.ndarray, str]], frames: int, fps: float, path: Path) -> list[Truth]:
    """Each frame shows eight faces of 40-128 px; each scene stays for 5 frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (FAR_W, FAR_H))
    cell_w, cell_h = FAR_W // FAR_CELLS[0], FAR_H // FAR_CELLS[1]
    truths: list[Truth] = []
    for seq in range(frames):
        rng = np.random.default_rng(seq // 5)  # the same scene for 5 frames
        frame = np.full((FAR_H, FAR_W, 3), 90, dtype=np.uint8)
        for slot in range(FAR_CELLS[0] * FAR_CELLS[1]):
            grey, label = faces[(seq // 5 * 8 + slot) % len(faces)]
            side = int(rng.integers(40, 129))
            x = slot % FAR_CELLS[0] * cell_w + int(rng.integers(0, cell_w - side))
            y = slot // FAR_CELLS[0] * cell_h + int(rng.integers(0, cell_h - side))
            resized = cv2.resize(grey, (side, side), interpolation=cv2.INTER_CUBIC)
            frame[y : y + side, x : x + side] = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
            truths.append(Truth(seq, (x, y, side, side), label))
        writer.write(frame)
    writer.release()
    return truths


def compose(scenario: str, faces: list[tuple[np.ndarray, str]], frames: int, fps: float, path: Path) -> list[Truth]:
    return (compose_far_video if scenario == "far" else compose_video)(faces, frames, fps, path)


def bucket_name(side: int) -> str:
    low, high = next((low, high) for low, high in BUCKETS if low <= side < high)
    return f"{low}-{high - 1}px"


def centre_inside(event: dict[str, str], box: tuple[int, int, int, int]) -> bool:
    cx = int(event["x"]) + int(event["w"]) / 2
    cy = int(event["y"]) + int(event["h"]) / 2
    x, y, w, h = box
    return x <= cx <= x + w and y <= cy <= y + h


def score(events: list[dict[str, str]], truths: list[Truth]) -> dict[str, object]:
    """Recall and label accuracy overall, per true label and per face-size bucket; false positives."""
    by_frame: dict[int, list[dict[str, str]]] = {}
    for event in events:
        by_frame.setdefault(int(event["frame_seq"]), []).append(event)
    found = correct = 0
    per_class = {label: [0, 0] for label in LABELS}
    per_bucket: dict[str, list[int]] = {}
    for truth in truths:
        tally = per_bucket.setdefault(bucket_name(truth.box[2]), [0, 0, 0])  # faces, found, labelled right
        tally[0] += 1
        match = next((e for e in by_frame.get(truth.seq, []) if centre_inside(e, truth.box)), None)
        if match is not None:
            hit = match["label"] == truth.label
            found, correct = found + 1, correct + hit
            per_class[truth.label][0] += hit
            per_class[truth.label][1] += 1
            tally[1], tally[2] = tally[1] + 1, tally[2] + hit
    false_positives = sum(
        1 for e in events if not any(centre_inside(e, t.box) for t in truths if t.seq == int(e["frame_seq"]))
    )
    return {
        "detection_recall": found / len(truths),
        "precision": (len(events) - false_positives) / max(len(events), 1),
        "label_accuracy": correct / max(found, 1),
        **{f"recall_{label}": hits / max(n, 1) for label, (hits, n) in per_class.items()},
        "false_positives": false_positives,
        "buckets": {
            name: {"faces": n, "recall": round(hit / n, 4), "label_accuracy": round(right / max(hit, 1), 4)}
            for name, (n, hit, right) in sorted(per_bucket.items())
        },
    }


def run_once(video: Path, redis_url: str, realtime: bool, extra: list[str]) -> tuple[float, list[dict[str, str]]]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "emostream.cli",
        "up",
        "--once",
        "--format",
        "json",
        "--timeout-s",
        "900",
        "--realtime" if realtime else "--no-realtime",
        *extra,
        str(video),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "EMOSTREAM_REDIS_URL": redis_url})
    elapsed = time.monotonic() - started
    events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange("emostream:events")]
    return elapsed, events


def summarise(events: list[dict[str, str]], frames: int, truths: list[Truth], label: str) -> dict[str, object]:
    if not events:
        return {"mode": label, "frames": frames, "events": 0, **score(events, truths)}
    latencies = np.asarray([int(e["ts_event_ms"]) - int(e["ts_capture_ms"]) for e in events], dtype=np.float64)
    first = min(int(e["ts_capture_ms"]) for e in events)
    last = max(int(e["ts_event_ms"]) for e in events)
    span_s = max((last - first) / 1000, 1e-3)  # first capture to last event: the pipeline's own time
    return {
        "mode": label,
        "frames": frames,
        "events": len(events),
        "frames_per_s": round(frames / span_s, 1),
        "faces_per_s": round(len(events) / span_s, 1),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in score(events, truths).items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--scenario", choices=("near", "far"), default="near")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the paced run")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--skip-fast", action="store_true", help="only the paced run")
    args, extra = parser.parse_known_args()
    faces = load_faces(args.data, per_class=200, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "bench.avi"
        truths = compose(args.scenario, faces, args.frames, args.fps, video)
        if not args.skip_fast:
            elapsed, events = run_once(video, args.redis_url, realtime=False, extra=extra)
            print(
                json.dumps(
                    {
                        **summarise(events, args.frames, truths, f"{args.scenario}, as fast as possible"),
                        "wall_s_including_startup": round(elapsed, 1),
                    }
                )
            )
        if not args.skip_paced:
            elapsed, events = run_once(video, args.redis_url, realtime=True, extra=extra)
            print(
                json.dumps(
                    {
                        **summarise(events, args.frames, truths, f"{args.scenario}, paced at {args.fps:g} fps"),
                        "wall_s_including_startup": round(elapsed, 1),
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
