"""CLASSIFIER_BATCH_SIZE against TF Serving's max_batch_size, read from the batching file TF Serving reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from emostream_classifier.main import main
from emostream_classifier.serving_limits import BatchingConfigError, batch_size_problem, max_batch_size

from tests.deploy.test_tfserving_config import CONFIG, parse

BATCHING = CONFIG / "batching.config"


def test_reads_what_tf_serving_reads() -> None:
    """The classifier's reader and a strict text_format parse of the shipped file agree."""
    strict = parse("tensorflow.serving.BatchingParameters", BATCHING)["message"]
    assert max_batch_size(BATCHING) == int(strict["max_batch_size"]) == 64


def test_comments_and_layout(tmp_path: Path) -> None:
    config = tmp_path / "batching.config"
    config.write_text("# max_batch_size { value: 9 }\nmax_batch_size {\n  value: 16  # crops\n}\n")
    assert max_batch_size(config) == 16


@pytest.mark.parametrize("text", ["", "batch_timeout_micros { value: 2 }\n", "max_batch_size { value: 1 }\n" * 2])
def test_file_without_one_limit_is_an_error(text: str, tmp_path: Path) -> None:
    config = tmp_path / "batching.config"
    config.write_text(text)
    with pytest.raises(BatchingConfigError, match="max_batch_size"):
        max_batch_size(config)


def test_batch_size_checked_against_the_limit(tmp_path: Path) -> None:
    assert batch_size_problem(64, BATCHING) is None
    assert batch_size_problem(1024, None) is None  # no batching file: nothing to check against
    problem = batch_size_problem(65, BATCHING)
    assert problem and "65" in problem and "64" in problem and str(BATCHING) in problem
    missing = batch_size_problem(8, tmp_path / "nope.config")
    assert missing and "nope.config" in missing


def test_classifier_refuses_to_start_with_a_batch_tf_serving_rejects(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", redis_url)
    code = main(["--batch-size", "128", "--batching-config", str(BATCHING), "--serving-target", "127.0.0.1:1"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "CLASSIFIER_BATCH_SIZE 128 exceeds max_batch_size 64" in lines[0]
