"""Every Redis key, stream and group name the services share, in one place."""

from __future__ import annotations

PREFIX = "emostream"
CAMERAS = f"{PREFIX}:cameras"
"""Set of camera ids that capture has published frames for; detectors follow it."""
FACES = f"{PREFIX}:faces"
EVENTS = f"{PREFIX}:events"
DEAD_LETTERS = f"{PREFIX}:deadletters"
DEAD_LETTER_COUNTS = f"{PREFIX}:deadletters:counts"
"""Hash of dead letters by reason kind (WireError.kind), never trimmed."""
DETECTOR_GROUP = "detector"
CLASSIFIER_GROUP = "classifier"


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
