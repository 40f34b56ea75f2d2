"""Typed settings for every service: environment variables with a per-service prefix, then flags.

A bad value stops the service at start with one line naming the setting.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from emostream.connection import check_url, redact

S = TypeVar("S", bound=BaseSettings)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _everywhere(field: str) -> str:
    """A common setting has one environment name for every service: EMOSTREAM_<FIELD>."""
    return f"EMOSTREAM_{field.upper()}"


class CommonSettings(BaseSettings):
    """What every service reads: where Redis is, how to log, its consumer name, stream bounds."""

    # populate_by_name: flags pass fields by name; the environment uses the EMOSTREAM_ alias.
    model_config = SettingsConfigDict(extra="forbid", env_prefix="EMOSTREAM_", populate_by_name=True)

    redis_url: str = Field(DEFAULT_REDIS_URL, description="Redis URL", validation_alias=_everywhere("redis_url"))
    log_level: str = Field(
        "INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        description="logging level",
        validation_alias=_everywhere("log_level"),
    )
    consumer: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        validation_alias=_everywhere("consumer"),
        description="consumer name in the group; keep it stable across restarts so a restarted replica "
        "finishes what it had claimed",
    )
    stream_maxlen: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        validation_alias=_everywhere("stream_maxlen"),
        description="approximate length bound of the frame and face streams",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        validation_alias=_everywhere("metrics_port"),
        description="serve Prometheus metrics on this port at /metrics (0: off)",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_url(value)


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `cls`."""
    info = cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    prefix = cls.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin in (list, tuple)


POSITIONAL = "_positional"


class OneLineParser(argparse.ArgumentParser):
    """argparse with one line for a bad argument (`prog: problem (see --help)`) instead of its usage block."""

    def error(self, message: str) -> typing.NoReturn:
        # One line like every other bad value, not argparse's usage block.
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(
    cls: type[BaseSettings],
    prog: str,
    description: str | None = None,
    positional: str | None = None,
) -> argparse.ArgumentParser:
    """One flag per field; every flag is optional and wins over the environment.

    `positional` names a list field that bare arguments extend (`capture a.mp4 b.mp4`).
    """
    parser = OneLineParser(prog=prog, description=description or cls.__doc__)
    if positional:
        parser.add_argument(
            POSITIONAL,
            nargs="*",
            metavar=positional.upper(),
            default=[],
            help=f"same as repeating --{positional.replace('_', '-')}",
        )
    for name, info in cls.model_fields.items():
        help_text = f"{info.description or ''} (env {env_name(cls, name)})"
        if info.annotation is bool:
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        elif _is_list(info.annotation):
            parser.add_argument(
                _flag(name),
                dest=name,
                action="append",
                default=argparse.SUPPRESS,
                help=help_text + "; repeat for several",
            )
        else:
            parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS, help=help_text)
    return parser


def load(cls: type[S], argv: Sequence[str] | None, prog: str, positional: str | None = None, **overrides: Any) -> S:
    """Settings from the environment and `argv`; on a bad value print one line and exit 2."""
    parser = build_parser(cls, prog, positional=positional)
    parsed = vars(parser.parse_intermixed_args(argv) if positional else parser.parse_args(argv))
    bare = parsed.pop(POSITIONAL, [])
    if positional and bare:
        parsed[positional] = [*parsed.get(positional, []), *bare]
    if "@" in str(parsed.get("redis_url", "")) and redact(parsed["redis_url"]) != parsed["redis_url"]:
        # A flag is in the command line, which `ps` shows every user of the machine.
        _fail(prog, "--redis-url holds a password, which `ps` shows to everyone; set EMOSTREAM_REDIS_URL instead")
    try:
        return cls(**{**overrides, **parsed})
    except SettingsError as error:  # the environment holds a value that is not even parseable (bad JSON)
        found = re.search(r'field "(\w+)"', str(error))
        field = found.group(1) if found else "?"
        where = f"{_flag(field)} / {env_name(cls, field)}" if field in cls.model_fields else field
        _fail(prog, f'invalid setting {where}: not valid JSON (a list is written like ["a", "b"])')
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        by_alias = {info.validation_alias: name for name, info in cls.model_fields.items()}
        field = str(by_alias.get(field, field))  # an environment error names the alias
        where = f"{_flag(field)} / {env_name(cls, field)}" if field in cls.model_fields else field
        given = first.get("input")
        shown = redact(given) if field == "redis_url" and isinstance(given, str) else given
        message = str(first["msg"]).removeprefix("Value error, ")
        _fail(prog, f"invalid setting {where}: {message} (got {shown!r})")


def _fail(prog: str, message: str) -> typing.NoReturn:
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(2)
