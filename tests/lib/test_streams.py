"""publish_once and Consumer against a real Redis: once-only publishing, recovery, claiming, dead letters."""

from __future__ import annotations

import time

import pytest
import redis

from emostream import names
from emostream.streams import Consumer, Entry, Message, Once, Publisher, ensure_group, publish_once
from emostream.wire import WireError

STREAM = "emostream:test:in"
OUT = "emostream:test:out"
OTHER = "emostream:test:other"
COUNTERS = "emostream:test:counters"
GROUP = "testers"


def decode(fields: dict[bytes, bytes]) -> str:
    """A minimal decoder: the entry's 'v' field as text."""
    if b"v" not in fields:
        raise WireError("entry has no 'v' field")
    return fields[b"v"].decode()


def consumer(client: redis.Redis, name: str, **options: float) -> Consumer[str]:
    return Consumer(client, GROUP, name, decode, lambda: [STREAM], **options)  # type: ignore[arg-type]


def add(client: redis.Redis, *values: str) -> list[bytes]:
    return [client.xadd(STREAM, {"v": value}) for value in values]


def pending_ids(client: redis.Redis, owner: str | None = None) -> list[bytes]:
    rows = client.xpending_range(STREAM, GROUP, min="-", max="+", count=1000)
    return [row["message_id"] for row in rows if owner is None or row["consumer"] == owner.encode()]


def counters(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(COUNTERS).items()}


# publish_once


def test_publish_once_publishes_once_per_marker(redis_client: redis.Redis) -> None:
    item = Once(
        marker="emostream:test:seen:a",
        entries=[Entry(OUT, {"n": "1"}, 1000)],
        counters_key=COUNTERS,
        counters={"events": 1, "other": 2},
    )
    assert publish_once(redis_client, [item], ttl_seconds=60) == [True]
    assert publish_once(redis_client, [item], ttl_seconds=60) == [False]
    assert redis_client.xlen(OUT) == 1
    assert counters(redis_client) == {"events": 1, "other": 2}
    assert 0 < redis_client.ttl("emostream:test:seen:a") <= 60


def test_publish_once_writes_all_entries_of_an_item_or_none(redis_client: redis.Redis) -> None:
    item = Once(
        marker="emostream:test:seen:b",
        entries=[Entry(OUT, {"i": "0"}, 1000), Entry(OUT, {"i": "1"}, 1000), Entry(OTHER, {b"raw": b"\x00\xff"}, 1000)],
        counters_key=COUNTERS,
        counters={"faces": 3},
    )
    assert publish_once(redis_client, [item], ttl_seconds=60) == [True]
    assert [fields for _, fields in redis_client.xrange(OUT)] == [{b"i": b"0"}, {b"i": b"1"}]
    assert [fields for _, fields in redis_client.xrange(OTHER)] == [{b"raw": b"\x00\xff"}]
    assert counters(redis_client) == {"faces": 3}
    # A replay of the whole item is a no-op, entries and counters alike.
    assert publish_once(redis_client, [item], ttl_seconds=60) == [False]
    assert (redis_client.xlen(OUT), redis_client.xlen(OTHER), counters(redis_client)) == (2, 1, {"faces": 3})


def test_publish_once_that_fails_writes_nothing_and_can_be_retried(redis_client: redis.Redis) -> None:
    """Redis does not roll a script back: a bad key must be found before anything (the marker too) is written."""
    redis_client.set(OTHER, "not a stream")
    item = Once(
        marker="emostream:test:seen:c",
        entries=[Entry(OUT, {"i": "0"}, 1000), Entry(OTHER, {"i": "1"}, 1000)],
        counters_key=COUNTERS,
        counters={"faces": 2},
    )
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        publish_once(redis_client, [item], ttl_seconds=60)
    assert not redis_client.exists("emostream:test:seen:c")
    assert (redis_client.xlen(OUT), counters(redis_client)) == (0, {})
    redis_client.delete(OTHER)
    assert publish_once(redis_client, [item], ttl_seconds=60) == [True]
    assert (redis_client.xlen(OUT), redis_client.xlen(OTHER), counters(redis_client)) == (1, 1, {"faces": 2})
    redis_client.set(COUNTERS, "not a hash")
    other = Once(
        marker="emostream:test:seen:d",
        entries=[Entry(OUT, {"i": "2"}, 1000)],
        counters_key=COUNTERS,
        counters={"faces": 1},
    )
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        publish_once(redis_client, [other], ttl_seconds=60)
    assert redis_client.xlen(OUT) == 1 and not redis_client.exists("emostream:test:seen:d")


def test_publish_once_with_no_entries_still_counts_once(redis_client: redis.Redis) -> None:
    item = Once(
        marker="emostream:test:seen:empty",
        entries=[],
        counters_key=COUNTERS,
        counters={"frames_detected": 1, "faces_detected": 0},
    )
    assert publish_once(redis_client, [item, item], ttl_seconds=60) == [True, False]
    assert counters(redis_client) == {"frames_detected": 1, "faces_detected": 0}


def test_publish_once_answers_per_item_in_one_call(redis_client: redis.Redis) -> None:
    first = Once(
        marker="emostream:test:seen:1",
        entries=[Entry(OUT, {"i": "1"}, 1000)],
        counters_key=COUNTERS,
        counters={"events": 1},
    )
    second = Once(
        marker="emostream:test:seen:2",
        entries=[Entry(OUT, {"i": "2"}, 1000)],
        counters_key=COUNTERS,
        counters={"events": 1},
    )
    assert publish_once(redis_client, [first], ttl_seconds=60) == [True]
    assert publish_once(redis_client, [first, second, second], ttl_seconds=60) == [False, True, False]
    assert [fields[b"i"] for _, fields in redis_client.xrange(OUT)] == [b"1", b"2"]
    assert counters(redis_client) == {"events": 2}


def script_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "script|exists")}


def test_publish_once_is_one_evalsha_per_item_and_survives_a_redis_that_forgot_the_script(
    redis_client: redis.Redis,
) -> None:
    def item(i: int) -> Once:
        return Once(
            marker=f"emostream:test:seen:{i}",
            entries=[Entry(OUT, {"i": str(i)}, 1000)],
            counters_key=COUNTERS,
            counters={"events": 1},
        )

    redis_client.script_flush()  # as a restarted Redis without persistence
    assert publish_once(redis_client, [item(1), item(2)], ttl_seconds=60) == [True, True]
    before = script_calls(redis_client)
    assert publish_once(redis_client, [item(2), item(3)], ttl_seconds=60) == [False, True]
    after = script_calls(redis_client)
    assert after["evalsha"] - before["evalsha"] == 2 and after["script|exists"] == before["script|exists"]
    assert [fields[b"i"] for _, fields in redis_client.xrange(OUT)] == [b"1", b"2", b"3"]
    assert counters(redis_client) == {"events": 3}


def test_published_streams_stay_bounded(redis_client: redis.Redis) -> None:
    items = [
        Once(
            marker=f"emostream:test:seen:{i}",
            entries=[Entry(OUT, {"i": str(i)}, 10)],
            counters_key=COUNTERS,
            counters={"n": 1},
        )
        for i in range(400)
    ]
    publish_once(redis_client, items, ttl_seconds=60)
    # MAXLEN ~ trims whole stream nodes (100 entries by default), so "about 10" is at most 10 + 100.
    assert redis_client.xlen(OUT) <= 110
    assert counters(redis_client) == {"n": 400}
    [(_, newest)] = redis_client.xrevrange(OUT, count=1)
    assert newest == {b"i": b"399"}


# Consumer


def test_consumer_reads_new_entries_and_creates_the_group(redis_client: redis.Redis) -> None:
    reader = consumer(redis_client, "c1")
    assert reader.read(10, block_ms=10) == []  # creates the group on the (new) stream
    assert redis_client.xinfo_groups(STREAM)[0]["name"] == GROUP.encode()
    ids = add(redis_client, "a", "b", "c")
    messages = reader.read(10, block_ms=100)
    assert [(m.stream, m.id, m.value) for m in messages] == [(STREAM, i, v) for i, v in zip(ids, "abc", strict=True)]
    assert pending_ids(redis_client, "c1") == ids  # read, not yet acknowledged
    reader.ack(messages)
    assert pending_ids(redis_client) == []
    assert reader.read(10, block_ms=10) == []


def test_consumer_respects_count(redis_client: redis.Redis) -> None:
    reader = consumer(redis_client, "c1")
    add(redis_client, *"abcde")
    assert [m.value for m in reader.read(2, block_ms=10)] == ["a", "b"]
    assert [m.value for m in reader.read(2, block_ms=10)] == ["c", "d"]


def test_ensure_group_is_idempotent(redis_client: redis.Redis) -> None:
    ensure_group(redis_client, STREAM, GROUP)
    ensure_group(redis_client, STREAM, GROUP)
    assert len(redis_client.xinfo_groups(STREAM)) == 1


def test_restarted_consumer_first_gets_its_own_unacknowledged_entries(redis_client: redis.Redis) -> None:
    ids = add(redis_client, "a", "b", "c")
    ensure_group(redis_client, STREAM, GROUP)
    first = consumer(redis_client, "c1")
    assert [m.value for m in first.read(10, block_ms=10)] == ["a", "b", "c"]
    # c1 "crashes" without acknowledging; new entries arrive meanwhile.
    add(redis_client, "d")
    restarted = consumer(redis_client, "c1")
    again = restarted.read(10, block_ms=10)
    assert [(m.id, m.value) for m in again] == list(zip(ids, "abc", strict=True))
    restarted.ack(again[:2])
    assert [m.value for m in restarted.read(10, block_ms=10)] == ["c"]  # still its own pending one
    restarted.ack(again[2:])
    assert [m.value for m in restarted.read(10, block_ms=10)] == ["d"]  # then new entries
    # Another consumer name does not see c1's pending entries as its own.
    restarted2 = consumer(redis_client, "c2", claim_idle_ms=60_000, claim_every_s=0)
    assert restarted2.read(10, block_ms=10) == []


def test_idle_entries_of_another_consumer_are_claimed(redis_client: redis.Redis) -> None:
    ids = add(redis_client, "a", "b")
    ensure_group(redis_client, STREAM, GROUP)
    stalled = consumer(redis_client, "stalled")
    assert len(stalled.read(10, block_ms=10)) == 2
    patient = consumer(redis_client, "patient", claim_idle_ms=60_000, claim_every_s=0)
    assert patient.read(10, block_ms=10) == []  # not idle long enough
    taker = consumer(redis_client, "taker", claim_idle_ms=50, claim_every_s=0)
    time.sleep(0.06)
    claimed = taker.read(10, block_ms=10)
    assert [(m.id, m.value) for m in claimed] == list(zip(ids, "ab", strict=True))
    assert pending_ids(redis_client, "taker") == ids
    assert pending_ids(redis_client, "stalled") == []
    taker.ack(claimed)
    assert pending_ids(redis_client) == []


def test_claiming_waits_for_claim_every_s(redis_client: redis.Redis) -> None:
    add(redis_client, "a")
    ensure_group(redis_client, STREAM, GROUP)
    consumer(redis_client, "stalled").read(10, block_ms=10)
    taker = consumer(redis_client, "taker", claim_idle_ms=1, claim_every_s=60)
    time.sleep(0.01)
    assert taker.read(10, block_ms=10) == []  # the first claim is due only after claim_every_s
    assert pending_ids(redis_client, "stalled") != []


def test_malformed_entry_is_dead_lettered_and_acknowledged(redis_client: redis.Redis) -> None:
    secret = b"\x00face pixels that must not be kept"
    good_before = add(redis_client, "a")
    bad = redis_client.xadd(STREAM, {"pb": secret})
    good_after = add(redis_client, "b")
    reader = consumer(redis_client, "c1")
    ensure_group(redis_client, STREAM, GROUP)
    messages = reader.read(10, block_ms=10)
    assert [(m.id, m.value) for m in messages] == [(good_before[0], "a"), (good_after[0], "b")]
    assert reader.dead_lettered == 1
    [(_, record)] = redis_client.xrange(names.DEAD_LETTERS)
    assert record[b"stream"] == STREAM.encode()
    assert record[b"id"] == bad
    assert record[b"group"] == GROUP.encode()
    assert b"no 'v' field" in record[b"reason"]
    assert record[b"fields"] == f"pb:{len(secret)}".encode()
    assert not any(secret in value or b"face pixels" in value for value in record.values())
    # Acknowledged at once: only the good entries are pending, and the consumer goes on.
    assert pending_ids(redis_client) == [good_before[0], good_after[0]]
    reader.ack(messages)
    add(redis_client, "c")
    assert [m.value for m in reader.read(10, block_ms=10)] == ["c"]


def test_dead_letter_stream_is_bounded(redis_client: redis.Redis) -> None:
    reader = consumer(redis_client, "c1")
    ensure_group(redis_client, STREAM, GROUP)
    pipe = redis_client.pipeline()
    for _ in range(1300):
        pipe.xadd(STREAM, {"junk": "x"})
    pipe.execute()
    for _ in range(10):  # a read of only bad entries returns [] although it consumed them
        if reader.dead_lettered == 1300:
            break
        assert reader.read(500, block_ms=10) == []
    assert reader.dead_lettered == 1300
    assert 1000 <= redis_client.xlen(names.DEAD_LETTERS) <= 1100
    assert pending_ids(redis_client) == []


def test_trimmed_entries_are_acknowledged_silently(redis_client: redis.Redis) -> None:
    add(redis_client, "a", "b")
    ensure_group(redis_client, STREAM, GROUP)
    assert len(consumer(redis_client, "c1").read(10, block_ms=10)) == 2
    redis_client.xtrim(STREAM, maxlen=0)  # both trimmed away while pending at c1
    restarted = consumer(redis_client, "c1")
    assert restarted.read(10, block_ms=10) == []
    assert pending_ids(redis_client) == []
    assert redis_client.xlen(names.DEAD_LETTERS) == 0
    assert restarted.dead_lettered == 0
    add(redis_client, "c")
    assert [m.value for m in restarted.read(10, block_ms=10)] == ["c"]


def test_consumer_follows_new_streams_and_acks_per_stream(redis_client: redis.Redis) -> None:
    streams = [STREAM]
    reader: Consumer[str] = Consumer(redis_client, GROUP, "c1", decode, lambda: list(streams))
    add(redis_client, "a")
    first = reader.read(10, block_ms=10)
    streams.append(OTHER)
    redis_client.xadd(OTHER, {"v": "z"})
    second = reader.read(10, block_ms=10)
    assert [m.value for m in first] == ["a"]
    assert [(m.stream, m.value) for m in second] == [(OTHER, "z")]
    reader.ack([*first, *second])
    for stream in (STREAM, OTHER):
        assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_no_streams_waits_and_returns_nothing(redis_client: redis.Redis) -> None:
    reader: Consumer[str] = Consumer(redis_client, GROUP, "c1", decode, lambda: [])
    started = time.monotonic()
    assert reader.read(10, block_ms=30) == []
    assert time.monotonic() - started >= 0.025


@pytest.mark.parametrize("count", [1, 3])
def test_messages_carry_stream_and_id(redis_client: redis.Redis, count: int) -> None:
    ids = add(redis_client, *(str(i) for i in range(count)))
    messages = consumer(redis_client, "c1").read(10, block_ms=10)
    assert all(isinstance(m, Message) for m in messages)
    assert [m.id for m in messages] == ids


def test_consumer_survives_its_streams_and_groups_vanishing(redis_client: redis.Redis) -> None:
    # What a Redis restarted without persistence looks like to a running consumer: nothing is left.
    reader = consumer(redis_client, "c1")
    add(redis_client, "a")
    reader.ack(reader.read(10, block_ms=10))
    redis_client.flushdb()
    assert reader.read(10, block_ms=10) == []  # NOGROUP: joins again instead of stopping
    add(redis_client, "b")
    assert [m.value for m in reader.read(10, block_ms=100)] == ["b"]


def test_a_key_that_is_not_a_stream_is_set_aside_and_reported(redis_client: redis.Redis) -> None:
    rejected: list[tuple[str, str]] = []
    reader = Consumer(
        redis_client, GROUP, "c1", decode, lambda: [STREAM, OTHER], on_bad_stream=lambda s, r: rejected.append((s, r))
    )
    redis_client.set(OTHER, "a string")
    add(redis_client, "a")
    assert [m.value for m in reader.read(10, block_ms=100)] == ["a"]
    assert [stream for stream, _ in rejected] == [OTHER] and "WRONGTYPE" in rejected[0][1]
    reader.read(10, block_ms=10)
    assert len(rejected) == 1  # looked at again only after claim_every_s


def test_a_publisher_binds_a_stream_to_its_message_type(redis_client: redis.Redis) -> None:
    per_camera: Publisher[str] = Publisher(lambda value: f"{OUT}:{value}", lambda value: {"v": value}, 1000)
    assert per_camera.entry("a") == Entry(f"{OUT}:a", {"v": "a"}, 1000)
    published = Once(
        marker="emostream:test:seen:p", entries=[per_camera.entry("a")], counters_key=COUNTERS, counters={}
    )
    assert publish_once(redis_client, [published], ttl_seconds=60) == [True]
    fixed: Publisher[str] = Publisher(OTHER, lambda value: {b"v": value.encode()}, 1000)
    pipe = redis_client.pipeline()
    fixed.add(pipe, "b")
    pipe.execute()
    assert [fields for _, fields in redis_client.xrange(f"{OUT}:a")] == [{b"v": b"a"}]
    assert [fields for _, fields in redis_client.xrange(OTHER)] == [{b"v": b"b"}]
