"""The exception tree: every failure the project raises on purpose derives from EmostreamError, as drawn."""

from __future__ import annotations

import importlib
import re

from emostream import cli, errors
from emostream.errors import EmostreamError
from emostream.wire import WireError

MODULES = (
    "emostream.wire",
    "emostream.connection",
    "emostream.model_repository",
    "emostream.launcher",
    "emostream_capture.sources",
    "emostream_capture.capture",
    "emostream_detector.model_file",
    "emostream_serving.tf_serving",
    "emostream_classifier.classifier",
    "emostream_classifier.serving_limits",
    "emostream_modelserver.versions",
    "emostream_modelserver.model_config",
    "emostream_modelserver.precision",
    "emostream_trainer.dataset",
    "emostream_trainer.litert_export",
    "emostream_trainer.serving_config",
    "emostream_trainer.deploy_command",
)


def subclasses(root: type) -> set[str]:
    found = set()
    for child in root.__subclasses__():
        found |= {child.__name__} | subclasses(child)
    return found


def test_the_documented_tree_is_the_real_one() -> None:
    for module in MODULES:
        importlib.import_module(module)
    assert errors.__doc__ is not None
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__))
    assert drawn == subclasses(EmostreamError)


def test_a_known_failure_is_its_message_and_a_bug_names_its_type() -> None:
    assert cli._one_line(WireError("frame has no image bytes\nmore")) == "frame has no image bytes"
    assert cli._one_line(KeyError("x")).startswith("KeyError: 'x' (EMOSTREAM_LOG_LEVEL=DEBUG")
