"""`emostream events`: strict JSON whatever the stream holds, and --consumer read through a consumer group."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import redis

from emostream import names, wire
from emostream.events_command import EventsSettings, print_events
from emostream.settings import load
from emostream.wire import Box, EmotionEvent


def event(seq: int, camera: str = "door") -> dict[str, str]:
    return wire.encode_event(
        EmotionEvent(
            camera=camera,
            frame_seq=seq,
            face_index=0,
            ts_capture_ms=1_000 + seq,
            ts_event_ms=1_100 + seq,
            box=Box(1, 2, 30, 30),
            label="happy",
            score=0.75,
            scores={"happy": 0.75, "neutral": 0.25},
            model="emotion",
            model_version=2,
            detector_score=0.9,
        )
    )


def strict(text: str) -> list[dict[str, Any]]:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def run(client: redis.Redis, redis_url: str, *argv: str) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    settings = load(EventsSettings, ["--redis-url", redis_url, "--format", "json", *argv], prog="emostream events")
    printed = print_events(client, settings, out)
    return printed, strict(out.getvalue())


def test_json_output_is_strict_even_when_the_stream_holds_nan(
    redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_client.xadd(names.EVENTS, {**event(0), "score": "nan"})
    redis_client.xadd(names.EVENTS, {**event(1), "scores": '{"happy": NaN}'})
    redis_client.xadd(names.EVENTS, {**event(2), "camera": "evil\nline"})
    redis_client.xadd(names.EVENTS, event(3))
    printed, lines = run(redis_client, redis_url, "--from-start", "--limit", "1")
    assert printed == 1 and [line["frame_seq"] for line in lines] == [3]
    assert capsys.readouterr().err.count("skipping malformed event") == 3


def test_consumer_reads_through_its_group_and_resumes_where_it_stopped(
    redis_url: str, redis_client: redis.Redis
) -> None:
    for seq in range(5):
        redis_client.xadd(names.EVENTS, event(seq))
    args = ("--from-start", "--consumer", "me", "--group", "viewers")
    printed, lines = run(redis_client, redis_url, *args, "--limit", "2")
    assert printed == 2
    assert [line["frame_seq"] for line in lines] == [0, 1]
    # The group remembers: the next run goes on from the third event, not from the start or from now.
    _, lines = run(redis_client, redis_url, *args, "--limit", "3")
    assert [line["frame_seq"] for line in lines] == [2, 3, 4]
    assert redis_client.xpending(names.EVENTS, "viewers")["pending"] == 0
    # An event read but not acknowledged (the reader died before printing it) comes first next time.
    redis_client.xadd(names.EVENTS, event(5))
    redis_client.xreadgroup("viewers", "me", {names.EVENTS: ">"}, count=1)
    redis_client.xadd(names.EVENTS, event(6))
    _, lines = run(redis_client, redis_url, *args, "--limit", "2")
    assert [line["frame_seq"] for line in lines] == [5, 6]


def test_without_consumer_no_group_is_created(redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.xadd(names.EVENTS, event(0))
    assert run(redis_client, redis_url, "--from-start", "--limit", "1")[0] == 1
    assert redis_client.xinfo_groups(names.EVENTS) == []
