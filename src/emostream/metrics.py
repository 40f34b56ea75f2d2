"""Prometheus metrics of every service, served on `/metrics` when a metrics port is configured.

All names follow `emostream_<what>_<unit>`; the README lists them. Each process registers the
whole set, but only the service that counts a metric ever adds a sample to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import redis
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Per-stage latencies span a millisecond (tracking) to seconds (a queue behind a slow model).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CAPTURE_FRAMES = Counter("emostream_capture_frames_total", "Frames published, by camera", ["camera"])
CAPTURE_SOURCE_ERRORS = Counter(
    "emostream_capture_source_errors_total", "Sources that failed to open or dropped, by camera", ["camera"]
)
DETECTOR_FRAMES = Counter("emostream_detector_frames_total", "Frames run through face detection, by camera", ["camera"])
DETECTOR_FACES = Counter("emostream_detector_faces_total", "Faces found, by camera", ["camera"])
DETECTOR_SECONDS = Histogram(
    "emostream_detector_frame_seconds", "Time to decode a frame and find its faces", buckets=LATENCY_BUCKETS
)
CLASSIFIER_EVENTS = Counter("emostream_classifier_faces_total", "Faces classified and published, by camera", ["camera"])
CLASSIFIER_BATCH_FACES = Histogram(
    "emostream_classifier_batch_faces", "Faces per Predict call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
CLASSIFIER_REUSED_FACES = Counter(
    "emostream_classifier_reused_faces_total", "Faces scored by a recent classification of the same unchanged face"
)
CLASSIFIER_PREDICT_SECONDS = Histogram(
    "emostream_classifier_predict_seconds",
    "Duration of one Predict call, as the classifier sees it",
    buckets=LATENCY_BUCKETS,
)
MODEL_REQUESTS = Counter(
    "emostream_modelserver_requests_total", "Requests answered, by method and gRPC status code", ["method", "code"]
)
MODEL_PREDICT_SECONDS = Histogram(
    "emostream_modelserver_predict_seconds", "Time to run one Predict request", buckets=LATENCY_BUCKETS
)
MODEL_FACES = Counter("emostream_modelserver_faces_total", "Images predicted, by model version", ["version"])
MODEL_VERSION = Gauge("emostream_modelserver_model_version_info", "Newest version served, by model name", ["model"])
TRACKER_EVENTS = Counter("emostream_tracker_events_total", "Tracked events published, by camera", ["camera"])
TRACKER_TRACKS = Counter(
    "emostream_tracker_track_entries_total",
    "Track entries published, by camera and kind (start, change, end)",
    ["camera", "kind"],
)
TRACKER_LATE = Counter(
    "emostream_tracker_late_faces_total", "Faces that arrived after their frame was tracked, by camera", ["camera"]
)
TRACKER_ACTIVE = Gauge("emostream_tracker_active_tracks", "Tracks open now, by camera", ["camera"])
PIPELINE_SECONDS = Histogram(
    "emostream_pipeline_latency_seconds", "Capture to tracked event, per face", buckets=LATENCY_BUCKETS
)
DEAD_LETTERS = Counter(
    "emostream_dead_letters_total", "Entries set aside, by consumer group and reason", ["group", "reason"]
)
VIEWER_CLIENTS = Gauge("emostream_viewer_subscribers", "Open Server-Sent Event subscriptions, by stream", ["stream"])
VIEWER_SENT = Counter("emostream_viewer_sent_events_total", "Entries sent to subscribers, by stream", ["stream"])
VIEWER_FRAMES = Counter("emostream_viewer_frames_total", "Frames sent to pages, by camera", ["camera"])


def reason_kind(reason: str) -> str:
    """A dead letter's reason as a label of few values (the full text is in the dead-letter stream)."""
    if reason.startswith("model rejected"):
        return "model_rejected"
    if "not a decodable JPEG" in reason:
        return "bad_image"
    return "undecodable"


class StreamBacklog(Collector):
    """At scrape time: each group's lag (entries not yet delivered) and pending (delivered, unacknowledged)."""

    def __init__(self, client: redis.Redis, streams: Callable[[], Iterable[str]], group: str) -> None:
        self.client = client
        self.streams = streams
        self.group = group

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "emostream_stream_backlog_entries", "Entries not yet read by a consumer group", labels=["stream", "group"]
        )
        pending = GaugeMetricFamily(
            "emostream_stream_pending_entries", "Entries read but not acknowledged", labels=["stream", "group"]
        )
        try:
            for stream in self.streams():
                for info in self.client.xinfo_groups(stream):
                    name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
                    if name != self.group:
                        continue
                    lag.add_metric([stream, name], float(info.get("lag") or 0))
                    pending.add_metric([stream, name], float(info.get("pending") or 0))
        except redis.RedisError as error:  # a scrape must not fail because Redis blinked
            log.debug("backlog not collected: %s", error)
        yield lag
        yield pending


def serve(port: int, backlog: StreamBacklog | None = None, host: str = "0.0.0.0") -> bool:
    """Serve /metrics on `port` (0: do nothing). True when serving."""
    if not port:
        return False
    if backlog is not None:
        REGISTRY.register(backlog)
    start_http_server(port, addr=host)
    log.info("Prometheus metrics on :%d/metrics", port)
    return True
