"""What the viewer reads from Redis: cameras, one frame, and entries of a stream as they arrive.

Read-only: the viewer joins no consumer group, acknowledges nothing and writes nothing, so it
adds no work to the pipeline and any number of pages can watch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from emostream import names, wire

# Fields that stay text even when they look like numbers (a camera may be called "0").
TEXT_FIELDS = {"camera", "label", "smoothed_label", "previous_label", "track_id", "type", "model"}
JSON_FIELDS = {"scores", "time_in_ms"}
FRAME_SCAN = 300  # frames searched from the newest when a frame's position is not known


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def to_json(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A flat text entry as a JSON object with numbers, booleans and nested scores."""
    out: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key, value = _text(raw_key), _text(raw_value)
        if key in TEXT_FIELDS:
            out[key] = value
        elif key in JSON_FIELDS:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        elif key == "uncertain":
            out[key] = value == "1"
        else:
            for kind in (int, float):
                try:
                    out[key] = kind(value)
                    break
                except ValueError:
                    continue
            else:
                out[key] = value
    return out


async def last_id(client: aioredis.Redis, stream: str) -> str:
    """The id of the newest entry of `stream` ("0-0" when empty): reading on from it misses nothing new."""
    newest = await client.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


async def follow(
    client: aioredis.Redis, stream: str, after: str, camera: str | None, block_ms: int = 1000
) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
    """Entries of `stream` after id `after`, as JSON objects, only `camera`'s if given; None when idle."""
    while True:
        reply = await client.xread({stream: after}, count=500, block=block_ms)
        if not reply:
            yield None
            continue
        for _, entries in reply:
            for entry_id, fields in entries:
                after = _text(entry_id)
                if camera is not None and fields.get(b"camera", b"").decode(errors="replace") != camera:
                    continue
                yield after, to_json(fields)


@dataclass(frozen=True)
class CameraInfo:
    camera: str
    progress: dict[str, int]
    last_frame_ms: int


async def cameras(client: aioredis.Redis) -> list[CameraInfo]:
    out = []
    for raw in sorted(await client.smembers(names.CAMERAS)):
        camera = _text(raw)
        progress = {}
        for key, value in (await client.hgetall(names.progress(camera))).items():
            try:
                progress[_text(key)] = int(value)
            except ValueError:
                continue
        newest = await client.xrevrange(names.frames(camera), count=1)
        last_ms = int(_text(newest[0][0]).split("-")[0]) if newest else 0
        out.append(CameraInfo(camera, progress, last_ms))
    return out


def _decode(fields: dict[bytes, bytes]) -> wire.Frame | None:
    try:
        return wire.decode_frame(fields)
    except wire.WireError:
        return None


async def frame(client: aioredis.Redis, camera: str, seq: int | None, ts_ms: int | None) -> wire.Frame | None:
    """The newest frame of `camera`, or the one numbered `seq` while it is still in the bounded stream.

    Capture adds a frame right after taking it, so its entry id is near its capture time: a search
    from `ts_ms` finds it in a few entries instead of scanning the stream.
    """
    stream = names.frames(camera)
    if seq is None:
        newest = await client.xrevrange(stream, count=1)
        return _decode(newest[0][1]) if newest else None
    if ts_ms is not None:
        for _, fields in await client.xrange(stream, min=str(max(0, ts_ms - 1000)), count=64):
            found = _decode(fields)
            if found is not None and found.seq == seq:
                return found
    for _, fields in await client.xrevrange(stream, count=FRAME_SCAN):
        found = _decode(fields)
        if found is not None and found.seq == seq:
            return found
    return None
