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

With `--speed` it prints instead, in one run, what issue-sized speed goals are judged on:
launch-to-first-event time, capture-to-event p50/p99 paced at 30 fps for one camera and at
15 fps for four cameras, flood frames/s of the pipeline and of bench/seed_loop.py on the same
video (--repeats rounds taking turns; medians), the CPU seconds and minor page faults per frame
of every process from the first event on, and the peak resident memory (VmHWM) of every process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import redis

from emostream import names

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


def children_of(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def process_label(pid: int) -> str:
    """`up`, `detect`, `classify`, ... for `python -m emostream.cli <command>`; else the program's name."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if "emostream.cli" in args:
        return args[args.index("emostream.cli") + 1]
    return Path(args[0]).name


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_and_faults(pid: int) -> tuple[float, int]:
    """User plus system CPU seconds, and minor page faults, of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])  # utime, stime; minflt


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class ProcessUsage:
    """Samples a process tree until stopped: peak resident memory (largest per label), and the CPU seconds
    and minor page faults once `working()` first holds (summed over each label's processes, to the last
    sample of each), so that imports and model loading are not counted as work."""

    def __init__(self, root: int, working: Callable[[], bool], every_s: float = 0.1) -> None:
        self.root = root
        self.every_s = every_s
        self.peaks: dict[str, float] = {}
        self._working = working
        self._baseline: dict[int, tuple[float, int]] | None = None
        self._usage: dict[int, tuple[str, float, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self._baseline is None and self._working():
                self._baseline = {pid: (seconds, faults) for pid, (_, seconds, faults) in self._usage.items()}
            for pid in [self.root, *children_of(self.root)]:
                try:
                    label, peak, (cpu, faults) = process_label(pid), peak_rss_mb(pid), cpu_and_faults(pid)
                except (OSError, IndexError):
                    continue  # ended between the listing and the read
                if label and peak >= 10:  # not the compiler ctypes runs to find a library
                    self.peaks[label] = round(max(peak, self.peaks.get(label, 0.0)))
                    self._usage[pid] = (label, cpu, faults)

    def stop(self) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
        """Peak MB, CPU seconds and minor page faults per label."""
        self._stop.set()
        self._thread.join()
        cpu: dict[str, float] = {}
        page_faults: dict[str, int] = {}
        baseline = self._baseline or {}
        for pid, (label, seconds, faults) in self._usage.items():
            seconds_before, faults_before = baseline.get(pid, (0.0, 0))
            cpu[label] = round(cpu.get(label, 0.0) + seconds - seconds_before, 2)
            page_faults[label] = page_faults.get(label, 0) + faults - faults_before
        return dict(sorted(self.peaks.items())), dict(sorted(cpu.items())), dict(sorted(page_faults.items()))


@dataclass
class Run:
    elapsed_s: float
    first_event_s: float | None
    events: list[dict[str, str]]
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]
    minor_faults: dict[str, int]


def run_up(sources: list[str], redis_url: str, realtime: bool, extra: list[str]) -> Run:
    """One `emostream up --once` over `sources`: its events, launch-to-first-event time and peak memory."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    launched_wall, started = time.time(), time.monotonic()
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
        *sources,
    ]
    env = {**os.environ, "EMOSTREAM_REDIS_URL": redis_url}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    redis_cpu: list[float] = []

    def working() -> bool:  # from the first event on: every service has started and done its first calls
        if redis_cpu or not client.xlen(names.EVENTS):
            return bool(redis_cpu)
        redis_cpu.append(redis_cpu_seconds(client))
        return True

    usage = ProcessUsage(process.pid, working)
    code = process.wait()
    peaks, cpu, faults = usage.stop()
    cpu["redis"] = round(redis_cpu_seconds(client) - redis_cpu[0], 2) if redis_cpu else 0.0
    if code != 0:
        raise SystemExit(f"emostream up exited with code {code}")
    elapsed = time.monotonic() - started
    events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange("emostream:events")]
    first = min((int(e["ts_event_ms"]) for e in events), default=None)
    first_s = None if first is None else round(first / 1000 - launched_wall, 2)
    return Run(elapsed, first_s, events, peaks, cpu, faults)


def run_once(video: Path, redis_url: str, realtime: bool, extra: list[str]) -> tuple[float, list[dict[str, str]]]:
    run = run_up([str(video)], redis_url, realtime, extra)
    return run.elapsed_s, run.events


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


SEED_LOOP_COMPUTES = {
    "tensorflow": ["--runtime", "tensorflow"],  # bfloat16 where the CPU computes it natively
    "litert_float32": ["--runtime", "litert", "--precision", "float32"],
    "litert_int8": ["--runtime", "litert", "--precision", "int8"],
}
"""The seed loop in every way the model server can compute; the pipeline is judged against the fastest."""


def seed_loop(frames: int, data: Path, compute: list[str]) -> dict[str, object]:
    """bench/seed_loop.py in its own process: its JSON line, with its peak resident memory."""
    script = Path(__file__).with_name("seed_loop.py")
    result = subprocess.run(
        [sys.executable, str(script), "--frames", str(frames), "--data", str(data), *compute],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


FIRST_FRAMES = 15
"""A camera's start: its first half second at 30 fps, where its first full search falls."""


def start_and_after(events: list[dict[str, str]]) -> dict[str, float]:
    """p99 capture-to-event latency of the cameras' first FIRST_FRAMES frames, and of the rest."""
    latency = np.asarray([int(e["ts_event_ms"]) - int(e["ts_capture_ms"]) for e in events], dtype=np.float64)
    first = np.asarray([int(e["frame_seq"]) < FIRST_FRAMES for e in events], dtype=bool)
    return {
        "latency_p99_ms_first_frames": float(np.percentile(latency[first], 99)) if first.any() else 0.0,
        "latency_p99_ms_later_frames": float(np.percentile(latency[~first], 99)) if (~first).any() else 0.0,
    }


def speed_run(
    args: argparse.Namespace,
    extra: list[str],
    truths: list[Truth],
    mode: str,
    sources: list[str],
    realtime: bool,
    summary: dict[str, object],
) -> dict[str, object]:
    """One `up --once` run: its JSON line printed, its peak memory folded into `summary`."""
    run = run_up(sources, args.redis_url, realtime, extra)
    frames = args.frames * len(sources)  # every camera plays the same video
    figures = summarise(run.events, frames, truths, mode)
    figures |= {
        "first_event_s": run.first_event_s,
        "wall_s": round(run.elapsed_s, 1),
        "peak_rss_mb": run.peak_rss_mb,
        "cpu_s": run.cpu_s,
        "minor_faults_per_frame": {label: round(n / frames) for label, n in run.minor_faults.items()},
        **start_and_after(run.events),
    }
    print(json.dumps(figures), flush=True)
    for label, peak in run.peak_rss_mb.items():
        summary[f"peak_rss_mb_{label}"] = max(peak, float(summary.get(f"peak_rss_mb_{label}", 0.0)))  # type: ignore[arg-type]
    return figures


def speed(args: argparse.Namespace, extra: list[str], faces: list[tuple[np.ndarray, str]], folder: Path) -> None:
    """The speed figures, each on its own JSON line, then one summary line."""
    at_30, at_15 = folder / "bench30.avi", folder / "bench15.avi"
    truths = compose("near", faces, args.frames, 30.0, at_30)
    compose("near", faces, args.frames, 15.0, at_15)
    summary: dict[str, object] = {"load_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    cases = (
        ("1 camera at 30 fps", [str(at_30)], "1cam_30fps"),
        ("4 cameras at 15 fps", [f"cam{i}={at_15}" for i in range(1, 5)], "4cam_15fps"),
    )
    for mode, sources, key in cases:
        figures = speed_run(args, extra, truths, mode, sources, realtime=True, summary=summary)
        summary[f"{key}_first_event_s"] = figures["first_event_s"]
        summary[f"{key}_p50_ms"], summary[f"{key}_p99_ms"] = figures["latency_p50_ms"], figures["latency_p99_ms"]
        summary[f"{key}_p99_ms_first_frames"] = figures["latency_p99_ms_first_frames"]
        summary[f"{key}_p99_ms_later_frames"] = figures["latency_p99_ms_later_frames"]
    # Flood and seed loops take turns, so that a machine whose speed drifts (shared hosts do, by
    # a fifth within minutes) slows both alike; each round's ratio pairs runs a minute apart.
    floods: list[float] = []
    seeds: dict[str, list[float]] = {name: [] for name in SEED_LOOP_COMPUTES}
    ratios: list[float] = []
    for _ in range(args.repeats):
        figures = speed_run(args, extra, truths, "1 camera, as fast as possible", [str(at_30)], False, summary)
        summary.setdefault("flood_first_event_s", figures["first_event_s"])
        floods.append(float(figures["frames_per_s"]))  # type: ignore[arg-type]
        for name, compute in SEED_LOOP_COMPUTES.items():
            seed = seed_loop(args.frames, args.data, compute)
            print(json.dumps(seed), flush=True)
            seeds[name].append(float(seed["frames_per_s"]))  # type: ignore[arg-type]
            summary[f"peak_rss_mb_seed_loop_{name}"] = seed["peak_rss_mb"]
        ratios.append(floods[-1] / max(runs[-1] for runs in seeds.values()))
    if not floods:  # --repeats 0: the paced figures only
        print(json.dumps({"mode": "summary", **summary}), flush=True)
        return
    summary["flood_frames_per_s"] = statistics.median(floods)
    summary["flood_frames_per_s_runs"] = floods
    for name, runs in seeds.items():
        summary[f"seed_loop_{name}_frames_per_s"] = statistics.median(runs)
        summary[f"seed_loop_{name}_frames_per_s_runs"] = runs
    summary["flood_vs_seed_loop"] = round(statistics.median(ratios), 2)  # against the fastest loop of each round
    summary["flood_vs_seed_loop_runs"] = [round(ratio, 2) for ratio in ratios]
    summary["load_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps({"mode": "summary", **summary}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--scenario", choices=("near", "far"), default="near")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the paced run")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--skip-fast", action="store_true", help="only the paced run")
    parser.add_argument("--speed", action="store_true", help="the speed figures (near scenario) instead")
    parser.add_argument(
        "--repeats", type=int, default=3, help="--speed: flood and seed loop rounds (medians; 0: paced runs only)"
    )
    args, extra = parser.parse_known_args()
    faces = load_faces(args.data, per_class=200, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        if args.speed:
            speed(args, extra, faces, Path(folder))
            return 0
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
