"""Model cost per face through the project's model server over gRPC, as the classifier calls it.

The server runs as its own process, started as `emostream serve-model` is deployed (same
TensorFlow settings), so client and server do not share an interpreter.

    uv run python bench/model_latency.py [--model-base models/emotion] [--precision auto]
        [--batches 1,8,32] [--rounds 50]

`--precision` is the server's (auto: the int8 LiteRT copy; MODELSERVER_RUNTIME=tensorflow for TensorFlow).

Prints, per batch size, the median and mean milliseconds per Predict call and per face.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from emostream_serving.tf_serving import ServingClient


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16", "int8"), default="auto")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "emostream.cli", "serve-model", "--model-base", str(args.model_base)]
    server = subprocess.Popen([*command, "--port", str(port), "--precision", args.precision])
    try:
        crops = np.random.default_rng(0).integers(0, 256, size=(256, 48, 48, 1), dtype=np.uint8)
        with ServingClient(f"127.0.0.1:{port}", "emotion") as client:
            client.wait_ready(180)
            version = client.model_version()
            for batch in (int(b) for b in args.batches.split(",")):
                for _ in range(5):  # warm-up: first calls trace and allocate
                    client.predict(crops[:batch])
                seconds = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    client.predict(crops[:batch])
                    seconds.append(time.perf_counter() - started)
                median, mean = statistics.median(seconds) * 1000, statistics.fmean(seconds) * 1000
                print(
                    json.dumps(
                        {
                            "model_version": version,
                            "precision": args.precision,
                            "batch": batch,
                            "ms_per_call_p50": round(median, 2),
                            "ms_per_face_p50": round(median / batch, 3),
                            "ms_per_face_mean": round(mean / batch, 3),
                        }
                    )
                )
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
