"""Model cost per face through the project's model server over gRPC, as the classifier calls it.

    uv run python bench/model_latency.py [--model-base models/emotion] [--batches 1,8,32] [--rounds 50]

Prints, per batch size, the median and mean milliseconds per Predict call and per face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from emostream_classifier.tf_serving import ServingClient
from emostream_modelserver.server import start_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    server = start_server(args.model_base, "emotion", port=0)
    try:
        version = server.wait_until_serving(120)
        crops = np.random.default_rng(0).integers(0, 256, size=(256, 48, 48, 1), dtype=np.uint8)
        with ServingClient(f"127.0.0.1:{server.port}", "emotion") as client:
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
                            "batch": batch,
                            "ms_per_call_p50": round(median, 2),
                            "ms_per_face_p50": round(median / batch, 3),
                            "ms_per_face_mean": round(mean / batch, 3),
                        }
                    )
                )
    finally:
        server.stop(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
