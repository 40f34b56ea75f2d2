"""Put one camera's faces back in frame order, whatever replica order they were classified in.

Several detector and classifier replicas finish frames out of order. Every face says how many
faces its frame has (`faces_in_frame`), so a frame is complete when all of them are here. Frames
are released in frame_seq order: the next one at once when it follows the last released frame
(or is a source's first frame, seq 0), otherwise after waiting `reorder_ms` for an earlier one
that may still be in flight (frames without faces never arrive, so a gap alone cannot be told
from a slow replica).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Pending(Generic[T]):
    expected: int
    since_ms: float
    ts_capture_ms: int
    faces: dict[int, T] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.faces) >= self.expected


@dataclass(frozen=True)
class Released(Generic[T]):
    seq: int
    ts_capture_ms: int
    items: list[T]
    complete: bool


class FrameOrder(Generic[T]):
    """The frames of one camera waiting for release, keyed by frame_seq."""

    def __init__(self, reorder_ms: float) -> None:
        self.reorder_ms = reorder_ms
        self.waiting: dict[int, _Pending[T]] = {}
        self.last_released: int | None = None
        self.last_ts_ms: int = 0

    def is_late(self, seq: int) -> bool:
        return self.last_released is not None and seq <= self.last_released

    def restarted(self, seq: int, ts_capture_ms: int) -> bool:
        """A source that started again from seq 0: an old seq, but captured after the last released frame."""
        return self.is_late(seq) and ts_capture_ms > self.last_ts_ms

    def reset(self) -> None:
        self.last_released = None
        self.last_ts_ms = 0

    def add(self, seq: int, ts_capture_ms: int, face_index: int, faces_in_frame: int, item: T, now_ms: float) -> None:
        pending = self.waiting.setdefault(seq, _Pending(max(1, faces_in_frame), now_ms, ts_capture_ms))
        pending.faces[face_index] = item  # a replayed face replaces itself, never counts twice

    def release(self, now_ms: float) -> list[Released[T]]:
        """Frames ready to track, oldest first."""
        out: list[Released[T]] = []
        while self.waiting:
            seq = min(self.waiting)
            pending = self.waiting[seq]
            follows = seq == (0 if self.last_released is None else self.last_released + 1)  # nothing precedes 0
            waited = now_ms - pending.since_ms >= self.reorder_ms
            if not ((pending.complete and follows) or waited):
                break
            del self.waiting[seq]
            self.last_released = seq
            self.last_ts_ms = pending.ts_capture_ms
            faces = [pending.faces[i] for i in sorted(pending.faces)]
            out.append(Released(seq, pending.ts_capture_ms, faces, pending.complete))
        return out

    def __len__(self) -> int:
        return sum(len(pending.faces) for pending in self.waiting.values())
