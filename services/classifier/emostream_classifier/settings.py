"""Classifier settings (env prefix CLASSIFIER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings


class ClassifierSettings(CommonSettings):
    """Classify face crops in micro-batches through TensorFlow Serving and publish emotion events."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="CLASSIFIER_")

    serving_target: str = Field(
        "127.0.0.1:8500", pattern=r"^[^:\s]+:\d{1,5}$", description="TF Serving gRPC address, host:port"
    )
    model_name: str = Field("emotion", min_length=1, description="model name in TF Serving")
    model_base: Path = Field(
        Path("models/emotion"), description="model base path (read-only), for <version>/assets/labels.txt"
    )
    version_label: str = Field(
        "", description="version label to ask TF Serving for (its model config); empty: the newest version"
    )
    shadow_label: str = Field("canary", min_length=1, description="version label of the candidate to shadow")
    shadow_share: float = Field(
        0.25, ge=0, le=1, description="share of live batches also sent to the candidate, off the served path"
    )
    shadow_target: str = Field(
        "", pattern=r"^([^:\s]+:\d{1,5})?$", description="serving address of the candidate (empty: serving_target)"
    )
    shadow_queue: int = Field(4, ge=1, le=1000, description="batches waiting for the candidate; more are dropped")
    batch_size: int = Field(32, ge=1, le=1024, description="most faces per Predict call")
    batching_config: Path | None = Field(
        None,
        description="TF Serving's batching parameters file: a batch size above its max_batch_size is refused at start",
    )
    max_wait_ms: int = Field(
        0,
        ge=0,
        le=10_000,
        description="longest wait to fill a batch once it has a face (0: send what is there; faces that arrive "
        "during a Predict call make the next batch)",
    )
    reuse_ms: int = Field(
        500,
        ge=0,
        le=10_000,
        description="a face whose crop has not changed reuses its scores from a classification at most this old "
        "(capture time), so a change of expression shows within it (0: classify every face)",
    )
    reuse_max_difference: float = Field(
        3.0, ge=0, le=255, description="largest mean grey-level difference of a crop that counts as unchanged"
    )
    block_ms: int = Field(500, ge=1, le=60_000, description="longest wait for the first face of a batch")
    request_timeout_s: float = Field(10.0, gt=0, le=300, description="deadline of one Predict call")
    claim_idle_ms: int = Field(30_000, ge=1000, description="faces idle this long at a dead replica are taken over")
    dedupe_ttl_s: int = Field(3600, ge=60, description="how long a classified face is remembered against replays")
    events_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="approximate length bound of the event stream")
