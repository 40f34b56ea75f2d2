"""Every Redis key, stream, group and counter name the services share, in one place."""

from __future__ import annotations

PREFIX = "emostream"
CAMERAS = f"{PREFIX}:cameras"
"""Set of camera ids that capture has published frames for; detectors follow it."""
FACES = f"{PREFIX}:faces"
SCORED = f"{PREFIX}:scored"
"""Classifier output, one entry per face in whatever order replicas finish; the tracker's input."""
EVENTS = f"{PREFIX}:events"
"""Tracked events, one per face, carrying track_id and the smoothed label: what users subscribe to."""
TRACKS = f"{PREFIX}:tracks"
"""One entry when a track starts, when its smoothed emotion changes, and when it ends."""
DEAD_LETTERS = f"{PREFIX}:deadletters"
DEAD_LETTER_COUNTS = f"{PREFIX}:deadletters:counts"
"""Hash of dead letters by reason kind (WireError.kind), never trimmed."""
DETECTOR_GROUP = "detector"
CLASSIFIER_GROUP = "classifier"
TRACKER_GROUP = "tracker"
EVENTS_GROUP = "events"
"""Default group of `emostream events --consumer`."""
SHADOW_RUNS = f"{PREFIX}:shadow:runs"
"""Sorted set of shadow comparison keys, scored by their last update (ms)."""


class Progress:
    """Fields of the per-camera progress hash (`progress(camera)`), counted as each stage finishes.

    `emostream up --once` ends when a finite source is done and every frame, face and event
    is accounted for: detected + failed frames reach frames_total, events + failed faces reach
    faces_detected, tracked reaches events.
    """

    DONE = "done"
    FRAMES_TOTAL = "frames_total"
    FRAMES_PUBLISHED = "frames_published"
    FRAMES_DROPPED = "frames_dropped"
    FRAMES_DETECTED = "frames_detected"
    FRAMES_FAILED = "frames_failed"
    FACES_DETECTED = "faces_detected"
    FACES_FAILED = "faces_failed"
    EVENTS = "events"
    TRACKED = "tracked"


def frames(camera: str) -> str:
    """The frame stream of one camera."""
    return f"{PREFIX}:frames:{camera}"


def progress(camera: str) -> str:
    """Hash of per-camera counters: frames published, frames detected, faces, events, done."""
    return f"{PREFIX}:progress:{camera}"


def seen(kind: str, identity: str) -> str:
    """Marker that a message was already handled, so a replay does not publish twice."""
    return f"{PREFIX}:seen:{kind}:{identity}"


def heartbeat(service: str, consumer: str) -> str:
    return f"{PREFIX}:heartbeat:{service}:{consumer}"


def start_gate(owner: str) -> str:
    """Key whose existence lets a waiting capture start (see `emostream capture --start-gate`)."""
    return f"{PREFIX}:start_gate:{owner}"


def track_counter(camera: str) -> str:
    """Counter that numbers a camera's tracks, so ids stay unique across tracker restarts."""
    return f"{PREFIX}:track_seq:{camera}"


def serving_key(label: str) -> str:
    """Served-path counters of one version label ('' asks for the newest version: `latest`)."""
    return f"{PREFIX}:serving:{label or 'latest'}"


def shadow_key(served: int, candidate: int | str) -> str:
    """Counters comparing a candidate version with the served one on the same faces."""
    return f"{PREFIX}:shadow:{served}:{candidate}"
