"""`emostream up`: run the whole system locally as child processes and print its events.

It starts what is missing: a private redis-server when none answers, the
project's model server, then classifier and detector replicas, and capture once
they are ready. With `--once` it exits when every finite source has been
captured, every frame detected and every face has its event.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Literal
from urllib.parse import urlparse

import redis
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream import names
from emostream.connection import RedisUnavailable, connect, redact
from emostream.events_command import TABLE_HEADER, follow, format_event, last_event_id
from emostream.settings import CommonSettings, load
from emostream.telemetry import healthy

PROG = "emostream up"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", None}


class UpSettings(CommonSettings):
    """Run capture, detector, classifier and a model server locally; print events."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="UP_")

    sources: list[str] = Field(
        default_factory=list,
        description="capture sources ([camera=]spec); none: the webcam if one opens, else the built-in demo",
    )
    once: bool = Field(False, description="exit once finite sources are fully processed")
    realtime: bool = Field(True, description="pace files at their frame rate (off: as fast as the pipeline)")
    loop: bool = Field(False, description="replay finite sources forever")
    model_base: Path = Field(Path("models/emotion"), description="model base path served to the classifier")
    model_name: str = Field("emotion", min_length=1, description="model name")
    model_config_file: Path | None = Field(
        None,
        description="TF Serving model config naming the served (stable) and candidate (canary) versions "
        "(default: models.config beside the model base, if there is one)",
    )
    serving_target: str = Field(
        "", description="use this running TF Serving (host:port) instead of starting the project's model server"
    )
    detectors: int = Field(1, ge=1, le=32, description="detector replicas")
    classifiers: int = Field(1, ge=1, le=32, description="classifier replicas")
    format: Literal["table", "json"] = Field("table", description="how events are printed")
    timeout_s: float = Field(0.0, ge=0, description="with --once, fail after this many seconds (0: never)")
    redis_dir: Path | None = Field(
        None,
        description="if a private redis-server is started, keep its data here (append-only file, fsync every "
        "second) so that a restart loses at most the last second; frames hold faces, so unset (the default) "
        "nothing reaches the disk",
    )
    ready_timeout_s: float = Field(
        300.0, gt=0, description="longest wait for every replica to load its model before capture starts"
    )
    viewer_port: int = Field(0, ge=0, le=65535, description="also serve the web viewer on 127.0.0.1:PORT (0: no)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if `up` itself dies, even by SIGKILL (Linux)."""
    with suppress(OSError, AttributeError):  # not Linux: SIGTERM and SIGINT handling still stop every child
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, so a second Ctrl-C cannot cut a cleanup short."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Children:
    """Child processes, stopped in reverse order of start."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, env={**self.env, **env}, preexec_fn=_die_with_parent)
        self.running.append((name, process))
        return process

    def emostream(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", "emostream.cli", *command], **env)

    def failed(self, allowed_to_finish: set[str]) -> str | None:
        """The name of a child that ended badly, or that should not have ended at all."""
        for name, process in self.running:
            code = process.poll()
            if code is not None and (code != 0 or name not in allowed_to_finish):
                return f"{name} exited with code {code}"
        return None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child (each finishes or leaves pending what it holds), SIGKILL what outlives `timeout_s`."""
        with signals_held():
            for _, process in reversed(self.running):
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + timeout_s
            for _, process in reversed(self.running):
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def redis_server_args(server: str, port: int, folder: Path, data_dir: Path | None) -> list[str]:
    """A private redis-server on 127.0.0.1:`port`: nothing saved, or an append-only file in `data_dir`."""
    persistence = ["--appendonly", "no", "--dir", str(folder)]
    if data_dir is not None:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data_dir)]
    return [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        *persistence,
        # its log stays out of stdout, which carries the events (JSON lines with --format json)
        "--logfile",
        str(Path(folder) / "redis.log"),
    ]


def ensure_redis(url: str, children: Children, folder: Path, data_dir: Path | None = None) -> str:
    """`url` if Redis answers there; else the URL of a private redis-server started here."""
    try:
        connect(url, timeout_s=1.0).close()
        return url
    except RedisUnavailable as error:
        server = shutil.which("redis-server")
        if urlparse(url).hostname not in LOCAL_HOSTS or server is None:
            raise RedisUnavailable(
                f"{error}. Install redis-server (apt-get install redis-server) to let "
                f"`{PROG}` start a private one, or point EMOSTREAM_REDIS_URL at a Redis."
            ) from None
    port = free_port()
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    children.start("redis", redis_server_args(server, port, folder, data_dir))
    private = f"redis://127.0.0.1:{port}/0"
    kept = f"data kept in {data_dir}" if data_dir is not None else "nothing saved"
    deadline = time.monotonic() + 10
    while True:
        try:
            connect(private, timeout_s=0.5).close()
            print(
                f"{PROG}: no Redis at {redact(url)}; started a private redis-server at {private} ({kept})",
                file=sys.stderr,
            )
            return private
        except RedisUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def webcam_available() -> bool:
    if not Path("/dev/video0").exists():
        return False
    import cv2

    capture = cv2.VideoCapture(0)
    try:
        return bool(capture.isOpened())
    finally:
        capture.release()


def default_sources(scratch: Path) -> list[str]:
    if webcam_available():
        return ["webcam=0"]
    from emostream.demo import write_demo

    print(f"{PROG}: no source given and no webcam: playing the built-in demo", file=sys.stderr)
    return [f"demo={write_demo(scratch / 'demo')}"]


def model_config(settings: UpSettings) -> Path | None:
    """The model config to serve from: the one given, else models.config beside the base if present."""
    if settings.model_config_file is not None:
        return settings.model_config_file
    beside = settings.model_base.parent / "models.config"
    return beside if beside.is_file() else None


def start_model_server(settings: UpSettings, children: Children) -> str:
    if settings.serving_target:
        return settings.serving_target
    if not settings.model_base.is_dir():
        raise SystemExit(
            f"{PROG}: no model at {settings.model_base}; train one with `emostream train` or pass --model-base"
        )
    port = free_port()
    config = model_config(settings)
    # The config names the folder as TF Serving sees it in compose; here it is the local model base.
    serving = ["--model-base", str(settings.model_base)]
    if config is not None:
        serving = ["--model-config-file", str(config), "--config-base-path", str(settings.model_base.resolve())]
        serving.append("--allow-version-labels-for-unavailable-models")  # labels apply while versions load
    children.emostream(
        "model server",
        ["serve-model", *serving, "--model-name", settings.model_name, "--port", str(port)],
    )
    return f"127.0.0.1:{port}"


def wait_for_model(target: str, model_name: str, timeout_s: float = 120.0) -> None:
    from emostream_classifier.tf_serving import ServingClient

    with ServingClient(target, model_name) as client:
        client.wait_ready(timeout_s)


def finished(client: redis.Redis, cameras: list[str]) -> bool:
    """Every camera captured to its end, every frame detected, every face classified."""
    for camera in cameras:
        progress = {k.decode(): int(v) for k, v in client.hgetall(names.progress(camera)).items()}
        if not progress.get("done"):
            return False
        # Dead-lettered frames and faces count as handled: they will never have an event.
        if progress.get("frames_detected", 0) + progress.get("frames_failed", 0) < progress.get("frames_total", 0):
            return False
        if progress.get("events", 0) + progress.get("faces_failed", 0) < progress.get("faces_detected", 0):
            return False
        if progress.get("tracked", 0) < progress.get("events", 0):
            return False
    return True


class NotReady(RuntimeError):
    """A replica died, or did not report ready in time, before capture started."""


def wait_for_replicas(
    client: redis.Redis, children: Children, replicas: list[tuple[str, str]], timeout_s: float = 120.0
) -> None:
    """Block until every (service, consumer) has written its heartbeat, i.e. loaded its model and
    entered its loop, so that capture does not start into a backlog that skews every latency."""
    deadline = time.monotonic() + timeout_s
    waiting = list(replicas)
    while waiting:
        failure = children.failed(allowed_to_finish=set())
        if failure:
            raise NotReady(failure)
        if time.monotonic() > deadline:
            raise NotReady(f"not ready after {timeout_s:.0f}s: {', '.join(c for _, c in waiting)}")
        waiting = [(service, consumer) for service, consumer in waiting if not healthy(client, service, consumer)]
        if waiting:
            time.sleep(0.1)


def camera_ids(sources: list[str]) -> list[str]:
    from emostream_capture.sources import parse_sources

    return [source.camera for source in parse_sources(sources, 10.0)]


def reset_progress(client: redis.Redis, cameras: list[str]) -> None:
    """Clear this run's cameras' counters before anything starts, so a previous run's 'done' cannot end this one."""
    client.delete(*(names.progress(camera) for camera in cameras))


def run(settings: UpSettings) -> int:
    children = Children({**os.environ, "EMOSTREAM_LOG_LEVEL": os.environ.get("EMOSTREAM_LOG_LEVEL", "WARNING")})
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emostream-up-")))
        stack.callback(children.stop)  # runs first: every child has ended before its temp folder goes
        sources = settings.sources or default_sources(scratch)
        cameras = camera_ids(sources)  # a bad source stops here, before anything has started
        redis_url = ensure_redis(settings.redis_url, children, scratch, settings.redis_dir)
        children.env["EMOSTREAM_REDIS_URL"] = redis_url
        client = connect(redis_url)
        start = last_event_id(client)  # before any service starts: no event of this run is missed
        reset_progress(client, cameras)
        from emostream_detector.model_file import default_dir, fetch

        detector_models = Path(os.environ.get("DETECTOR_MODEL_DIR", default_dir()))
        fetch(detector_models)
        target = start_model_server(settings, children)
        wait_for_model(target, settings.model_name)
        commands = {"classifier": "classify", "detector": "detect", "tracker": "track"}
        service_env = {
            "classifier": {
                "CLASSIFIER_SERVING_TARGET": target,
                "CLASSIFIER_MODEL_NAME": settings.model_name,
                "CLASSIFIER_MODEL_BASE": str(settings.model_base),
                # With a model config the classifiers ask for the served label and shadow the candidate.
                "CLASSIFIER_VERSION_LABEL": "stable" if model_config(settings) is not None else "",
            },
            "detector": {"DETECTOR_MODEL_DIR": str(detector_models)},
            "tracker": {},
        }
        replicas = [("classifier", f"classifier-{i + 1}") for i in range(settings.classifiers)]
        replicas += [("detector", f"detector-{i + 1}") for i in range(settings.detectors)]
        replicas += [("tracker", "tracker-1")]  # one tracker follows every camera in frame order
        client.delete(*(names.heartbeat(service, consumer) for service, consumer in replicas))
        for service, consumer in replicas:
            children.emostream(consumer, [commands[service]], EMOSTREAM_CONSUMER=consumer, **service_env[service])
        wait_for_replicas(client, children, replicas, settings.ready_timeout_s)
        if settings.viewer_port:
            children.emostream("viewer", ["view", "--port", str(settings.viewer_port)])
            print(f"{PROG}: viewer on http://127.0.0.1:{settings.viewer_port}/", file=sys.stderr)
        flags = ["--realtime" if settings.realtime else "--no-realtime", "--loop" if settings.loop else "--no-loop"]
        children.emostream(
            "capture",
            ["capture", *flags, *(arg for s in sources for arg in ("--sources", s))],
            EMOSTREAM_CONSUMER="capture",
        )
        return print_until_done(client, start, settings, children, cameras)
    return 1


def print_until_done(
    client: redis.Redis,
    start: str,
    settings: UpSettings,
    children: Children,
    cameras: list[str],
) -> int:
    started = next_check = time.monotonic()
    if settings.format == "table":
        print(TABLE_HEADER, flush=True)
    done = False
    for event in follow(client, start, block_ms=200):
        if event is not None and event.camera in cameras:
            print(format_event(event, settings.format), flush=True)
        if done and event is None:  # every event was already published; now all of them are printed too
            return 0
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + 0.2  # checks between events too, however busy the stream
        failure = children.failed(allowed_to_finish={"capture"})
        if failure:
            print(f"{PROG}: {failure}; stopping", file=sys.stderr)
            return 1
        if settings.once and finished(client, cameras):
            done = True
        if settings.once and settings.timeout_s and time.monotonic() - started > settings.timeout_s:
            print(f"{PROG}: not finished after {settings.timeout_s:.0f}s", file=sys.stderr)
            return 1
    return 1


class Stopped(Exception):
    """SIGTERM (or SIGHUP) arrived: unwind like Ctrl-C, stopping every child and removing the temp folder."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once: a second signal must not cut the cleanup short
    raise Stopped(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    settings = load(UpSettings, argv, prog=PROG, positional="sources")
    from emostream_capture.sources import SourceError

    handlers = {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return run(settings)
    except SourceError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except (RedisUnavailable, NotReady) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        print(f"\n{PROG}: stopped; every service it started has ended", file=sys.stderr)
        return 0
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
