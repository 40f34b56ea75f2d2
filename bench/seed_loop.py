"""Baseline: a careful single-process loop (MediaPipe, then one model call per frame with all its faces).

    uv run python bench/seed_loop.py [--frames 300] [--model-base models/emotion]
        [--runtime auto|litert|tensorflow] [--precision auto|float32|bfloat16|int8]

Same video, detector range and model as bench/pipeline.py, and the classifier's per-frame batching;
the model runs in-process through the model server's own loader, computed as `emostream serve-model`
would with the same --runtime and --precision, on every core. Prints frames/s, faces/s and its peak
resident memory for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emostream.cpu import computes_bfloat16
from emostream.light_imports import tensorflow_protos_only
from emostream.model_repository import numbered_versions

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import compose_video, load_faces


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    parser.add_argument("--runtime", choices=("auto", "litert", "tensorflow"), default="auto")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16", "int8"), default="auto")
    args = parser.parse_args()
    from emostream_modelserver.runtime import choose

    compute = choose(args.runtime, args.precision, computes_bfloat16())
    if compute.runtime == "litert":
        tensorflow_protos_only()  # as the model server's process: no TensorFlow runtime
    elif compute.precision == "bfloat16":
        from emostream_modelserver.precision import rewrite_to_bfloat16

        rewrite_to_bfloat16()
    import cv2
    from emostream_detector.detection import finder_from_settings
    from emostream_detector.model_file import fetch
    from emostream_detector.settings import DetectorSettings
    from emostream_modelserver.runtime import usable_cores
    from emostream_modelserver.versions import load_version

    version = numbered_versions(args.model_base)[-1]
    model = load_version(args.model_base, version, compute, threads=usable_cores())
    detector = DetectorSettings()  # built as the detector service builds it, with the same settings
    finder = finder_from_settings(detector, fetch(detector.model_dir))
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "bench.avi"
        compose_video(load_faces(args.data, per_class=200, seed=0), args.frames, 15.0, video)
        capture = cv2.VideoCapture(str(video))
        faces = frames = 0
        started = time.perf_counter()
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            crops = [detection.crop for detection in finder.find(frame)]
            if crops:  # one call per frame with all its faces, as the classifier batches them
                model.predict(np.stack(crops)[:, :, :, None])
            faces += len(crops)
            frames += 1
        elapsed = time.perf_counter() - started
    finder.close()
    print(
        json.dumps(
            {
                "mode": f"seed loop (one process, {compute.runtime} in {compute.precision})",
                "frames": frames,
                "faces": faces,
                "frames_per_s": round(frames / elapsed, 1),
                "faces_per_s": round(faces / elapsed, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
