"""Tracker settings (env prefix TRACKER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings
from emostream_tracker.tracking import TrackerConfig

DEFAULTS = TrackerConfig()


class TrackerSettings(CommonSettings):
    """Follow faces across frames per camera; publish tracked events and track start/change/end entries."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TRACKER_")

    reorder_ms: int = Field(
        300, ge=0, le=10_000, description="how long a frame waits for an earlier one still in flight at other replicas"
    )
    max_missed_frames: int = Field(
        DEFAULTS.max_missed_frames, ge=0, le=10_000, description="frames a face may go undetected before its track ends"
    )
    max_distance: float = Field(
        DEFAULTS.max_distance, gt=0, le=10, description="largest move between frames, in face sizes"
    )
    window: int = Field(DEFAULTS.window, ge=1, le=1000, description="frames averaged into the smoothed label")
    margin: float = Field(
        DEFAULTS.margin, ge=0, le=1, description="lead another label needs over the current smoothed label"
    )
    uncertain_below: float = Field(
        DEFAULTS.uncertain_below, ge=0, le=1, description="smoothed probability under which an event is uncertain"
    )
    idle_end_ms: int = Field(
        2000, ge=100, le=600_000, description="a camera with no face for this long has all its tracks ended"
    )
    stopped_end_ms: int = Field(
        30_000, ge=100, le=3_600_000, description="a camera with no detected frame for this long has its tracks ended"
    )
    read_count: int = Field(256, ge=1, le=10_000, description="entries read from Redis at once")
    block_ms: int = Field(100, ge=1, le=60_000, description="longest wait for new entries")
    claim_idle_ms: int = Field(30_000, ge=1000, description="entries idle this long at a dead replica are taken over")
    dedupe_ttl_s: int = Field(3600, ge=60, description="how long a tracked face is remembered against replays")
    events_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="approximate length bound of the event stream")
    tracks_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="approximate length bound of the track stream")

    def config(self) -> TrackerConfig:
        return TrackerConfig(
            max_missed_frames=self.max_missed_frames,
            max_distance=self.max_distance,
            window=self.window,
            margin=self.margin,
            uncertain_below=self.uncertain_below,
        )
