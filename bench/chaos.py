"""Chaos benchmark: the local stack on looping cameras with a known number of faces, while it is attacked.

    uv run python bench/chaos.py [--duration 240] [--cameras 2] [--kills 20] [--malformed 1000] [--overload 4]

Runs a private redis-server, the model server, one detector, one classifier, the tracker and capture (every camera
plays the built-in demo: two faces in every frame) and, phase by phase:

  calibrate  one camera as fast as the pipeline goes: its frames/s is the machine's capacity
  steady     cameras paced at half the capacity
  model-down the model server stopped for --model-down-s seconds (the classifier holds its faces)
  redis      Redis SIGKILLed and started again (persistence off unless --redis-dir): the one allowed loss
  overload   extra cameras offering --overload times the capacity (capture sheds and counts what waits)
  drain      sources stopped; the pipeline finishes what it holds

Throughout, --kills SIGKILLs of a random detector, classifier, capture or model-server process (each
restarted at once under the same name) and --malformed hostile entries of every kind: broken protobufs,
undecodable and decompression-bomb JPEGs, frames claiming another camera, bad camera ids, boxes outside
the frame, NaN scores, non-UTF-8 and wrong-type camera registry entries, and oversize Predict requests.

Prints faces expected, events delivered, duplicates, events lost and why, dead letters by reason,
crashes, p99 latency and peak memory per process in each phase (docs/RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import redis

from emostream import names, wire
from emostream.demo import demo_frames
from emostream.launcher import redis_server_args

FACES_PER_FRAME = 2  # the demo: the astronaut twice
VALID_PREFIX = "cam"
PHASES = ("calibrate", "steady", "model-down", "redis", "overload", "drain")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Managed:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    killed_pids: set[int] = field(default_factory=set)
    held: bool = False  # stopped on purpose (model-down); not restarted until released
    restarts: int = 0
    crashes: list[str] = field(default_factory=list)

    def start(self, log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)


class Stack:
    """The processes under test, restarted under the same name when they end; unexpected ends are crashes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.services: dict[str, Managed] = {}
        self.lock = threading.Lock()

    def add(self, service: Managed) -> None:
        with self.lock:
            self.services[service.name] = service
            service.start(self.folder / f"{service.name}.log")

    def kill(self, name: str) -> None:
        with self.lock:
            service = self.services[name]
            if service.process and service.process.poll() is None:
                service.killed_pids.add(service.process.pid)
                service.process.kill()

    def stop(self, name: str, hold: bool = False) -> None:
        with self.lock:
            service = self.services[name]
            service.held = hold
            if service.process and service.process.poll() is None:
                service.killed_pids.add(service.process.pid)
                service.process.terminate()
        if service.process:
            try:
                service.process.wait(30)
            except subprocess.TimeoutExpired:
                service.process.kill()

    def release(self, name: str) -> None:
        with self.lock:
            self.services[name].held = False

    def remove(self, name: str) -> None:
        self.stop(name, hold=True)
        with self.lock:
            del self.services[name]

    def supervise(self) -> None:
        with self.lock:
            for service in self.services.values():
                process = service.process
                if process is None or process.poll() is None:
                    continue
                if process.pid not in service.killed_pids:
                    service.crashes.append(f"{service.name} exited with {process.returncode}")
                if service.held:
                    continue
                service.restarts += 1
                service.start(self.folder / f"{service.name}.log")

    def pids(self) -> dict[str, int]:
        with self.lock:
            return {n: s.process.pid for n, s in self.services.items() if s.process and s.process.poll() is None}

    def shutdown(self) -> None:
        for name in list(self.services):
            self.stop(name, hold=True)


class Observer:
    """Reads events and dead letters as they come (so a Redis restart cannot hide them) and samples memory."""

    def __init__(self, url: str, stack: Stack, extra_pids: dict[str, int]) -> None:
        self.url = url
        self.stack = stack
        self.extra_pids = extra_pids
        self.phase = PHASES[0]
        self.events: Counter[tuple[str, int, int, int]] = Counter()
        self.latency_ms: dict[str, list[int]] = defaultdict(list)
        self.dead_letters: list[dict[str, str]] = []
        self.peak_mb: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        last = {names.EVENTS: "0-0", names.DEAD_LETTERS: "0-0"}
        while not self.stop.is_set():
            try:
                reply = client.xread(last, count=1000, block=200)
            except redis.RedisError:
                time.sleep(0.2)  # Redis restarting
                continue
            for stream_name, entries in reply:
                stream = stream_name.decode()
                for entry_id, fields in entries:
                    last[stream] = entry_id.decode()
                    text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
                    if stream == names.DEAD_LETTERS:
                        self.dead_letters.append(text)
                        continue
                    key = (text["camera"], int(text["frame_seq"]), int(text["face_index"]), int(text["ts_capture_ms"]))
                    self.events[key] += 1
                    if self.events[key] == 1:
                        self.latency_ms[self.phase].append(int(text["ts_event_ms"]) - int(text["ts_capture_ms"]))

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            for name, pid in {**self.stack.pids(), **self.extra_pids}.items():
                peak = self.peak_mb[self.phase]
                peak[name] = max(peak[name], rss_mb(pid))


class Counters:
    """Per-camera progress counters summed across a Redis restart (which wipes them when persistence is off)."""

    FIELDS = (
        "frames_published",
        "frames_dropped",
        "frames_detected",
        "frames_failed",
        "faces_detected",
        "events",
        "faces_failed",
        "tracked",
    )

    def __init__(self) -> None:
        self.carried: Counter[str] = Counter()

    def read(self, client: redis.Redis) -> Counter[str]:
        total: Counter[str] = Counter(self.carried)
        for member in client.smembers(names.CAMERAS):
            camera = member.decode(errors="replace")
            if camera.startswith(VALID_PREFIX):
                values = client.hgetall(names.progress(camera))
                total.update({k.decode(): int(v) for k, v in values.items() if k.decode() in self.FIELDS})
        return total

    def carry(self, client: redis.Redis) -> Counter[str]:
        """Snapshot before the restart; afterwards counting starts again from zero."""
        snapshot = self.read(client)
        self.carried = snapshot
        return snapshot


class Malice:
    """Hostile entries of every kind, each remembered so its dead letter can be matched."""

    def __init__(self, client: redis.Redis, serving_port: int) -> None:
        self.client = client
        self.serving_port = serving_port
        small = cv2.resize(demo_frames(1)[0], (64, 36))
        ok, data = cv2.imencode(".jpg", small)
        assert ok
        self.jpeg = data.tobytes()
        at = self.jpeg.index(b"\xff\xc0")
        self.bomb = self.jpeg[: at + 5] + (12000).to_bytes(2, "big") * 2 + self.jpeg[at + 9 :]
        self.injected: list[tuple[str, str, str]] = []  # (kind, stream, id)
        self.restarted_after = -1  # entries injected before the Redis restart
        self.predict_refusals: Counter[str] = Counter()
        self.count = 0
        self.kinds = [getattr(self, name) for name in sorted(dir(self)) if name.startswith("kind_")]

    def frame(self, camera: str, jpeg: bytes, width: int = 64, height: int = 36) -> dict[bytes, bytes]:
        return wire.encode_frame(
            wire.Frame(
                camera=camera,
                seq=self.count,
                ts_capture_ms=int(time.time() * 1000),
                jpeg=jpeg,
                width=width,
                height=height,
            )
        )

    def face(self, **change: object) -> dict[bytes, bytes]:
        message = wire.pb.Face(
            camera="junkface",
            frame_seq=self.count,
            ts_capture_ms=int(time.time() * 1000),
            face_index=0,
            faces_in_frame=1,
            box=wire.pb.Box(x=1, y=1, w=10, h=10),
            score=0.9,
            crop=bytes(48 * 48),
            frame_width=64,
            frame_height=36,
        )
        for name, value in change.items():
            if name == "box":
                message.box.CopyFrom(value)  # type: ignore[arg-type]
            else:
                setattr(message, name, value)
        return {wire.PAYLOAD_FIELD: message.SerializeToString()}

    def add_frame(self, kind: str, fields: dict[bytes, bytes]) -> None:
        stream = names.frames("junk")
        self.client.sadd(names.CAMERAS, "junk")
        self.injected.append((kind, stream, self.client.xadd(stream, fields).decode()))

    def add_face(self, kind: str, fields: dict[bytes, bytes]) -> None:
        self.injected.append((kind, names.FACES, self.client.xadd(names.FACES, fields).decode()))

    def kind_a_bad_protobuf(self) -> None:
        self.add_frame("bad_protobuf", {wire.PAYLOAD_FIELD: b"\x00garbage\xff"})

    def kind_b_no_payload(self) -> None:
        self.add_face("no_payload", {b"x": b"y"})

    def kind_c_undecodable(self) -> None:
        self.add_frame("undecodable", self.frame("junk", b"not a jpeg at all"))

    def kind_d_bomb(self) -> None:
        self.add_frame("too_many_pixels", self.frame("junk", self.bomb, 12000, 12000))

    def kind_e_other_camera(self) -> None:
        self.add_frame("camera_mismatch", self.frame("cam0", self.jpeg))

    def kind_f_newline_camera(self) -> None:
        self.add_frame("bad_camera", self.frame("evil\ncam", self.jpeg))

    def kind_g_long_camera(self) -> None:
        self.add_frame("bad_camera", self.frame("x" * 5000, self.jpeg))

    def kind_h_wrong_size(self) -> None:
        self.add_frame("bad_size", self.frame("junk", self.jpeg, 801, 36))

    def kind_i_negative_box(self) -> None:
        self.add_face("bad_box", self.face(box=wire.pb.Box(x=-5, y=-5, w=10, h=10)))

    def kind_j_nan_score(self) -> None:
        self.add_face("bad_value", self.face(score=math.nan))

    def kind_k_empty_camera(self) -> None:
        self.add_face("bad_camera", self.face(camera=""))

    def kind_l_box_outside(self) -> None:
        self.add_face("bad_box", self.face(box=wire.pb.Box(x=60, y=30, w=10, h=10)))

    def kind_m_crop(self) -> None:
        self.add_face("bad_crop", self.face(crop=bytes(100)))

    def kind_n_non_utf8_camera(self) -> None:
        member = b"\xff\xfe" + str(self.count).encode()
        self.client.sadd(names.CAMERAS, member)
        self.injected.append(("bad_camera", names.CAMERAS, ascii(member[:80])))

    def kind_o_wrong_type(self) -> None:
        camera = f"wrongtype{self.count}"
        self.client.set(names.frames(camera), "not a stream")
        self.client.sadd(names.CAMERAS, camera)
        self.injected.append(("bad_stream", names.CAMERAS, ascii(camera.encode())))

    def kind_p_oversize_predict(self) -> None:
        from emostream_serving.tf_serving import ServingClient, ServingError

        crops = np.zeros((5000, 48, 48, 1), np.uint8)
        with ServingClient(f"127.0.0.1:{self.serving_port}", "emotion", timeout_seconds=10) as serving:
            try:
                serving.predict(crops)
                self.predict_refusals["ANSWERED"] += 1
            except ServingError as error:
                self.predict_refusals[error.code.name if error.code else "MALFORMED"] += 1

    def all_dead_lettered(self, observer: Observer) -> bool:
        found = {(letter.get("stream"), letter.get("id")) for letter in observer.dead_letters}
        return all((stream, entry) in found for _, stream, entry in self.injected)

    def inject(self) -> None:
        kind = self.kinds[self.count % len(self.kinds)]
        self.count += 1
        with contextlib.suppress(redis.RedisError):  # Redis restarting: this one never existed
            kind()


def write_clip(folder: Path, frames: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(demo_frames(frames)):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return folder


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=240, help="seconds of chaos, calibration and drain aside")
    parser.add_argument("--cameras", type=int, default=2, help="cameras in the steady phases")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--overload", type=float, default=4.0, help="offered load in the overload phase, x capacity")
    parser.add_argument("--model-down-s", type=float, default=30.0)
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    parser.add_argument("--redis-dir", type=Path, help="run Redis with an append-only file here (default: off)")
    parser.add_argument(
        "--quiet-s",
        type=float,
        default=240,
        help="most seconds to wait, before the Redis restart, for hostile "
        "entries already injected to be dead-lettered (what is left then goes with Redis)",
    )
    parser.add_argument(
        "--drain-s", type=float, default=900, help="most seconds the drain may take (restarted services catch up)"
    )
    parser.add_argument("--redis-port", type=int, default=0, help="port of the bench's own Redis (default: a free one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (service logs)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="emostream-chaos-"))
    clip = write_clip(folder / "clip", 60)
    redis_port, serving_port = args.redis_port or free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("bench/chaos.py needs redis-server")
    redis_args = redis_server_args(server, redis_port, folder, args.redis_dir)
    redis_process = subprocess.Popen(redis_args)
    client = redis.Redis.from_url(url)
    wait(lambda: ping(client), 10)
    env = {**os.environ, "EMOSTREAM_REDIS_URL": url, "EMOSTREAM_LOG_LEVEL": "WARNING", "TF_CPP_MIN_LOG_LEVEL": "3"}
    emostream = [sys.executable, "-m", "emostream.cli"]
    stack = Stack(folder)
    extra = {"redis-server": redis_process.pid}
    observer = Observer(url, stack, extra)
    counters = Counters()
    malice = Malice(client, serving_port)
    report: dict[str, object] = {}
    try:
        stack.add(
            Managed(
                "model-server",
                [*emostream, "serve-model", "--model-base", str(args.model_base), "--port", str(serving_port)],
                env,
            )
        )
        from emostream_serving.tf_serving import ServingClient

        with ServingClient(f"127.0.0.1:{serving_port}", "emotion") as serving:
            serving.wait_ready(300)
        classifier_env = {
            **env,
            "EMOSTREAM_CONSUMER": "classifier-1",
            "CLASSIFIER_SERVING_TARGET": f"127.0.0.1:{serving_port}",
            "CLASSIFIER_MODEL_BASE": str(args.model_base),
        }
        stack.add(Managed("classifier-1", [*emostream, "classify"], classifier_env))
        stack.add(Managed("detector-1", [*emostream, "detect"], {**env, "EMOSTREAM_CONSUMER": "detector-1"}))
        # The tracker turns the classifier's scores into the events users read (as `emostream up` runs it).
        stack.add(Managed("tracker-1", [*emostream, "track"], {**env, "EMOSTREAM_CONSUMER": "tracker-1"}))
        wait(
            lambda: (
                client.exists(names.heartbeat("detector", "detector-1"))
                and client.exists(names.heartbeat("classifier", "classifier-1"))
                and client.exists(names.heartbeat("tracker", "tracker-1"))
            ),
            300,
        )
        observer.start()
        started = time.monotonic()

        def capture(name: str, cameras: list[str], fps: float, realtime: bool = True) -> None:
            sources = [f"{camera}={clip}" for camera in cameras]
            flags = ["--loop", "--realtime" if realtime else "--no-realtime", "--images-fps", str(fps)]
            stack.add(Managed(name, [*emostream, "capture", *flags, *sources], {**env, "EMOSTREAM_CONSUMER": name}))

        def phase(name: str) -> None:
            observer.phase = name
            report.setdefault("boundaries", {})[name] = counters.read(client)  # type: ignore[index]
            print(f"[{time.monotonic() - started:6.0f}s] phase {name}", flush=True)

        # Calibrate: one camera unpaced; capacity is what the pipeline then detects per second.
        phase("calibrate")
        capture("capture-calibrate", [f"{VALID_PREFIX}calib"], 10.0, realtime=False)
        time.sleep(8)
        first = counters.read(client)["events"]
        time.sleep(12)
        capacity = max(1.0, (counters.read(client)["events"] - first) / FACES_PER_FRAME / 12)
        stack.remove("capture-calibrate")
        settle = time.monotonic() + 60
        while time.monotonic() < settle and not drained(client):
            time.sleep(0.5)
        per_camera_fps = max(1.0, capacity / 2 / args.cameras)
        overload_cameras = max(1, math.ceil((args.overload * capacity - capacity / 2) / per_camera_fps))
        report["capacity_fps"] = capacity
        print(
            f"capacity {capacity:.1f} frames/s; steady {args.cameras} x {per_camera_fps:.1f} fps; "
            f"overload +{overload_cameras} cameras",
            flush=True,
        )

        # The schedule: steady 35 %, model down, redis + recovery 25 %, overload 25 %, then drain. Kills and
        # hostile entries are spread over the planned time; a phase may run longer than planned (the Redis
        # restart waits until every hostile entry so far has its dead letter), and they go on meanwhile.
        duration = args.duration
        total = 0.85 * duration + args.model_down_s
        kill_times = sorted(rng.uniform(5, total - 5) for _ in range(args.kills))
        malformed_times = sorted(rng.uniform(2, total - 2) for _ in range(args.malformed))
        victims = ["detector-1", "classifier-1", "capture", "model-server"]
        kills: Counter[str] = Counter()
        capture("capture", [f"{VALID_PREFIX}{i}" for i in range(args.cameras)], per_camera_fps)
        chaos_start = time.monotonic()
        quiet = False

        def tick(spare_model_server: bool = False) -> None:
            """Kills and hostile entries due by now (on the planned clock), and restarts of what ended."""
            clock = (time.monotonic() - chaos_start) * total / max(total, time.monotonic() - chaos_start)
            while kill_times and kill_times[0] <= clock:
                kill_times.pop(0)
                victim = rng.choice([v for v in victims if not (spare_model_server and v == "model-server")])
                stack.kill(victim)
                kills[victim] += 1
            while not quiet and malformed_times and malformed_times[0] <= clock:  # held back while quiet
                malformed_times.pop(0)
                malice.inject()
            stack.supervise()
            time.sleep(0.05)

        def run_for(seconds: float, spare_model_server: bool = False) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                tick(spare_model_server)

        phase("steady")
        run_for(0.35 * duration)
        phase("model-down")
        stack.stop("model-server", hold=True)
        run_for(args.model_down_s, spare_model_server=True)
        stack.release("model-server")
        phase("redis")
        quiet = True  # no new hostile entries: the ones in Redis when it goes would vanish with it
        deadline = time.monotonic() + args.quiet_s
        while not malice.all_dead_lettered(observer) and time.monotonic() < deadline:
            tick()
        malice.restarted_after = len(malice.injected)
        restart = restart_redis(client, counters, redis_process, redis_args, extra)
        redis_process = restart.pop("process")
        report["restart"] = restart
        run_for(3)
        quiet = False
        run_for(0.25 * duration - 3)
        phase("overload")
        capture("capture-overload", [f"{VALID_PREFIX}x{i}" for i in range(overload_cameras)], per_camera_fps)
        run_for(0.25 * duration)
        tick()  # the planned clock has run out: anything still due happens now
        phase("drain")
        for name in ("capture", "capture-overload"):
            if name in stack.services:
                stack.remove(name)
        drain_until = time.monotonic() + args.drain_s
        while time.monotonic() < drain_until and not drained(client):
            stack.supervise()
            time.sleep(0.5)
        time.sleep(2)
        observer.phase = "end"
        report["end"] = counters.read(client)
        report["kills"] = dict(kills)
        report["drained"] = drained(client)
        report["drain_s"] = time.monotonic() - drain_until + args.drain_s
        report["queued"] = still_queued(client, malice.injected)
    finally:
        observer.stop.set()
        stack.shutdown()
        redis_process.kill()
        redis_process.wait()
    print_report(report, observer, stack, malice)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"logs in {folder}")
    return 0


def _ends(plan: list[tuple[str, float]]) -> list[tuple[str, float]]:
    ends, at = [], 0.0
    for name, seconds in plan:
        at += seconds
        ends.append((name, at))
    return ends


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/chaos.py: not ready after {timeout:.0f}s")
        time.sleep(0.2)


def drained(client: redis.Redis) -> bool:
    """Nothing left unread or unacknowledged in any frame stream, the face stream or the score stream."""
    cameras = client.smembers(names.CAMERAS)
    streams = [names.FACES, names.SCORED, *(names.frames(m.decode(errors="replace")) for m in cameras)]
    for stream in streams:
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such stream, or not a stream (a hostile registry entry)
            continue
        if not groups and client.xlen(stream):  # its consumers have not joined again yet (Redis restart)
            return False
        for group in groups:
            if int(group["pending"]) or group.get("lag") is None or int(group["lag"]):
                return False
    return True


def still_queued(client: redis.Redis, injected: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Hostile entries still in Redis unprocessed: in their stream, or still in the camera registry."""
    queued = set()
    members = {ascii(member[:80]) for member in client.smembers(names.CAMERAS)}
    for item in injected:
        _, stream, entry = item
        if stream == names.CAMERAS:
            if entry in members:
                queued.add(item)
            continue
        with contextlib.suppress(redis.RedisError):
            if client.xrange(stream, entry, entry):
                queued.add(item)
    return queued


def restart_redis(client, counters, process, redis_args, extra):  # type: ignore[no-untyped-def]
    """SIGKILL Redis and start it again; what was in flight at that moment is the restart's allowance."""
    snapshot = counters.carry(client)
    client.set("chaos:sentinel", 1)  # tells after the restart whether Redis kept its data
    process.kill()
    process.wait()
    started = time.monotonic()
    process = subprocess.Popen(redis_args)
    extra["redis-server"] = process.pid
    wait(lambda: ping(client), 20)
    in_flight_frames = snapshot["frames_published"] - snapshot["frames_detected"] - snapshot["frames_failed"]
    in_flight_faces = snapshot["faces_detected"] - snapshot["events"] - snapshot["faces_failed"]
    in_flight_scored = snapshot["events"] - snapshot["tracked"]  # scored, not yet tracked into an event
    kept = bool(client.exists("chaos:sentinel"))  # not dbsize: services write again within milliseconds
    if kept:  # persistence on: nothing in flight was lost
        counters.carried = Counter()
        in_flight_frames = in_flight_faces = in_flight_scored = 0
    return {
        "process": process,
        "kept": kept,
        "down_s": time.monotonic() - started,
        "allowance_frames": max(0, in_flight_frames),
        "allowance_faces": max(0, in_flight_faces) + max(0, in_flight_scored),
    }


def print_report(report, observer: Observer, stack: Stack, malice: Malice) -> None:  # type: ignore[no-untyped-def]
    end: Counter[str] = report.get("end", Counter())
    valid = {key: n for key, n in observer.events.items() if key[0].startswith(VALID_PREFIX)}
    delivered = len(valid)
    duplicates = sum(n - 1 for n in valid.values())
    expected = FACES_PER_FRAME * (end["frames_published"] - end["frames_failed"])
    # The detector is not perfect: it may find fewer or more faces than the clip's two in a frame. Losses
    # are counted per stage: frames never detected (two faces each), and faces detected without an event.
    missed_by_detector = max(0, FACES_PER_FRAME * end["frames_detected"] - end["faces_detected"])
    extra_by_detector = max(0, end["faces_detected"] - FACES_PER_FRAME * end["frames_detected"])
    restart = report.get("restart", {})
    allowance_frames = int(restart.get("allowance_frames", 0))
    allowance_faces = int(restart.get("allowance_faces", 0))
    allowance = FACES_PER_FRAME * allowance_frames + allowance_faces
    frames_lost = max(0, end["frames_published"] - end["frames_detected"] - end["frames_failed"])
    faces_lost = max(0, end["faces_detected"] - end["faces_failed"] - delivered)
    lost_to_restart = FACES_PER_FRAME * min(frames_lost, allowance_frames) + min(faces_lost, allowance_faces)
    lost_other = FACES_PER_FRAME * max(0, frames_lost - allowance_frames) + max(0, faces_lost - allowance_faces)
    crashes = [crash for service in stack.services.values() for crash in service.crashes]
    print("\n== emostream chaos figures")
    print(f"capacity: {report.get('capacity_fps', 0):.1f} frames/s (2 faces each); kills: {report.get('kills')}")
    print(
        f"frames published {end['frames_published']}, dropped at capture (overload, counted) "
        f"{end['frames_dropped']}, dead-lettered {end['frames_failed']}"
    )
    print(
        f"faces expected {expected}; faces detected {end['faces_detected']} (missed {missed_by_detector}, "
        f"extra {extra_by_detector}); events delivered {delivered}; duplicates {duplicates}"
    )
    print(
        f"events lost: {lost_to_restart} to the Redis restart (allowance: {allowance} faces in flight when it "
        f"went, persistence {'on' if restart.get('kept') else 'off'}), {lost_other} otherwise; "
        f"faces dead-lettered {end['faces_failed']}"
    )
    print(
        f"crashes: {len(crashes)} {crashes if crashes else ''}; drained at the end: {report.get('drained')} "
        f"(drain took {report.get('drain_s', 0):.0f} s)"
    )
    kinds = Counter(letter.get("kind", "?") for letter in observer.dead_letters)
    print(f"dead letters by reason: {dict(sorted(kinds.items()))}")
    letters = {(letter.get("stream"), letter.get("id")): letter.get("kind") for letter in observer.dead_letters}
    right = [item for item in malice.injected if letters.get(item[1:]) == item[0]]
    wrong = [(item[0], letters[item[1:]]) for item in malice.injected if letters.get(item[1:], item[0]) != item[0]]
    missing = [item for item in malice.injected if item[1:] not in letters]
    before = set(malice.injected[: max(0, malice.restarted_after)])
    kept = report.get("restart", {}).get("kept")
    wiped = [item for item in missing if item in before and not kept]  # went with Redis (persistence off)
    queued = [item for item in missing if item not in wiped and item in report.get("queued", set())]
    lost = [item for item in missing if item not in wiped and item not in queued]
    print(
        f"malformed entries injected {len(malice.injected)} (+{sum(malice.predict_refusals.values())} oversize "
        f"Predict calls: {dict(malice.predict_refusals)}); dead-lettered with their reason {len(right)}; "
        f"other reason {len(wrong)} {wrong[:5]}; gone with the Redis restart {len(wiped)}; still queued at the "
        f"end {len(queued)}; lost {len(lost)} {lost[:5]}"
    )
    by_kind = Counter(kind for kind, _, _ in malice.injected)
    done_by_kind = Counter(kind for kind, _, _ in right)
    shares = ", ".join(f"{kind} {done_by_kind[kind]}/{n}" for kind, n in sorted(by_kind.items()))
    print(f"  dead-lettered/injected by kind: {shares}")
    boundaries: dict[str, Counter[str]] = report.get("boundaries", {})
    order = [p for p in PHASES if p in boundaries]
    print(f"\n{'phase':<11} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} {'dropped':>8}  peak RSS MB per process")
    for index, name in enumerate(order):
        following = boundaries[order[index + 1]] if index + 1 < len(order) else end
        dropped = following["frames_dropped"] - boundaries[name]["frames_dropped"]
        latencies = observer.latency_ms.get(name, [])
        peaks = ", ".join(f"{proc} {mb:.0f}" for proc, mb in sorted(observer.peak_mb.get(name, {}).items()))
        print(
            f"{name:<11} {len(latencies):>7} {percentile(latencies, 50):>8.0f} {percentile(latencies, 99):>8.0f} "
            f"{dropped:>8}  {peaks}"
        )
    print(
        json.dumps(
            {
                "expected": expected,
                "delivered": delivered,
                "duplicates": duplicates,
                "lost_restart": lost_to_restart,
                "lost_other": lost_other,
                "crashes": len(crashes),
                "dead_letters": dict(kinds),
                "malformed_injected": len(malice.injected),
                "malformed_dead_lettered": len(right),
                "malformed_other_reason": len(wrong),
                "malformed_wiped": len(wiped),
                "malformed_queued": len(queued),
                "malformed_lost": len(lost),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
