"""Capture settings (env prefix CAPTURE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings


class CaptureSettings(CommonSettings):
    """Where frames come from and how they are encoded and paced (env CAPTURE_*, flags win)."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="CAPTURE_")

    media_dir: Path | None = Field(
        None,
        description="also play this folder: each video file (camera = its name), each sub-folder of images, and "
        "its own images; missing or empty adds nothing",
    )
    sources: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="sources as [camera_id=]spec: webcam index (0, webcam:0), video file, rtsp/http(s) URL, "
        "or folder/glob of images; env as a JSON list",
    )
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of published frames")
    max_width: int = Field(
        1280,
        ge=0,
        le=16384,
        description="downscale wider frames to this width, keeping the aspect ratio; 0 keeps every frame's size",
    )
    realtime: bool = Field(
        True, description="pace files and image folders at their frame rate; off: as fast as the detectors consume"
    )
    max_backlog: int = Field(
        32,
        ge=1,
        le=1_000_000,
        description="without realtime, hold a file source while this many of its frames wait for the detectors",
    )
    shed_backlog: int = Field(
        100,
        ge=0,
        le=1_000_000,
        description="paced and live sources: while this many of a camera's frames wait for the detectors, drop "
        "new ones (counted as frames_dropped) instead of queueing them; 0: never (the stream bound then trims "
        "the oldest unread frames, uncounted); keep it below EMOSTREAM_STREAM_MAXLEN",
    )
    loop: bool = Field(False, description="restart files and image folders when they end")
    images_fps: float = Field(10.0, gt=0, le=1000, description="frame rate of image folder sources")
    reconnect_max_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="longest wait between reconnects of a live source (backoff starts at 0.5 s and doubles)",
    )
    network_timeout_s: float = Field(
        10.0, gt=0, le=600, description="URL sources: give up opening or reading after this long and reconnect"
    )
    heartbeat_s: float = Field(10.0, gt=0, le=3600, description="how often to log rates and refresh the heartbeat")
    check: bool = Field(
        False,
        description="only check the sources (a webcam must open): print their camera ids as a JSON list and exit",
    )
    start_gate: str = Field(
        "",
        description="wait until this Redis key exists before the first frame (emostream up sets it once every "
        "replica is ready, so capture loads alongside them); empty: start at once",
    )
    keep_running: bool = Field(
        False,
        description="run as a service: skip files and folders that Redis marks done (a restart does not replay "
        "them) and stay up, healthy, once every finite source has ended",
    )

    @field_validator("sources")
    @classmethod
    def _something_to_capture(cls, sources: list[str], info: ValidationInfo) -> list[str]:
        if not sources and info.data.get("media_dir") is None:
            raise ValueError("no source given (and no media folder)")
        return sources
