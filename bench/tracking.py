"""Tracking benchmark: moving FER-2013 validation faces through the whole pipeline (`emostream up --once`).

    uv run python bench/tracking.py [--data ../shared/data/fer2013/validation] [--seconds 60] [--fps 15]

A generated video (720x450, camera noise on every frame) holds three faces whose true label never
changes (MediaPipe's short-range model wants faces of about a quarter of the frame width, so no
more fit): A drifts along the top row, leaves the frame for a while and comes back, and is left
out of three frames every four seconds (a dropped detection); B and C move along the bottom row
in opposite directions and cross each other twice, B drawn over C.

Every event is matched to the face whose box holds its box centre. Printed:
- identity switches: a face's track id changes to one that another face had (outside the crossing
  windows, where the target is zero, and inside them);
- fragmentation: a face's track id changes to a new id while the face stays in view;
- label changes per track per minute, raw (the classifier's label) against smoothed (the tracker's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import redis

LABELS = ("happy", "neutral", "fear")
W, H = 720, 450
SIDE = 215
CROSS_TAIL_S = 1.0  # after B and C stop overlapping, still counted as their crossing


@dataclass(frozen=True)
class Truth:
    face: str
    label: str
    box: tuple[int, int, int, int]
    visit: int  # which stay in view (A leaves and comes back)
    crossing: bool  # B and C overlap (one hides the other), or did less than CROSS_TAIL_S ago


def pick_faces(data: Path, seed: int) -> dict[str, tuple[np.ndarray, str]]:
    """One face per label that MediaPipe finds alone at three places in the frame: the benchmark
    measures tracking, so faces the detector never sees (some FER-2013 crops) are left out."""
    from emostream_detector.detection import FaceFinder
    from emostream_detector.model_file import FAR, NEAR, default_dir, fetch

    models = fetch(default_dir())
    finder = FaceFinder(models[NEAR], models[FAR])
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, label in zip("ABC", ("happy", "neutral", "fear"), strict=True):
        files = sorted((data / label).glob("*.jpg"))
        for index in rng.permutation(len(files)):
            grey = cv2.imread(str(files[index]), cv2.IMREAD_GRAYSCALE)
            face = cv2.cvtColor(cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            found = 0
            for x, y in ((15, 5), ((W - SIDE) // 2, H - SIDE - 5), (W - SIDE - 15, H - SIDE - 15)):
                frame = np.full((H, W, 3), 110, dtype=np.uint8)
                frame[y : y + SIDE, x : x + SIDE] = face
                found += len(finder.find(frame)) == 1
            if found == 3:
                chosen[name] = (face, label)
                break
    finder.close()
    return chosen


def positions(t: float, seconds: float) -> dict[str, tuple[int, int] | None]:
    """Top-left corner of each face at time t, None when out of view or its detection is dropped."""
    phase = t / seconds
    out: dict[str, tuple[int, int] | None] = {}
    # A: top row, left to right twice; out of the frame between 40 % and 55 % of the run, and its
    # detection dropped for 3 frames every 4 seconds.
    gone = 0.40 <= phase < 0.55 or (t % 4.0) > 3.8
    swing = (phase * 1.6) % 2.0  # there and back, no jump
    out["A"] = None if gone else (int(15 + (W - SIDE - 30) * (swing if swing < 1 else 2 - swing)), 5)
    # B and C: bottom row in opposite directions, meeting at the centre twice.
    sway = np.cos(2 * np.pi * phase * 2)
    reach = (W - SIDE) / 2 - 15
    out["B"] = (int(W / 2 - SIDE / 2 - reach * sway), H - SIDE - 5)
    out["C"] = (int(W / 2 - SIDE / 2 + reach * sway), H - SIDE - 15)
    return out


def jitter(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face as a camera sees it from frame to frame: the head turns and moves a little, the light
    changes. Without this a pasted still image gives the classifier the same answer every frame."""
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.95, 1.05)
    matrix = cv2.getRotationMatrix2D((SIDE / 2, SIDE / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-4, 4, 2)
    moved = cv2.warpAffine(face, matrix, (SIDE, SIDE), borderMode=cv2.BORDER_REPLICATE)
    lit = moved.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
    return np.clip(lit, 0, 255).astype(np.uint8)


def compose(faces: dict[str, tuple[np.ndarray, str]], seconds: float, fps: float, path: Path) -> list[list[Truth]]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (W, H))
    rng = np.random.default_rng(1)
    truths: list[list[Truth]] = []
    visits: dict[str, int] = defaultdict(int)
    visible: dict[str, bool] = defaultdict(bool)
    frames = int(seconds * fps)
    last_overlap = -1e9
    for seq in range(frames):
        t = seq / fps
        frame = np.full((H, W, 3), 110, dtype=np.uint8)
        where = positions(t, seconds)
        b, c = where["B"], where["C"]
        if b is not None and c is not None and abs(b[0] - c[0]) < SIDE:
            last_overlap = t
        near = t - last_overlap <= CROSS_TAIL_S
        row: list[Truth] = []
        for name in ("C", "B", "A"):  # B is drawn over C
            corner = where[name]
            image, label = faces[name]
            if corner is None:
                if not t % 4.0 > 3.8:  # a dropped detection is not leaving the frame
                    visible[name] = False
                continue
            if not visible[name]:
                visits[name] += 1
                visible[name] = True
            x, y = corner
            frame[y : y + SIDE, x : x + SIDE] = jitter(image, rng)
            row.append(Truth(name, label, (x, y, SIDE, SIDE), visits[name], near and name in "BC"))
        noise = rng.normal(0, 4, frame.shape) + rng.normal(0, 3)  # sensor noise and exposure flicker
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
        truths.append(row)
    writer.release()
    return truths


def read_streams(client: redis.Redis) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    def decode(stream: str) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(stream)]

    return decode("emostream:events"), decode("emostream:tracks")


def run_pipeline(video: Path, redis_url: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    command = [sys.executable, "-m", "emostream.cli", "up", "--once", "--no-realtime", "--format", "json"]
    command += ["--timeout-s", "1800", str(video)]
    # Streams hold the whole clip: at full speed on a busy machine the classifier can fall more than
    # the default 1,000 faces behind, and trimmed faces would look like dropped detections.
    env = {**os.environ, "EMOSTREAM_REDIS_URL": redis_url, "EMOSTREAM_STREAM_MAXLEN": "100000"}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return read_streams(client)


def match(event: dict[str, str], row: list[Truth]) -> Truth | None:
    cx = int(event["x"]) + int(event["w"]) / 2
    cy = int(event["y"]) + int(event["h"]) / 2
    inside = [t for t in row if t.box[0] <= cx <= t.box[0] + t.box[2] and t.box[1] <= cy <= t.box[1] + t.box[3]]
    # Overlapping faces (C over D): the one drawn on top is the one seen.
    return inside[-1] if inside else None


def changes(labels: list[str]) -> int:
    return sum(1 for a, b in itertools.pairwise(labels) if a != b)


def score(events: list[dict[str, str]], truths: list[list[Truth]], fps: float) -> dict[str, object]:
    events = sorted(events, key=lambda e: (int(e["frame_seq"]), int(e["face_index"])))
    owner: dict[str, str] = {}  # track id -> the face it first followed
    last_id: dict[str, str] = {}
    last_visit: dict[str, int] = {}
    switches = {"outside_crossing": 0, "inside_crossing": 0}
    fragments = {"outside_crossing": 0, "inside_crossing": 0}
    unmatched = 0
    per_track: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for event in events:
        seq = int(event["frame_seq"])
        truth = match(event, truths[seq]) if seq < len(truths) else None
        if truth is None:
            unmatched += 1
            continue
        track = event["track_id"]
        per_track[track].append((seq, event["label"], event["smoothed_label"]))
        owner.setdefault(track, truth.face)
        previous = last_id.get(truth.face)
        same_visit = last_visit.get(truth.face) == truth.visit
        if previous is not None and previous != track:
            if owner[track] != truth.face:
                switches["inside_crossing" if truth.crossing else "outside_crossing"] += 1
            elif same_visit:
                fragments["inside_crossing" if truth.crossing else "outside_crossing"] += 1
        last_id[truth.face] = track
        last_visit[truth.face] = truth.visit
    minutes = sum((seqs[-1][0] - seqs[0][0] + 1) / fps / 60 for seqs in per_track.values())
    raw = sum(changes([label for _, label, _ in seqs]) for seqs in per_track.values())
    smoothed = sum(changes([label for _, _, label in seqs]) for seqs in per_track.values())
    faces_in_view = sum(len(row) for row in truths)
    visits = len({(t.face, t.visit) for row in truths for t in row})
    return {
        "events": len(events),
        "faces_in_view": faces_in_view,
        "events_matched": len(events) - unmatched,
        "visits": visits,
        "tracks": len(per_track),
        "identity_switches_outside_crossing": switches["outside_crossing"],
        "identity_switches_inside_crossing": switches["inside_crossing"],
        "fragmentations_outside_crossing": fragments["outside_crossing"],
        "fragmentations_inside_crossing": fragments["inside_crossing"],
        "raw_label_changes_per_track_minute": round(raw / max(minutes, 1e-9), 2),
        "smoothed_label_changes_per_track_minute": round(smoothed / max(minutes, 1e-9), 2),
        "raw_to_smoothed_ratio": round(raw / smoothed, 1) if smoothed else None,
        "raw_changes": raw,
        "smoothed_changes": smoothed,
        "track_minutes": round(minutes, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--score-only", action="store_true", help="score what the last run left in Redis")
    args = parser.parse_args()
    faces = pick_faces(args.data, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "tracking.avi"
        truths = compose(faces, args.seconds, args.fps, video)
        started = time.monotonic()
        if args.score_only:
            events, tracks = read_streams(redis.Redis.from_url(args.redis_url))
        else:
            events, tracks = run_pipeline(video, args.redis_url)
        elapsed = time.monotonic() - started
    result = score(events, truths, args.fps)
    kinds = defaultdict(int)
    for entry in tracks:
        kinds[entry["type"]] += 1
    result["track_entries"] = dict(kinds)
    result["events_per_track_entry"] = round(len(events) / max(len(tracks), 1), 1)
    result["wall_s_including_startup"] = round(elapsed, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
