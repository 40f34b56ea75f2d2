"""`emostream health SERVICE`: exit 0 while the service's heartbeat is fresh (container health checks)."""

from __future__ import annotations

import os
import socket
import sys

from emostream.connection import RedisUnavailable, connect
from emostream.settings import DEFAULT_REDIS_URL, OneLineParser
from emostream.telemetry import healthy


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="emostream health", description=__doc__)
    parser.add_argument("service", choices=("capture", "detector", "classifier", "tracker"))
    parser.add_argument("--consumer", default=os.environ.get("EMOSTREAM_CONSUMER", socket.gethostname()))
    args = parser.parse_args(argv)
    try:
        client = connect(os.environ.get("EMOSTREAM_REDIS_URL", DEFAULT_REDIS_URL), timeout_s=2.0)
    except RedisUnavailable as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if not healthy(client, args.service, args.consumer):
        print(f"unhealthy: no fresh heartbeat from {args.service} {args.consumer}", file=sys.stderr)
        return 1
    return 0
