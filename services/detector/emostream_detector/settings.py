"""Detector settings (env prefix DETECTOR_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings
from emostream_detector.model_file import default_dir

DetectorRange = Literal["near", "far", "auto"]


class DetectorSettings(CommonSettings):
    """Detect faces in every camera's frame stream and publish 48x48 grey crops."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="DETECTOR_")

    model_dir: Path = Field(
        default_factory=default_dir,
        description="folder of MediaPipe's face detector models; fetched and checked on first use when missing",
    )
    range: DetectorRange = Field(
        "auto",
        description="near: faces of a fifth of the frame or more (a webcam), whole frame only; "
        "far: faces down to --min-face-px (a room), tiles and known faces; auto: both",
    )
    min_face_px: int = Field(48, ge=16, le=4096, description="smallest face side (pixels) that far and auto look for")
    refresh_frames: int = Field(
        300,
        ge=0,
        le=100_000,
        description="every grid tile is searched once in this many frames, so a face that appeared without "
        "moving is still found (far, auto; 0: never)",
    )
    first_search_frames: int = Field(
        8,
        ge=1,
        le=1000,
        description="a camera's first frame searches the whole frame and a share of every tile, the rest over "
        "this many frames in all, so cameras starting together do not queue (far, auto; 1: all at once)",
    )
    whole_frame_model: Literal["short", "full"] = Field(
        "short", description="auto's whole-frame pass: the short-range model, or the full-range one"
    )
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="lowest detector score kept")
    margin: float = Field(0.25, ge=0.0, le=1.0, description="square crop side = (1 + margin) * longer box side")
    frames_per_read: int = Field(4, ge=1, le=256, description="frames read from Redis at once")
    block_ms: int = Field(500, ge=1, le=60_000, description="longest wait for new frames")
    claim_idle_ms: int = Field(30_000, ge=1000, description="frames idle this long at a dead replica are taken over")
    dedupe_ttl_s: int = Field(3600, ge=60, description="how long a handled frame is remembered against replays")
