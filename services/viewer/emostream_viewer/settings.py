"""Viewer settings (env prefix VIEWER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream.settings import CommonSettings


class ViewerSettings(CommonSettings):
    """Serve a live web page of every camera, and the event and track streams as Server-Sent Events."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="VIEWER_")

    host: str = Field("127.0.0.1", min_length=1, description="address to bind (127.0.0.1: this machine only)")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port")
