"""`emostream capture`: publish frames from webcams, video files, URLs and image folders until done or stopped."""

from __future__ import annotations

import json
import signal
import sys
import threading

import redis

from emostream import metrics
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import stop_on_signals
from emostream.settings import load
from emostream.telemetry import setup_logging
from emostream_capture.capture import SERVICE, run_capture, start_camera
from emostream_capture.media import media_sources
from emostream_capture.settings import CaptureSettings
from emostream_capture.sources import Source, SourceError, WebcamSource, open_webcam, parse_sources

PROG = "emostream capture"


def check(sources: list[Source]) -> int:
    """Print the sources' camera ids (a JSON list) if every webcam among them opens; 2 naming the one that does not."""
    for source in sources:
        if isinstance(source, WebcamSource) and not open_webcam(source.index):
            print(f"{PROG}: source {source.camera!r}: webcam {source.index} does not open", file=sys.stderr)
            return 2
    print(json.dumps([source.camera for source in sources]))
    return 0


def wait_for_gate(client: redis.Redis, key: str, stop: threading.Event, poll_s: float = 0.02) -> bool:
    """Block until `key` exists in Redis (True) or `stop` is set (False)."""
    while not stop.is_set():
        if client.exists(key):
            return True
        stop.wait(poll_s)
    return False


def main(argv: list[str]) -> int:
    """Run capture; 0 when every finite source is done (or on SIGTERM/SIGINT), 1 on failure, 2 on bad setup."""
    settings = load(CaptureSettings, argv, prog=PROG, positional="sources")
    setup_logging(settings.log_level, SERVICE)
    try:
        sources = parse_sources(settings.sources, settings.images_fps)
    except SourceError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    if settings.check:
        return check(sources)
    if settings.media_dir is not None:
        sources += media_sources(settings.media_dir, {s.camera for s in sources}, settings.images_fps)
    if not sources and not settings.keep_running:
        print(f"{PROG}: no source: none given and nothing playable in {settings.media_dir}", file=sys.stderr)
        return 2
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    try:
        metrics.serve(settings.metrics_port)
    except OSError as error:
        print(f"{PROG}: cannot serve metrics on port {settings.metrics_port}: {error}", file=sys.stderr)
        return 1
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stop = stop_on_signals()
    try:
        if settings.start_gate:
            for source in sources:  # detectors find the cameras' streams while capture waits
                start_camera(client, source.camera)
            if not wait_for_gate(client, settings.start_gate, stop):
                return 0  # stopped before the first frame
        return run_capture(client, sources, settings, stop)
    finally:
        for signum, handler in previous.items():  # leave an embedding process (or a test) as it was
            signal.signal(signum, handler)
        client.close()
