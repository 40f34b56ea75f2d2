"""deploy/tfserving/*.config parse as the text protos TF Serving reads them as.

The tensorflow-serving-api wheel ships no config protos, so the upstream .proto files kept in
tests/deploy/protos are compiled (grpcio-tools) into a private descriptor pool and the files are
parsed strictly with text_format. That runs in a child process: a second descriptor pool in a
process that has TensorFlow and MediaPipe loaded crashed the interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy.conftest import ROOT

PROTOS = Path(__file__).parent / "protos"
CONFIG = ROOT / "deploy" / "tfserving"

_PARSE = """
import json, sys, tempfile
from importlib.resources import files
from pathlib import Path
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, text_format
from grpc_tools import protoc

protos, type_name, config = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
out = Path(tempfile.mkdtemp()) / "tfserving.pb"
sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
well_known = str(files("grpc_tools") / "_proto")
assert protoc.main(["protoc", f"-I{protos}", f"-I{well_known}", "--include_imports",
                    f"--descriptor_set_out={out}", *sources]) == 0
pool = descriptor_pool.DescriptorPool()
for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
    pool.Add(file)
cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
try:
    parsed = text_format.Parse(config.read_text(), cls())
except text_format.ParseError as error:
    print(json.dumps({"error": str(error)}))
else:
    print(json.dumps({"message": json_format.MessageToDict(parsed, preserving_proto_field_name=True)}))
"""


def parse(type_name: str, path: Path) -> dict[str, Any]:
    """{"message": ...} as JSON, or {"error": ...} when text_format rejects the file."""
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, str(PROTOS), type_name, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_batching_parameters() -> None:
    params = parse("tensorflow.serving.BatchingParameters", CONFIG / "batching.config")["message"]
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert name in params, name
    assert int(params["max_batch_size"]) >= 1
    assert int(params["num_batch_threads"]) >= 1
    # Real-time: a partial batch waits at most a few milliseconds.
    assert 0 < int(params["batch_timeout_micros"]) <= 10_000
    allowed = [int(v) for v in params.get("allowed_batch_sizes", [])]
    if allowed:  # TF Serving's rule: increasing, ending at max_batch_size
        assert allowed == sorted(allowed) and allowed[-1] == int(params["max_batch_size"])


def test_monitoring_config() -> None:
    prometheus = parse("tensorflow.serving.MonitoringConfig", CONFIG / "monitoring.config")["message"][
        "prometheus_config"
    ]
    assert prometheus["enable"] is True
    assert prometheus["path"].startswith("/")
    assert prometheus["path"] in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_parser_rejects_unknown_fields(tmp_path: Path) -> None:
    # Guards the guard: the vendored descriptors really are strict.
    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    assert "max_batch_sise" in parse("tensorflow.serving.BatchingParameters", bad)["error"]
