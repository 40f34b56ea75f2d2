"""Typed settings for every service: environment variables with a per-service prefix, then flags.

A bad value stops the service at start with one line naming the setting.
"""

from __future__ import annotations

import argparse
import socket
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class CommonSettings(BaseSettings):
    """What every service reads: where Redis is, how to log, its consumer name."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="EMOSTREAM_")

    redis_url: str = Field(
        DEFAULT_REDIS_URL, description="Redis URL (env EMOSTREAM_REDIS_URL for every service)",
        validation_alias=AliasChoices("redis_url", "EMOSTREAM_REDIS_URL"),
    )
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="logging level")
    consumer: str = Field(
        default_factory=socket.gethostname, min_length=1, description="consumer name in the group; keep it "
        "stable across restarts so a restarted replica finishes what it had claimed",
    )
    stream_maxlen: int = Field(1000, ge=10, le=1_000_000, description="approximate length bound of each stream")


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `cls`."""
    info = cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    prefix = cls.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin in (list, tuple)


def build_parser(cls: type[BaseSettings], prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """One flag per field; every flag is optional and wins over the environment."""
    parser = argparse.ArgumentParser(prog=prog, description=description or cls.__doc__)
    for name, info in cls.model_fields.items():
        help_text = f"{info.description or ''} (env {env_name(cls, name)})"
        if info.annotation is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif _is_list(info.annotation):
            parser.add_argument(_flag(name), dest=name, action="append", default=argparse.SUPPRESS,
                                help=help_text + "; repeat for several")
        else:
            parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS, help=help_text)
    return parser


def load(cls: type[S], argv: Sequence[str] | None, prog: str, **overrides: Any) -> S:
    """Settings from the environment and `argv`; on a bad value print one line and exit 2."""
    parsed = vars(build_parser(cls, prog).parse_args(argv))
    try:
        return cls(**{**overrides, **parsed})
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        where = f"{_flag(field)} / {env_name(cls, field)}" if field in cls.model_fields else field
        print(f"{prog}: invalid setting {where}: {first['msg']} (got {first.get('input')!r})", file=sys.stderr)
        raise SystemExit(2) from None
