"""deploy/tfserving/*.config parse as the text protos TF Serving reads them as.

The tensorflow-serving-api wheel ships no config protos, so the upstream .proto files kept in
tests/deploy/protos are compiled here (grpcio-tools) into a private descriptor pool.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, text_format
from grpc_tools import protoc

from tests.deploy.conftest import ROOT

PROTOS = Path(__file__).parent / "protos"
CONFIG = ROOT / "deploy" / "tfserving"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pool.DescriptorPool:
    out = tmp_path_factory.mktemp("protos") / "tfserving.pb"
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = str(files("grpc_tools") / "_proto")
    status = protoc.main(["protoc", f"-I{PROTOS}", f"-I{well_known}", "--include_imports",
                          f"--descriptor_set_out={out}", *sources])
    assert status == 0, "protoc failed on tests/deploy/protos"
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    result = descriptor_pool.DescriptorPool()
    for file in descriptors.file:  # dependencies come first with --include_imports
        result.Add(file)
    return result


def parse(pool: descriptor_pool.DescriptorPool, type_name: str, path: Path) -> message.Message:
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
    # Strict: an unknown or misspelled field fails here as it would fail TF Serving at start.
    return text_format.Parse(path.read_text(), cls())


def test_batching_parameters(pool: descriptor_pool.DescriptorPool) -> None:
    params = parse(pool, "tensorflow.serving.BatchingParameters", CONFIG / "batching.config")
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert params.HasField(name), name  # type: ignore[attr-defined]
    assert params.max_batch_size.value >= 1  # type: ignore[attr-defined]
    assert params.num_batch_threads.value >= 1  # type: ignore[attr-defined]
    # Real-time: a partial batch waits at most a few milliseconds.
    assert 0 < params.batch_timeout_micros.value <= 10_000  # type: ignore[attr-defined]
    allowed = list(params.allowed_batch_sizes)  # type: ignore[attr-defined]
    if allowed:  # TF Serving's rule: increasing, ending at max_batch_size
        assert allowed == sorted(allowed) and allowed[-1] == params.max_batch_size.value  # type: ignore[attr-defined]


def test_monitoring_config(pool: descriptor_pool.DescriptorPool) -> None:
    config = parse(pool, "tensorflow.serving.MonitoringConfig", CONFIG / "monitoring.config")
    prometheus = config.prometheus_config  # type: ignore[attr-defined]
    assert prometheus.enable
    assert prometheus.path.startswith("/")
    assert prometheus.path in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_parser_rejects_unknown_fields(pool: descriptor_pool.DescriptorPool, tmp_path: Path) -> None:
    # Guards the guard: the vendored descriptors really are strict.
    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    with pytest.raises(text_format.ParseError):
        parse(pool, "tensorflow.serving.BatchingParameters", bad)
