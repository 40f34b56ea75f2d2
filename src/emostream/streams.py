"""Typed publishers and consumers over Redis Streams, and idempotent publishing.

A `Publisher[T]` binds a stream to the message type written there; a `Consumer[T]` reads
and decodes it. Delivery is at-least-once: a consumer re-reads its own unacknowledged
entries after a restart and claims entries that another consumer left idle; handlers
publish their outputs through `publish_once`, so a replayed entry does not publish twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis

from emostream import metrics, names
from emostream.wire import WireError

T = TypeVar("T")
Fields = Mapping[str, str] | Mapping[bytes, bytes] | Mapping[str | bytes, str | bytes]
log = logging.getLogger(__name__)
DEAD_LETTERS_MAXLEN = 1000

# One atomic step: mark the input handled, add the output entries, bump counters.
# Nothing is written when the marker already exists, so a replay is a no-op.
# Key types are checked first: Redis does not roll a script back, so a failing XADD after the
# marker was set would leave part of the output and a marker that blocks the retry.
_PUBLISH_ONCE = """
for k = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[k]).ok
  local want = (k == #KEYS) and 'hash' or 'stream'
  if kind ~= want and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. kind .. ', not a ' .. want)
  end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
local i = 2
local entries = tonumber(ARGV[i]); i = i + 1
for e = 1, entries do
  local maxlen = ARGV[i]; local nfields = tonumber(ARGV[i + 1]); i = i + 2
  local args = {'XADD', KEYS[1 + e], 'MAXLEN', '~', maxlen, '*'}
  for f = 1, nfields * 2 do args[#args + 1] = ARGV[i]; i = i + 1 end
  redis.call(unpack(args))
end
local counters = tonumber(ARGV[i]); i = i + 1
for c = 1, counters do redis.call('HINCRBY', KEYS[2 + entries], ARGV[i], ARGV[i + 1]); i = i + 2 end
return 1
"""
_PUBLISH_ONCE_SHA = hashlib.sha1(_PUBLISH_ONCE.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One entry to add to a stream trimmed to about `maxlen` entries."""

    stream: str
    fields: Fields
    maxlen: int


@dataclass(frozen=True)
class Publisher(Generic[T]):
    """Binds a stream to its message type: how a value is encoded and about how long the stream may grow.

    `stream` is a name, or a function of the value for streams kept per camera (frames).
    """

    stream: str | Callable[[T], str]
    encode: Callable[[T], Fields]
    maxlen: int

    def stream_of(self, value: T) -> str:
        return self.stream if isinstance(self.stream, str) else self.stream(value)

    def entry(self, value: T) -> Entry:
        """`value` as an output of `publish_once`, written together with its input's marker."""
        return Entry(self.stream_of(value), self.encode(value), self.maxlen)

    def add(self, client: redis.Redis | redis.client.Pipeline, value: T) -> None:
        """XADD `value` now (queued, on a pipeline): for outputs that no input replays."""
        fields: dict[str | bytes, str | bytes] = {key: field for key, field in self.encode(value).items()}
        client.xadd(self.stream_of(value), fields, maxlen=self.maxlen, approximate=True)


@dataclass(frozen=True)
class Message(Generic[T]):
    stream: str
    id: bytes
    value: T


@dataclass(frozen=True, kw_only=True)
class Once:
    """Output of handling one input: written only if `marker` is new, all in one atomic step."""

    marker: str
    entries: Sequence[Entry]
    counters_key: str
    counters: Mapping[str, int]


def publish_once(client: redis.Redis, items: Sequence[Once], ttl_seconds: int) -> list[bool]:
    """Publish each item atomically unless its marker exists; True where it was published now.

    One round trip of EVALSHA calls. redis-py's Script on a pipeline would ask SCRIPT EXISTS first on
    every call; instead a Redis that does not know the script (restarted, flushed) gets it loaded and
    the calls sent again, which is safe since every item is written at most once.
    """
    calls = []
    for item in items:
        keys = [item.marker, *(entry.stream for entry in item.entries), item.counters_key]
        args: list[str | bytes | int] = [ttl_seconds, len(item.entries)]
        for entry in item.entries:
            args += [entry.maxlen, len(entry.fields)]
            for key, value in entry.fields.items():
                args += [key, value]
        args.append(len(item.counters))
        for name, amount in item.counters.items():
            args += [name, amount]
        calls.append((keys, args))
    try:
        return _evalsha_all(client, calls)
    except redis.exceptions.NoScriptError:
        client.script_load(_PUBLISH_ONCE)
        return _evalsha_all(client, calls)


def _evalsha_all(client: redis.Redis, calls: list[tuple[list[str], list[str | bytes | int]]]) -> list[bool]:
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.evalsha(_PUBLISH_ONCE_SHA, len(keys), *keys, *args)
    return [bool(result) for result in pipe.execute()]


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create `group` on `stream` (and the stream) reading from its start, if missing."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def add_dead_letter(
    pipe: redis.client.Pipeline,
    stream: str,
    entry_id: bytes | str,
    group: str,
    reason: str,
    kind: str,
    fields: Mapping[bytes, bytes] | None = None,
) -> None:
    """Queue on `pipe` one dead-letter record and its count by `kind`."""
    record = dead_letter_record(stream, entry_id, group, reason, kind, fields)
    pipe.xadd(names.DEAD_LETTERS, record, maxlen=DEAD_LETTERS_MAXLEN, approximate=True)
    pipe.hincrby(names.DEAD_LETTER_COUNTS, kind, 1)


def dead_letter_record(
    stream: str,
    entry_id: bytes | str,
    group: str,
    reason: str,
    kind: str,
    fields: Mapping[bytes, bytes] | None = None,
) -> dict[str | bytes, str | bytes]:
    """The fields of one dead-letter entry."""
    return {
        "stream": stream,
        "id": entry_id,
        "group": group,
        "kind": kind,
        "reason": reason,
        # Field names and sizes only: the payload may hold a face, which is not kept.
        "fields": ",".join(f"{key.decode(errors='replace')}:{len(value)}" for key, value in (fields or {}).items()),
    }


NO_STREAM_POLL_MS = 50  # how often a consumer with nothing to read asks again which streams exist


class Consumer(Generic[T]):
    """Reads decoded entries for one consumer of a group over one or more streams."""

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        consumer: str,
        decode: Callable[[dict[bytes, bytes]], T],
        streams: Callable[[], Iterable[str]],
        *,
        claim_idle_ms: int = 30_000,
        claim_every_s: float = 5.0,
        on_bad_stream: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self.consumer = consumer
        self.decode = decode
        self.streams = streams
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.on_bad_stream = on_bad_stream
        self._known: set[str] = set()
        self._rejected: dict[str, float] = {}  # stream -> when to look at it again
        self._recovering = True
        self._next_claim = time.monotonic() + claim_every_s
        self.dead_lettered = 0

    def _refresh_streams(self) -> list[str]:
        """The streams to read; a key that is not a stream is set aside (and looked at again later)."""
        now = time.monotonic()
        current = []
        for stream in sorted(set(self.streams())):
            if stream not in self._known:
                if self._rejected.get(stream, 0.0) > now:
                    continue
                try:
                    ensure_group(self.client, stream, self.group)
                except redis.ResponseError as error:  # WRONGTYPE: something else wrote that key
                    self._rejected[stream] = now + self.claim_every_s
                    log.error("not reading %s: %s", stream, error)
                    if self.on_bad_stream:
                        self.on_bad_stream(stream, str(error))
                    continue
                self._rejected.pop(stream, None)
                self._known.add(stream)
            current.append(stream)
        return current

    def read(self, count: int, block_ms: int) -> list[Message[T]]:
        """Own pending entries first (after a restart), then claimed idle ones, then new ones.

        A group or stream that vanished (a Redis restart without persistence, a deleted key) is
        created again on the next read instead of stopping the service.
        """
        try:
            return self._read(count, block_ms)
        except redis.ResponseError as error:
            if not str(error).startswith(("NOGROUP", "WRONGTYPE")):
                raise
            log.warning("streams changed under the consumer (%s); joining them again", error)
            self._known.clear()
            return []

    def _read(self, count: int, block_ms: int) -> list[Message[T]]:
        streams = self._refresh_streams()
        if not streams:  # look again soon: a camera that registers now should not wait a whole block
            time.sleep(min(block_ms, NO_STREAM_POLL_MS) / 1000)
            return []
        if self._recovering:
            raw = self.client.xreadgroup(self.group, self.consumer, dict.fromkeys(streams, "0"), count=count)
            messages = self._decode_all(raw)
            if messages or any(entries for _, entries in raw):
                return messages
            self._recovering = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_every_s
            claimed = self._claim(streams, count)
            if claimed:
                return claimed
        raw = self.client.xreadgroup(
            self.group, self.consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms
        )
        return self._decode_all(raw or [])

    def _claim(self, streams: list[str], count: int) -> list[Message[T]]:
        messages: list[Message[T]] = []
        for stream in streams:
            _, entries, _deleted = self.client.xautoclaim(
                stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms, count=count
            )
            if entries:
                log.warning("claimed %d idle entries of %s from a stalled consumer", len(entries), stream)
                messages += self._decode_all([(stream.encode(), entries)])
        return messages

    def _decode_all(self, raw: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes] | None]]]]) -> list[Message[T]]:
        messages: list[Message[T]] = []
        for stream_name, entries in raw:
            stream = stream_name.decode() if isinstance(stream_name, bytes) else str(stream_name)
            for entry_id, fields in entries:
                if not fields:  # trimmed away before it was read: nothing left to process
                    self.client.xack(stream, self.group, entry_id)
                    continue
                try:
                    messages.append(Message(stream, entry_id, self.decode(fields)))
                except WireError as error:
                    self.dead_letter(stream, entry_id, fields, str(error), error.kind)
        return messages

    def dead_letter(
        self, stream: str, entry_id: bytes, fields: Mapping[bytes, bytes], reason: str, kind: str = "malformed"
    ) -> None:
        """Set a bad entry aside with the reason, count it by kind, acknowledge it, and go on."""
        log.error("dead-lettering %s %s: %s", stream, entry_id.decode(), reason)
        pipe = self.client.pipeline()
        add_dead_letter(pipe, stream, entry_id, self.group, reason, kind, fields)
        pipe.xack(stream, self.group, entry_id)
        pipe.execute()
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(self.group, metrics.reason_kind(reason)).inc()

    def ack(self, messages: Iterable[Message[T]]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for message in messages:
            by_stream.setdefault(message.stream, []).append(message.id)
        if by_stream:
            pipe = self.client.pipeline(transaction=False)  # each XACK stands alone; MULTI/EXEC would add work
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()
