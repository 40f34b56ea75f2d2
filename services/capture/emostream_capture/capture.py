"""The capture loop: read each source in its own thread and publish JPEG frames to its camera's stream.

Files and image folders are paced at their own frame rate (`realtime`), or else fed as fast as the
detectors consume them, holding back while the detector group's backlog on the stream is `max_backlog`
or more. Live sources are never paced and reconnect when they drop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import cv2
import numpy as np
import redis

from emostream import metrics, names, wire
from emostream.errors import EmostreamError
from emostream.names import Progress
from emostream.streams import Publisher
from emostream.telemetry import Meter
from emostream_capture import sources as src
from emostream_capture.settings import CaptureSettings

log = logging.getLogger("emostream.capture")
SERVICE = "capture"
BACKLOG_POLL_S = 0.05
JOIN_POLL_S = 0.5


R = TypeVar("R")
RETRY_MAX_S = 10.0


class Stopped(Exception):
    """Stop was set while waiting for Redis to come back."""


def retrying(stop: threading.Event, call: Callable[[], R]) -> R:
    """`call()`, retried with capped backoff while Redis is unreachable: a Redis restart holds the frame
    in hand instead of ending capture. Raises Stopped if `stop` is set meanwhile."""
    delay = 0.5
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("Redis unavailable (%s); retrying in %.1fs", error, delay)
            if stop.wait(delay):
                raise Stopped from error
            delay = min(delay * 2, RETRY_MAX_S)


class EncodeError(EmostreamError, ValueError):
    """A frame that cannot be JPEG-encoded."""


class SharedMeter:
    """A telemetry Meter that several source threads may count on."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.meter.add(name, amount)

    def tick(self, force: bool = False) -> None:
        with self._lock:
            self.meter.tick(force)


def encode_jpeg(frame: np.ndarray, quality: int, max_width: int) -> tuple[bytes, int, int]:
    """(jpeg, width, height) of `frame`, downscaled to `max_width` if wider (0: never)."""
    try:
        height, width = frame.shape[:2]
        if max_width and width > max_width:
            height, width = max(1, round(height * max_width / width)), max_width
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except (cv2.error, ValueError, TypeError, AttributeError) as error:
        raise EncodeError(str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)) from error
    if not ok:
        raise EncodeError("cv2.imencode returned no image")
    return buffer.tobytes(), int(width), int(height)


def backlog(client: redis.Redis, stream: str) -> int:
    """Entries of `stream` the detector group has not finished: lag (unread) plus pending (unacked).

    Without the group yet, every entry in the stream is waiting.
    """
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet: nothing waits
        return 0
    for group in groups:
        if _text(group["name"]) == names.DETECTOR_GROUP:
            lag = group.get("lag")
            if lag is None:  # Redis cannot tell after deletions: the stream's length (pending included) bounds it,
                return int(client.xlen(stream))  # and reading the entries to count them could mean 100 MB of frames
            return int(lag) + int(group["pending"])
    return int(client.xlen(stream))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def wait_for_room(client: redis.Redis, stream: str, max_backlog: int, stop: threading.Event) -> None:
    """Block until fewer than `max_backlog` frames of `stream` wait for the detectors, or until stop."""
    waited = False
    while not stop.is_set() and backlog(client, stream) >= max_backlog:
        if not waited:
            log.debug("%s: %d frames wait for the detectors; holding", stream, max_backlog)
            waited = True
        stop.wait(BACKLOG_POLL_S)


def start_camera(client: redis.Redis, camera: str) -> None:
    """Announce `camera` to detectors. Its counters are kept: a restarted capture adds to them
    (`emostream up` clears them for a new run)."""
    client.sadd(names.CAMERAS, camera)


def finish_camera(client: redis.Redis, camera: str, frames_total: int) -> None:
    """Mark a finite source as fully published."""
    client.hset(names.progress(camera), mapping={Progress.DONE: 1, Progress.FRAMES_TOTAL: frames_total})


def already_done(client: redis.Redis, camera: str) -> bool:
    """True when a finite source of `camera` was fully published (since Redis started)."""
    return bool(client.hget(names.progress(camera), Progress.DONE))


def publish(client: redis.Redis, camera: str, seq: int, frame: np.ndarray, settings: CaptureSettings) -> bool:
    """Encode and publish one frame; False (logged) when it cannot be encoded."""
    ts_capture_ms = int(time.time() * 1000)
    try:
        jpeg, width, height = encode_jpeg(frame, settings.jpeg_quality, settings.max_width)
    except EncodeError as error:
        log.error("%s: frame %d skipped, cannot encode it: %s", camera, seq, error)
        return False
    message = wire.Frame(camera=camera, seq=seq, ts_capture_ms=ts_capture_ms, jpeg=jpeg, width=width, height=height)
    frames = Publisher(lambda frame: names.frames(frame.camera), wire.encode_frame, settings.stream_maxlen)
    pipe = client.pipeline()
    frames.add(pipe, message)  # a source is not replayed, so a plain XADD: nothing to de-duplicate
    pipe.hincrby(names.progress(camera), Progress.FRAMES_PUBLISHED, 1)
    pipe.sadd(names.CAMERAS, camera)  # again with every frame: a Redis restarted without persistence forgot it
    pipe.execute()
    metrics.CAPTURE_FRAMES.labels(camera).inc()
    return True


def shed(client: redis.Redis, camera: str, shed_backlog: int) -> bool:
    """True (and counted) when the detectors are `shed_backlog` frames behind on `camera`: the frame is dropped
    here, newest first, rather than queued into latency or trimmed unread from the stream later."""
    if not shed_backlog or backlog(client, names.frames(camera)) < shed_backlog:
        return False
    client.hincrby(names.progress(camera), Progress.FRAMES_DROPPED, 1)
    return True


def _one_pass(
    client: redis.Redis,
    source: src.Source,
    settings: CaptureSettings,
    stop: threading.Event,
    meter: SharedMeter | None,
    seq_offset: int,
) -> tuple[int, int]:
    """Publish one pass over `source`; (frames published, seqs used)."""
    stream = names.frames(source.camera)
    live = src.is_live(source)
    fps = src.native_fps(source) if settings.realtime and not live else None
    if settings.realtime and not live and fps is None:
        log.warning("%s: frame rate unknown; feeding it as fast as the detectors consume", source.camera)
    throttle = not live and fps is None
    started = time.monotonic()
    published = used = 0
    for index, frame in src.frames(source, stop, settings.reconnect_max_s, settings.network_timeout_s):
        if fps:
            stop.wait(max(0.0, started + index / fps - time.monotonic()))
        elif throttle:
            retrying(stop, lambda: wait_for_room(client, stream, settings.max_backlog, stop))
        if stop.is_set():
            break
        used = index + 1
        if not throttle and retrying(stop, lambda: shed(client, source.camera, settings.shed_backlog)):
            if meter:
                meter.add("dropped")
            continue
        if retrying(stop, partial(publish, client, source.camera, seq_offset + index, frame, settings)):
            published += 1
            if meter:
                meter.add("frames")
        elif meter:
            meter.add("skipped")
    if isinstance(source, src.ImagesSource):
        used = len(source.paths)
    return published, used


def run_source(
    client: redis.Redis,
    source: src.Source,
    settings: CaptureSettings,
    stop: threading.Event,
    meter: SharedMeter | None = None,
) -> int:
    """Publish `source` until it ends (finite, without loop) or `stop`; the number of frames published.

    With `loop`, seq keeps counting across passes: downstream de-duplication keys on camera and seq.
    With `keep_running`, a finite source that Redis marks done is skipped: a restarted service does not
    replay it.
    """
    if (
        settings.keep_running
        and not src.is_live(source)
        and retrying(stop, partial(already_done, client, source.camera))
    ):
        log.info("%s: done before this start; not replaying it", source.camera)
        return 0
    retrying(stop, lambda: start_camera(client, source.camera))
    total = offset = 0
    while not stop.is_set():
        published, used = _one_pass(client, source, settings, stop, meter, offset)
        total += published
        offset += used
        if src.is_live(source) or stop.is_set():
            break
        if not settings.loop:
            retrying(stop, partial(finish_camera, client, source.camera, total))
            log.info("%s: done, %d frames published", source.camera, total)
            break
        if published == 0:
            log.error("%s: a pass published no frames; not looping over an empty source", source.camera)
            break
    return total


def run_capture(
    client: redis.Redis,
    sources: Sequence[src.Source],
    settings: CaptureSettings,
    stop: threading.Event,
) -> int:
    """Run every source in its own thread until all finite ones end or `stop`; 0 if none failed, else 1."""
    meter = SharedMeter(Meter(client, SERVICE, settings.consumer, log, every_s=settings.heartbeat_s))
    meter.tick(force=True)
    failed: list[str] = []

    def work(source: src.Source) -> None:
        try:
            run_source(client, source, settings, stop, meter)
        except Stopped:  # stopped while Redis was away: nothing half-published
            return
        except redis.RedisError as error:  # every source needs Redis: stop all and let the supervisor restart us
            log.error("%s: Redis failed, stopping capture: %s", source.camera, error)
            failed.append(source.camera)
            stop.set()
        except Exception:  # one broken source must not take the others down
            log.exception("%s: source %s failed", source.camera, source.kind)
            metrics.CAPTURE_SOURCE_ERRORS.labels(source.camera).inc()
            failed.append(source.camera)

    threads = [
        threading.Thread(target=work, args=(source,), name=f"capture-{source.camera}", daemon=True)
        for source in sources
    ]
    for thread in threads:
        thread.start()
    while alive := [thread for thread in threads if thread.is_alive()]:
        alive[0].join(JOIN_POLL_S)
        meter.tick()
    meter.tick(force=True)
    if settings.keep_running and not failed:
        log.info("every finite source has ended; staying up until stopped")
        while not stop.wait(JOIN_POLL_S):
            meter.tick()
    return 1 if failed else 0
