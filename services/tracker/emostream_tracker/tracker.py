"""The tracker service: the per-camera stage between the classifier and `emostream:events`.

Reads the classifier's per-face results (`emostream:scored`) in whatever order replicas produced
them, puts each camera's frames back in frame_seq order, follows faces across frames, and
publishes each face's event with its track and smoothed label, plus track start/change/end entries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import redis

from emostream import metrics, names
from emostream.names import Progress
from emostream.streams import Consumer, Message, Once, Publisher, publish_once
from emostream.telemetry import Meter
from emostream.wire import EmotionEvent, decode_event, encode_event
from emostream_tracker.ordering import FrameOrder
from emostream_tracker.settings import TrackerSettings
from emostream_tracker.tracking import CameraTracker, TrackEntry


@dataclass(frozen=True)
class TrackedFrame:
    """One frame's faces as read, their tracked events, and the track entries the frame caused."""

    messages: list[Message[EmotionEvent]]
    events: list[EmotionEvent]
    entries: list[TrackEntry]


@dataclass
class CameraState:
    order: FrameOrder[Message[EmotionEvent]]
    tracker: CameraTracker
    last_frame_ms: float = field(default_factory=lambda: time.monotonic() * 1000)
    detected_at_last_frame: int = 0


class Tracker:
    """One replica tracks every camera: tracking costs microseconds per face, far below detection."""

    def __init__(self, settings: TrackerSettings, client: redis.Redis, log: logging.Logger) -> None:
        self.settings = settings
        self.client = client
        self.log = log
        self.config = settings.config()
        self.cameras: dict[str, CameraState] = {}
        self.consumer: Consumer[EmotionEvent] = Consumer(
            client,
            names.TRACKER_GROUP,
            settings.consumer,
            decode_event,
            lambda: [names.SCORED],
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.events: Publisher[EmotionEvent] = Publisher(names.EVENTS, encode_event, settings.events_maxlen)
        self.tracks: Publisher[TrackEntry] = Publisher(names.TRACKS, TrackEntry.fields, settings.tracks_maxlen)
        self.meter = Meter(client, "tracker", settings.consumer, log)

    def camera(self, camera: str) -> CameraState:
        state = self.cameras.get(camera)
        if state is None:

            def new_id() -> str:
                return f"{camera}-{self.client.incr(names.track_counter(camera))}"

            state = CameraState(FrameOrder(self.settings.reorder_ms), CameraTracker(camera, self.config, new_id))
            self.cameras[camera] = state
        return state

    def accept(self, message: Message[EmotionEvent], now_ms: float) -> None:
        event = message.value
        state = self.camera(event.camera)
        if state.order.restarted(event.frame_seq, event.ts_capture_ms):
            self.log.info("camera %s started again from frame %d: its tracks end", event.camera, event.frame_seq)
            self.publish_entries(state.tracker.end_all())
            state.order.reset()
        if state.order.is_late(event.frame_seq):
            metrics.TRACKER_LATE.labels(event.camera).inc()
            self.publish([TrackedFrame([message], [state.tracker.late(event)], [])])
            return
        state.order.add(event.frame_seq, event.ts_capture_ms, event.face_index, event.faces_in_frame, message, now_ms)

    def step(self) -> None:
        s = self.settings
        # Block only while nothing waits for release, so frames held for reordering go out on time.
        waiting = any(len(state.order) for state in self.cameras.values())
        messages = self.consumer.read(s.read_count, 10 if waiting else s.block_ms)
        now_ms = time.monotonic() * 1000
        for message in messages:
            self.accept(message, now_ms)
        tracked: list[TrackedFrame] = []
        for camera, state in self.cameras.items():
            released = state.order.release(now_ms)
            for frame in released:
                events, entries = state.tracker.frame(frame.seq, [m.value for m in frame.items])
                tracked.append(TrackedFrame(frame.items, events, entries))
            if released:
                state.last_frame_ms = now_ms
                state.detected_at_last_frame = self.frames_detected(camera)
            elif state.tracker.tracks and not len(state.order) and self.gone(camera, state, now_ms):
                self.publish_entries(state.tracker.end_all())
            metrics.TRACKER_ACTIVE.labels(state.tracker.camera).set(len(state.tracker.tracks))
        self.publish(tracked)  # every frame released in this step in one round trip
        self.meter.tick()

    def frames_detected(self, camera: str) -> int:
        return int(self.client.hget(names.progress(camera), Progress.FRAMES_DETECTED) or 0)

    def gone(self, camera: str, state: CameraState, now_ms: float) -> bool:
        """No face for a while: the detector went on through more frames than a track may miss, none
        with a face; or nothing at all came for `stopped_end_ms` (the camera stopped). A stalled
        pipeline detects no frames, so it does not end tracks of people still in view."""
        idle_ms = now_ms - state.last_frame_ms
        if idle_ms > self.settings.stopped_end_ms:
            return True
        if idle_ms <= self.settings.idle_end_ms:
            return False
        missed = self.frames_detected(camera) - state.detected_at_last_frame
        return missed > self.config.max_missed_frames

    def publish(self, frames: list[TrackedFrame]) -> None:
        """Each face's event once; a frame's track entries ride with its first face (same marker)."""
        if not frames:
            return
        items, events, messages = [], [], []
        # ts_event_ms is when the user-facing event is published, so latency figures include tracking.
        now_ms = int(time.time() * 1000)
        for frame in frames:
            for index, (message, tracked) in enumerate(zip(frame.messages, frame.events, strict=True)):
                event = replace(tracked, ts_event_ms=now_ms)
                outputs = [self.events.entry(event)]
                if index == 0:
                    outputs += [self.tracks.entry(entry) for entry in frame.entries]
                face = message.value
                marker = names.seen("tracked", f"{face.camera}:{face.frame_seq}:{face.face_index}:{face.ts_capture_ms}")
                progress = names.progress(face.camera)
                items.append(
                    Once(marker=marker, entries=outputs, counters_key=progress, counters={Progress.TRACKED: 1})
                )
                events.append(event)
                messages.append(message)
        published = publish_once(self.client, items, self.settings.dedupe_ttl_s)
        self.consumer.ack(messages)
        now = time.time()
        for event, new in zip(events, published, strict=True):
            if new:
                metrics.TRACKER_EVENTS.labels(event.camera).inc()
                metrics.PIPELINE_SECONDS.observe(max(0.0, now - event.ts_capture_ms / 1000))
        first = 0
        for frame in frames:  # a frame's entries were new if its first face was
            if frame.messages and published[first]:
                for entry in frame.entries:
                    metrics.TRACKER_TRACKS.labels(entry.camera, entry.kind).inc()
            first += len(frame.messages)
        self.meter.add("events", sum(published))

    def publish_entries(self, entries: list[TrackEntry]) -> None:
        """Track ends that no face carries (the camera went quiet)."""
        if not entries:
            return
        pipe = self.client.pipeline()
        for entry in entries:
            self.tracks.add(pipe, entry)
            metrics.TRACKER_TRACKS.labels(entry.camera, entry.kind).inc()
        pipe.execute()
