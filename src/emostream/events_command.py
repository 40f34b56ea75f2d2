"""`emostream events`: follow the emotion event stream, as JSON lines or a table."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Literal, TextIO

import redis
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emostream import names
from emostream.connection import RedisUnavailable, connect
from emostream.settings import CommonSettings, load
from emostream.wire import EmotionEvent, WireError, decode_event

TABLE_HEADER = (
    f"{'camera':<12} {'frame':>6} {'face':>4} {'label':<8} {'score':>5}  {'box (x,y,w,h)':<20} {'latency':>8}  "
    f"{'model':<12} track"
)


class EventsSettings(CommonSettings):
    """Print emotion events as they arrive."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="EVENTS_")

    consumer: str = Field(
        "",
        validation_alias="EVENTS_CONSUMER",
        description="read as this consumer of --group: each event is printed once across restarts and "
        "replicas, acknowledged after it is printed (default: none, follow the stream from now)",
    )
    group: str = Field(
        names.EVENTS_GROUP, min_length=1, max_length=64, description="consumer group used with --consumer"
    )
    camera: list[str] = Field(default_factory=list, description="only these cameras (default: all)")
    format: Literal["table", "json"] = Field("table", description="table for people, json for programs")
    from_start: bool = Field(False, description="replay what the bounded stream still holds, then follow")
    limit: int = Field(0, ge=0, description="stop after this many events (0: follow forever)")


def last_event_id(client: redis.Redis) -> str:
    """The id of the newest event now, so that following from it misses nothing published later."""
    info = client.xinfo_stream(names.EVENTS) if client.exists(names.EVENTS) else None
    return info["last-generated-id"].decode() if info else "0-0"


def follow(client: redis.Redis, start: str = "$", block_ms: int = 1000) -> Iterator[EmotionEvent | None]:
    """Events after `start`; yields None when a wait times out, so callers can check for shutdown."""
    last = last_event_id(client) if start == "$" else start  # resolved once: nothing between reads is skipped
    while True:
        reply = client.xread({names.EVENTS: last}, count=500, block=block_ms)
        if not reply:
            yield None
            continue
        for entry_id, fields in reply[0][1]:
            last = entry_id.decode()
            try:
                yield decode_event(fields)
            except WireError as error:
                print(f"skipping malformed event {last}: {error}", file=sys.stderr)


def follow_group(
    client: redis.Redis, group: str, consumer: str, from_start: bool, block_ms: int = 1000
) -> Iterator[tuple[bytes, EmotionEvent | None] | None]:
    """(entry id, event) for `consumer` of `group`: its unacknowledged events first, then new ones.

    The caller acknowledges each id once handled. Malformed entries come as (id, None). None when
    a wait times out.
    """
    try:
        client.xgroup_create(names.EVENTS, group, id="0" if from_start else "$", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
    cursor = "0"  # own pending entries first: printed before a crash or stop, but not acknowledged
    while True:
        reply = client.xreadgroup(
            group, consumer, {names.EVENTS: cursor}, count=500, block=None if cursor != ">" else block_ms
        )
        entries = reply[0][1] if reply else []
        if not entries:
            if cursor == ">":
                yield None
            cursor = ">"
            continue
        for entry_id, fields in entries:
            if cursor != ">":
                cursor = entry_id.decode()
            try:
                yield entry_id, decode_event(fields) if fields else None
            except WireError as error:
                print(f"skipping malformed event {entry_id.decode()}: {error}", file=sys.stderr)
                yield entry_id, None


def format_event(event: EmotionEvent, style: str) -> str:
    if style == "json":  # strict JSON (no NaN); decode_event already refused non-finite numbers
        return json.dumps(asdict(event), separators=(",", ":"), allow_nan=False)
    box = f"{event.box.x},{event.box.y},{event.box.w},{event.box.h}"
    latency = f"{event.ts_event_ms - event.ts_capture_ms}ms"
    return (
        f"{event.camera:<12} {event.frame_seq:>6} {event.face_index:>4} {event.label:<8} {event.score:>5.2f}  "
        f"{box:<20} {latency:>8}  {event.model + '/' + str(event.model_version):<12} "
        + (f"{event.track.track_id} {event.track.label}{'?' if event.track.uncertain else ''}" if event.track else "-")
    )


def print_events(client: redis.Redis, settings: EventsSettings, out: TextIO = sys.stdout) -> int:
    if settings.format == "table":
        print(TABLE_HEADER, file=out, flush=True)
    if settings.consumer:
        return _print_group(client, settings, out)
    printed = 0
    for event in follow(client, "0-0" if settings.from_start else "$"):
        if event is None or (settings.camera and event.camera not in settings.camera):
            continue
        print(format_event(event, settings.format), file=out, flush=True)
        printed += 1
        if settings.limit and printed >= settings.limit:
            break
    return printed


def _print_group(client: redis.Redis, settings: EventsSettings, out: TextIO) -> int:
    printed = 0
    for item in follow_group(client, settings.group, settings.consumer, settings.from_start):
        if item is None:
            continue
        entry_id, event = item
        if event is not None and (not settings.camera or event.camera in settings.camera):
            print(format_event(event, settings.format), file=out, flush=True)
            printed += 1
        client.xack(names.EVENTS, settings.group, entry_id)  # after printing: a crash prints it again, never skips it
        if settings.limit and printed >= settings.limit:
            break
    return printed


def main(argv: list[str]) -> int:
    settings = load(EventsSettings, argv, prog="emostream events")
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        print(f"emostream events: {error}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        print_events(client, settings)
    return 0
