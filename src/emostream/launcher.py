"""`emostream up`: run the whole system locally as child processes and print its events.

It starts what is missing: a private redis-server when none answers, then the
project's model server and every classifier, detector and tracker replica at
once, and capture when all of them are ready, saying on stderr what it waits
for and who became ready. With `--once` it exits when every finite source has
been captured, every frame detected and every face has its event.

It imports no service package (nor TensorFlow, MediaPipe or OpenCV): each
service is a child process, and sources are checked by `emostream capture --check`.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
from emostream.errors import EmostreamError
from emostream.events_command import TABLE_HEADER, follow, format_event, last_event_id
from emostream.names import Progress
from emostream.native_logs import chatter, relay, third_party_log_env, verbose
from emostream.settings import CommonSettings, load
from emostream.telemetry import healthy

PROG = "emostream up"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", None}
GATE_TTL_S = 3600
"""How long the key that lets capture start is kept: long after capture has read it."""


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


def _write_stderr(line: bytes) -> None:
    sys.stderr.buffer.write(line)
    sys.stderr.buffer.flush()


class Children:
    """Child processes, stopped in reverse order of start."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.relays: list[threading.Thread] = []

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        full = {**self.env, **env}
        quiet = not verbose(full.get("EMOSTREAM_LOG_LEVEL", "INFO"))
        stderr = subprocess.PIPE if quiet else None
        process = subprocess.Popen(args, env=full, stderr=stderr, preexec_fn=_die_with_parent)
        if process.stderr is not None:  # native libraries' start-up chatter is dropped, the rest passes
            self.relays.append(relay(process.stderr, _write_stderr, lambda line: not chatter(line)))
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
            for thread in self.relays:  # the children's last lines reach stderr before `up` ends
                thread.join(timeout=1.0)


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


def ensure_redis(
    url: str,
    children: Children,
    folder: Path,
    data_dir: Path | None = None,
    before_starting: Callable[[], object] = lambda: None,
) -> str:
    """`url` if Redis answers there; else the URL of a private redis-server started here, once
    `before_starting` has returned (it raises to start none)."""
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
    before_starting()
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


class BadSource(EmostreamError, ValueError):
    """A source that capture cannot use; the message is capture's one line about it."""


def check_sources(sources: list[str], env: dict[str, str]) -> list[str]:
    """The sources' camera ids, as `emostream capture --check` reads them (a webcam must open)."""
    command = [
        sys.executable,
        "-m",
        "emostream.cli",
        "capture",
        "--check",
        *(a for s in sources for a in ("--sources", s)),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"capture --check exited with code {result.returncode}"]
        raise BadSource(lines[-1].removeprefix("emostream capture: "))
    cameras: list[str] = json.loads(result.stdout)
    return cameras


def resolve_sources(given: list[str], scratch: Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The sources to capture and their camera ids: those given, checked; else the default ones."""
    return (given, check_sources(given, env)) if given else default_sources(scratch, env)


def default_sources(scratch: Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The webcam if one opens, else the built-in demo; with their camera ids."""
    if Path("/dev/video0").exists():
        with suppress(BadSource):
            return ["webcam=0"], check_sources(["webcam=0"], env)
    from emostream.demo import write_demo

    print(f"{PROG}: no source given and no webcam: playing the built-in demo", file=sys.stderr)
    sources = [f"demo={write_demo(scratch / 'demo')}"]
    return sources, check_sources(sources, env)


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


def finished(client: redis.Redis, cameras: list[str]) -> bool:
    """Every camera captured to its end, every frame detected, every face classified."""
    for camera in cameras:
        progress = {k.decode(): int(v) for k, v in client.hgetall(names.progress(camera)).items()}
        if not progress.get(Progress.DONE):
            return False
        # Dead-lettered frames and faces count as handled: they will never have an event.
        handled_frames = progress.get(Progress.FRAMES_DETECTED, 0) + progress.get(Progress.FRAMES_FAILED, 0)
        if handled_frames < progress.get(Progress.FRAMES_TOTAL, 0):
            return False
        if progress.get(Progress.EVENTS, 0) + progress.get(Progress.FACES_FAILED, 0) < progress.get(
            Progress.FACES_DETECTED, 0
        ):
            return False
        if progress.get(Progress.TRACKED, 0) < progress.get(Progress.EVENTS, 0):
            return False
    return True


class NotReady(EmostreamError, RuntimeError):
    """A replica died, or did not report ready in time, before capture started."""


def wait_for_replicas(
    client: redis.Redis,
    children: Children,
    replicas: list[tuple[str, str]],
    timeout_s: float = 120.0,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Block until every (service, consumer) has written its heartbeat, i.e. loaded its model and
    entered its loop, so that capture does not start into a backlog that skews every latency.
    `on_ready(service, consumer)` is called once for each, as it becomes ready."""
    deadline = time.monotonic() + timeout_s
    waiting = list(replicas)
    while waiting:
        failure = children.failed(allowed_to_finish=set())
        if failure:
            raise NotReady(failure)
        if time.monotonic() > deadline:
            raise NotReady(f"not ready after {timeout_s:.0f}s: {', '.join(c for _, c in waiting)}")
        ready = [(service, consumer) for service, consumer in waiting if healthy(client, service, consumer)]
        for service, consumer in ready:
            waiting.remove((service, consumer))
            if on_ready is not None:
                on_ready(service, consumer)
        if waiting:
            time.sleep(0.05)


class Announcer:
    """Says on stderr what `up` waits for, then one line per service as it becomes ready."""

    def __init__(self, started: float, model_server: str | None) -> None:
        self.started = started
        self.model_server = model_server  # its address if `up` started it: ready when a classifier is

    def waiting(self, replicas: list[tuple[str, str]]) -> None:
        awaited = ["model server"] if self.model_server else []
        awaited += [consumer for _, consumer in replicas]
        print(f"{PROG}: waiting for {', '.join(awaited)}", file=sys.stderr, flush=True)

    def ready(self, service: str, consumer: str) -> None:
        elapsed = time.monotonic() - self.started
        if service == "classifier" and self.model_server:  # a classifier is ready once its model answers
            print(f"{PROG}: model server ready at {self.model_server} ({elapsed:.1f}s)", file=sys.stderr)
            self.model_server = None
        print(f"{PROG}: {consumer} ready ({elapsed:.1f}s)", file=sys.stderr, flush=True)


def reset_progress(client: redis.Redis, cameras: list[str]) -> None:
    """Clear this run's cameras' counters before anything starts, so a previous run's 'done' cannot end this one."""
    client.delete(*(names.progress(camera) for camera in cameras))


def child_env(environ: dict[str, str]) -> dict[str, str]:
    """The children's environment: warnings and up by default, and third-party logs as quiet as that level."""
    level = environ.get("EMOSTREAM_LOG_LEVEL", "WARNING")
    return {**third_party_log_env(level), **environ, "EMOSTREAM_LOG_LEVEL": level}


def start_services(settings: UpSettings, children: Children, client: redis.Redis, target: str) -> list[tuple[str, str]]:
    """Start every replica at once (each loads in parallel, the model server too); their (service, consumer)."""
    commands = {"classifier": "classify", "detector": "detect", "tracker": "track"}
    service_env = {
        "classifier": {
            "CLASSIFIER_SERVING_TARGET": target,
            "CLASSIFIER_MODEL_NAME": settings.model_name,
            "CLASSIFIER_MODEL_BASE": str(settings.model_base),
            # With a model config the classifiers ask for the served label and shadow the candidate.
            "CLASSIFIER_VERSION_LABEL": "stable" if model_config(settings) is not None else "",
        },
        "detector": {},
        "tracker": {},
    }
    replicas = [("classifier", f"classifier-{i + 1}") for i in range(settings.classifiers)]
    replicas += [("detector", f"detector-{i + 1}") for i in range(settings.detectors)]
    replicas += [("tracker", "tracker-1")]  # one tracker follows every camera in frame order
    client.delete(*(names.heartbeat(service, consumer) for service, consumer in replicas))
    for service, consumer in replicas:
        children.emostream(consumer, [commands[service]], EMOSTREAM_CONSUMER=consumer, **service_env[service])
    return replicas


def run(settings: UpSettings, started: float) -> int:
    children = Children(child_env(dict(os.environ)))
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emostream-up-")))
        stack.callback(children.stop)  # runs first: every child has ended before its temp folder goes
        # The model server loads longest and needs neither Redis nor the sources: it starts first.
        target = start_model_server(settings, children)
        # Sources are checked (and the demo written) while Redis and the replicas start.
        checking = ThreadPoolExecutor(1, thread_name_prefix="source-check")
        stack.callback(checking.shutdown, wait=False, cancel_futures=True)
        checked = checking.submit(resolve_sources, settings.sources, scratch, dict(children.env))
        # A bad source must not leave a private Redis behind: that one starts once the sources are good.
        redis_url = ensure_redis(settings.redis_url, children, scratch, settings.redis_dir, checked.result)
        children.env["EMOSTREAM_REDIS_URL"] = redis_url
        client = connect(redis_url)
        start = last_event_id(client)  # before any service starts: no event of this run is missed
        replicas = start_services(settings, children, client, target)
        sources, cameras = checked.result()  # a bad source stops here, before capture or any wait
        reset_progress(client, cameras)
        # Capture loads alongside the replicas and sends its first frame once all of them are ready.
        gate = names.start_gate(f"up-{os.getpid()}-{time.time_ns()}")
        flags = ["--realtime" if settings.realtime else "--no-realtime", "--loop" if settings.loop else "--no-loop"]
        children.emostream(
            "capture",
            ["capture", *flags, "--start-gate", gate, *(arg for s in sources for arg in ("--sources", s))],
            EMOSTREAM_CONSUMER="capture",
        )
        announcer = Announcer(started, None if settings.serving_target else target)
        announcer.waiting(replicas)
        wait_for_replicas(client, children, replicas, settings.ready_timeout_s, announcer.ready)
        client.set(gate, 1, ex=GATE_TTL_S)
        if settings.viewer_port:
            children.emostream("viewer", ["view", "--port", str(settings.viewer_port)])
            print(f"{PROG}: viewer on http://127.0.0.1:{settings.viewer_port}/", file=sys.stderr)
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
    started = time.monotonic()
    settings = load(UpSettings, argv, prog=PROG, positional="sources")
    handlers = {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return run(settings, started)
    except BadSource as error:
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
