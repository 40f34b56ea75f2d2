"""`emostream capture`: publish frames from webcams, video files, URLs and image folders until done or stopped."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import stop_on_signals
from emostream.settings import build_parser, load
from emostream.telemetry import setup_logging
from emostream_capture.capture import SERVICE, CaptureSettings, run_capture
from emostream_capture.sources import SourceError, parse_sources

PROG = "emostream capture"


def with_positional_sources(argv: Sequence[str]) -> list[str]:
    """`argv` with bare source specs rewritten as `--sources SPEC`, so `capture a.mp4 0` works."""
    _, extras = build_parser(CaptureSettings, PROG).parse_known_args(list(argv))
    positional = [token for token in extras if not token.startswith("-")]
    rest = list(argv)
    for token in reversed(positional):  # from the right: an equal flag value earlier stays a flag value
        del rest[len(rest) - 1 - rest[::-1].index(token)]
    return rest + [part for spec in positional for part in ("--sources", spec)]


def main(argv: list[str]) -> int:
    """Run capture; 0 when every finite source is done (or on SIGTERM/SIGINT), 1 on failure, 2 on bad setup."""
    settings = load(CaptureSettings, with_positional_sources(argv), prog=PROG)
    setup_logging(settings.log_level, SERVICE)
    try:
        sources = parse_sources(settings.sources, settings.images_fps)
    except SourceError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stop = stop_on_signals()
    try:
        return run_capture(client, sources, settings, stop)
    finally:
        for signum, handler in previous.items():  # leave an embedding process (or a test) as it was
            signal.signal(signum, handler)
        client.close()
