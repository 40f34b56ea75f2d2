"""Face tracks within one camera: match each frame's faces to open tracks, smooth their labels.

Frames must be given in frame_seq order (`ordering.FrameOrder` makes sure of it). Matching is one
assignment problem per frame (scipy's Hungarian solver) on centre distance to each track's predicted
position, relative to face size; see docs/ARCHITECTURE.md, "Tracks", for why no tracker library.
"""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from emostream.wire import Box, EmotionEvent, TrackInfo

Kind = Literal["start", "change", "end"]
UNMATCHED = 1e6


@dataclass(frozen=True)
class TrackerConfig:
    max_missed_frames: int = 15
    """A track not seen for more frames than this ends (a few dropped detections keep it alive)."""
    max_distance: float = 0.75
    """Largest centre distance to a track's predicted position, in units of the face's size."""
    max_size_ratio: float = 1.8
    """A face more than this much larger or smaller than the track's last box is another face."""
    window: int = 15
    """Frames whose probabilities are averaged into the smoothed label."""
    margin: float = 0.1
    """Another label must lead the current smoothed label by this much to replace it (no flicker at ties)."""
    uncertain_below: float = 0.55
    """Smoothed top probability under which an event is marked uncertain (chosen on validation data)."""


@dataclass(frozen=True)
class TrackEntry:
    """One `emostream:tracks` entry."""

    kind: Kind
    track_id: str
    camera: str
    frame_seq: int
    ts_ms: int
    box: Box
    label: str
    score: float
    uncertain: bool
    previous_label: str = ""
    duration_ms: int = 0
    frames: int = 0
    time_in_ms: dict[str, int] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """Flat text fields, like events, readable with redis-cli."""
        return {
            "type": self.kind,
            "track_id": self.track_id,
            "camera": self.camera,
            "frame_seq": str(self.frame_seq),
            "ts_ms": str(self.ts_ms),
            "x": str(self.box.x),
            "y": str(self.box.y),
            "w": str(self.box.w),
            "h": str(self.box.h),
            "label": self.label,
            "score": f"{self.score:.4f}",
            "uncertain": "1" if self.uncertain else "0",
            "previous_label": self.previous_label,
            "duration_ms": str(self.duration_ms),
            "frames": str(self.frames),
            "time_in_ms": json.dumps(self.time_in_ms),
        }


def centre(box: Box) -> tuple[float, float]:
    return box.x + box.w / 2, box.y + box.h / 2


class Track:
    """One face followed across frames: position with a velocity, and a window of label probabilities."""

    def __init__(self, track_id: str, event: EmotionEvent, config: TrackerConfig) -> None:
        self.id = track_id
        self.config = config
        self.box = event.box
        self.velocity = (0.0, 0.0)  # pixels per frame
        self.first_seq = self.last_seq = event.frame_seq
        self.first_ts = self.last_ts = event.ts_capture_ms
        self.frames = 1
        self.recent: deque[dict[str, float]] = deque([event.scores], maxlen=config.window)
        self.time_in: Counter[str] = Counter()
        self.label, self.score = max(event.scores.items(), key=lambda item: item[1])

    def predicted_centre(self, seq: int) -> tuple[float, float]:
        x, y = centre(self.box)
        steps = seq - self.last_seq
        return x + self.velocity[0] * steps, y + self.velocity[1] * steps

    def cost(self, box: Box, seq: int) -> float:
        """Centre distance to the predicted position in face sizes; UNMATCHED outside the gates."""
        size = max(self.box.w, self.box.h, 1)
        ratio = max(box.w, box.h, 1) / size
        if not 1 / self.config.max_size_ratio <= ratio <= self.config.max_size_ratio:
            return UNMATCHED
        px, py = self.predicted_centre(seq)
        cx, cy = centre(box)
        distance = math.hypot(cx - px, cy - py) / ((size + max(box.w, box.h)) / 2)
        return distance if distance <= self.config.max_distance else UNMATCHED

    def smoothed(self) -> dict[str, float]:
        total: Counter[str] = Counter()
        for scores in self.recent:
            total.update(scores)
        return {label: value / len(self.recent) for label, value in total.items()}

    def update(self, event: EmotionEvent) -> str | None:
        """Follow the track to `event`'s face; the previous label when the smoothed label changed."""
        self.time_in[self.label] += max(0, event.ts_capture_ms - self.last_ts)
        steps = max(1, event.frame_seq - self.last_seq)
        (ox, oy), (nx, ny) = centre(self.box), centre(event.box)
        # Velocity is smoothed too: one jittery box should not fling the prediction away.
        self.velocity = (
            0.5 * self.velocity[0] + 0.5 * (nx - ox) / steps,
            0.5 * self.velocity[1] + 0.5 * (ny - oy) / steps,
        )
        self.box = event.box
        self.last_seq = event.frame_seq
        self.last_ts = event.ts_capture_ms
        self.frames += 1
        self.recent.append(event.scores)
        means = self.smoothed()
        best, best_score = max(means.items(), key=lambda item: item[1])
        previous = self.label
        if best != self.label and best_score - means.get(self.label, 0.0) > self.config.margin:
            self.label = best
        self.score = means.get(self.label, 0.0)
        return previous if self.label != previous else None

    @property
    def uncertain(self) -> bool:
        return self.score < self.config.uncertain_below

    def info(self) -> TrackInfo:
        return TrackInfo(track_id=self.id, label=self.label, score=self.score, uncertain=self.uncertain)

    def entry(self, kind: Kind, camera: str, previous_label: str = "") -> TrackEntry:
        ending = kind == "end"
        return TrackEntry(
            kind,
            self.id,
            camera,
            self.last_seq,
            self.last_ts,
            self.box,
            self.label,
            self.score,
            self.uncertain,
            previous_label,
            duration_ms=self.last_ts - self.first_ts,
            frames=self.frames,
            time_in_ms=dict(self.time_in) if ending or kind == "change" else {},
        )


class CameraTracker:
    """All open tracks of one camera; fed one frame at a time, in frame_seq order."""

    def __init__(self, camera: str, config: TrackerConfig, new_id: Callable[[], str]) -> None:
        self.camera = camera
        self.config = config
        self.new_id = new_id
        self.tracks: list[Track] = []

    def frame(self, seq: int, events: list[EmotionEvent]) -> tuple[list[EmotionEvent], list[TrackEntry]]:
        """Assign every face of frame `seq` to a track; the events with their track, and track entries."""
        entries = self.expire(seq)
        events = sorted(events, key=lambda event: event.face_index)
        costs = np.full((len(self.tracks), len(events)), UNMATCHED)
        for row, track in enumerate(self.tracks):
            for column, event in enumerate(events):
                costs[row, column] = track.cost(event.box, seq)
        assigned: dict[int, Track] = {}
        if costs.size:
            for row, column in zip(*linear_sum_assignment(costs), strict=True):
                if costs[row, column] < UNMATCHED:
                    assigned[int(column)] = self.tracks[int(row)]
        out = []
        for column, event in enumerate(events):
            found = assigned.get(column)
            if found is None:
                track = Track(self.new_id(), event, self.config)
                self.tracks.append(track)
                entries.append(track.entry("start", self.camera))
            else:
                track = found
                previous = track.update(event)
                if previous is not None:
                    entries.append(track.entry("change", self.camera, previous))
            out.append(replace(event, track=track.info()))
        return out, entries

    def expire(self, seq: int) -> list[TrackEntry]:
        """End the tracks not seen for more than `max_missed_frames` before frame `seq`."""
        ended = [t for t in self.tracks if seq - t.last_seq - 1 > self.config.max_missed_frames]
        self.tracks = [t for t in self.tracks if t not in ended]
        return [track.entry("end", self.camera) for track in ended]

    def end_all(self) -> list[TrackEntry]:
        ended, self.tracks = self.tracks, []
        return [track.entry("end", self.camera) for track in ended]

    def late(self, event: EmotionEvent) -> EmotionEvent:
        """A face whose frame was already tracked: label it with the nearest open track, change nothing."""
        candidates = [(track.cost(event.box, track.last_seq), track) for track in self.tracks]
        candidates = [(cost, track) for cost, track in candidates if cost < UNMATCHED]
        if not candidates:
            return event
        return replace(event, track=min(candidates, key=lambda item: item[0])[1].info())
