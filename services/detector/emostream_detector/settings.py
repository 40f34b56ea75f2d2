"""Detector settings (env prefix DETECTOR_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings
from emostream_detector.model_file import default_path


class DetectorSettings(CommonSettings):
    """Detect faces in every camera's frame stream and publish 48x48 grey crops."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="DETECTOR_")

    model_path: Path = Field(
        default_factory=default_path,
        description="face_detection_short_range.tflite; fetched and checked on first use when missing",
    )
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="lowest detector score kept")
    margin: float = Field(0.25, ge=0.0, le=1.0, description="square crop side = (1 + margin) * longer box side")
    frames_per_read: int = Field(4, ge=1, le=256, description="frames read from Redis at once")
    block_ms: int = Field(500, ge=1, le=60_000, description="longest wait for new frames")
    claim_idle_ms: int = Field(30_000, ge=1000, description="frames idle this long at a dead replica are taken over")
    dedupe_ttl_s: int = Field(3600, ge=60, description="how long a handled frame is remembered against replays")
