"""Settings: per-service env prefixes, common EMOSTREAM_ names, flags over env, one-line errors, positionals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from emostream_classifier.settings import ClassifierSettings
from emostream_detector.settings import DetectorSettings
from pydantic import ValidationError

from emostream.launcher import UpSettings
from emostream.settings import DEFAULT_REDIS_URL, build_parser, env_name, load

ENV_PREFIXES = ("EMOSTREAM_", "CLASSIFIER_", "DETECTOR_", "UP_", "CAPTURE_", "EVENTS_")
BARE_NAMES = ("REDIS_URL", "CONSUMER", "LOG_LEVEL", "STREAM_MAXLEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIXES) or name.upper() in BARE_NAMES:
            monkeypatch.delenv(name)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


def test_defaults() -> None:
    settings = load(ClassifierSettings, [], prog="emostream classify")
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.batch_size == 32
    assert settings.serving_target == "127.0.0.1:8500"
    assert settings.consumer  # the host name
    assert settings.stream_maxlen == 1000


def test_service_fields_come_from_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSIFIER_BATCH_SIZE", "8")
    monkeypatch.setenv("CLASSIFIER_SERVING_TARGET", "models:8500")
    monkeypatch.setenv("CLASSIFIER_MODEL_BASE", "/srv/models/emotion")
    monkeypatch.setenv("DETECTOR_MIN_SCORE", "0.7")
    classifier = load(ClassifierSettings, [], prog="emostream classify")
    assert (classifier.batch_size, classifier.serving_target) == (8, "models:8500")
    assert classifier.model_base == Path("/srv/models/emotion")
    assert load(DetectorSettings, [], prog="emostream detect").min_score == pytest.approx(0.7)
    # Another service's prefix does not apply.
    monkeypatch.setenv("DETECTOR_BLOCK_MS", "77")
    assert load(ClassifierSettings, [], prog="emostream classify").block_ms == 500


def test_common_fields_have_one_name_for_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", "redis://redis:6379/3")
    monkeypatch.setenv("EMOSTREAM_CONSUMER", "replica-7")
    monkeypatch.setenv("EMOSTREAM_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("EMOSTREAM_STREAM_MAXLEN", "500")
    for cls, prog in ((ClassifierSettings, "classify"), (DetectorSettings, "detect"), (UpSettings, "up")):
        settings = load(cls, [], prog=prog)
        assert (settings.redis_url, settings.consumer, settings.log_level, settings.stream_maxlen) == (
            "redis://redis:6379/3",
            "replica-7",
            "DEBUG",
            500,
        ), cls.__name__


def test_common_fields_prefer_the_emostream_name_over_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLASSIFIER_REDIS_URL is read too (fields are populated by name), but EMOSTREAM_REDIS_URL wins."""
    monkeypatch.setenv("CLASSIFIER_REDIS_URL", "redis://elsewhere:6379/0")
    assert load(ClassifierSettings, [], prog="classify").redis_url == "redis://elsewhere:6379/0"
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", "redis://redis:6379/3")
    assert load(ClassifierSettings, [], prog="classify").redis_url == "redis://redis:6379/3"


def test_bare_unprefixed_names_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", "redis://redis:6379/3")
    monkeypatch.setenv("REDIS_URL", "redis://someone-elses-redis:6379/0")
    monkeypatch.setenv("CONSUMER", "not-meant-for-us")
    settings = load(ClassifierSettings, [], prog="classify")
    assert settings.redis_url == "redis://redis:6379/3"
    assert settings.consumer != "not-meant-for-us"


def test_flags_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSIFIER_BATCH_SIZE", "8")
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", "redis://from-env:6379/1")
    monkeypatch.setenv("EMOSTREAM_CONSUMER", "env-name")
    settings = load(
        ClassifierSettings,
        ["--batch-size", "4", "--redis-url", "redis://from-flag:6379/2", "--consumer", "flag-name"],
        prog="classify",
    )
    assert (settings.batch_size, settings.redis_url, settings.consumer) == (4, "redis://from-flag:6379/2", "flag-name")


def test_flags_win_over_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(ClassifierSettings, ["--batch-size", "4"], prog="classify", batch_size=16, block_ms=9)
    assert (settings.batch_size, settings.block_ms) == (4, 9)


def test_env_values_are_case_insensitive_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("classifier_batch_size", "5")
    assert load(ClassifierSettings, [], prog="classify").batch_size == 5


@pytest.mark.parametrize(
    ("env", "argv", "flag", "variable"),
    [
        ({"CLASSIFIER_BATCH_SIZE": "abc"}, [], "--batch-size", "CLASSIFIER_BATCH_SIZE"),
        ({}, ["--batch-size", "0"], "--batch-size", "CLASSIFIER_BATCH_SIZE"),
        ({"CLASSIFIER_SERVING_TARGET": "no-port"}, [], "--serving-target", "CLASSIFIER_SERVING_TARGET"),
        ({"EMOSTREAM_LOG_LEVEL": "LOUD"}, [], "--log-level", "EMOSTREAM_LOG_LEVEL"),
        ({}, ["--consumer", ""], "--consumer", "EMOSTREAM_CONSUMER"),
        ({"EMOSTREAM_STREAM_MAXLEN": "5"}, [], "--stream-maxlen", "EMOSTREAM_STREAM_MAXLEN"),
        ({}, ["--claim-idle-ms", "10"], "--claim-idle-ms", "CLASSIFIER_CLAIM_IDLE_MS"),
    ],
)
def test_bad_value_exits_2_with_one_line_naming_flag_and_env(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    flag: str,
    variable: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load(ClassifierSettings, argv, prog="emostream classify")
    assert exited.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith("emostream classify: invalid setting")
    assert f"{flag} / {variable}" in line
    assert (env or dict([argv])).popitem()[1] in line  # the offending value is shown


def test_bad_detector_value_names_its_env_var(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DETECTOR_MARGIN", "2.5")
    with pytest.raises(SystemExit) as exited:
        load(DetectorSettings, [], prog="emostream detect")
    assert exited.value.code == 2
    assert "--margin / DETECTOR_MARGIN" in one_error_line(capsys)


def test_unknown_prefixed_env_vars_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Observed pydantic-settings behaviour: extra="forbid" does not reject unknown environment variables."""
    monkeypatch.setenv("CLASSIFIER_NO_SUCH_SETTING", "1")
    monkeypatch.setenv("EMOSTREAM_NO_SUCH_SETTING", "1")
    assert load(ClassifierSettings, [], prog="classify").batch_size == 32


def test_unknown_keyword_settings_are_rejected() -> None:
    with pytest.raises(ValidationError, match="no_such_setting"):
        ClassifierSettings(no_such_setting=1)  # type: ignore[call-arg]


def test_unknown_flag_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load(ClassifierSettings, ["--no-such-flag", "1"], prog="emostream classify")
    assert exited.value.code == 2
    assert "--no-such-flag" in one_error_line(capsys)


def test_positional_sources_extend_the_list_flag() -> None:
    settings = load(UpSettings, ["a.mp4", "c.mp4", "--sources", "b.mp4", "--once"], prog="up", positional="sources")
    assert settings.sources == ["b.mp4", "a.mp4", "c.mp4"]  # flag values first, then the bare ones
    assert settings.once is True
    assert load(UpSettings, [], prog="up", positional="sources").sources == []
    assert load(UpSettings, ["x", "y"], prog="up", positional="sources").sources == ["x", "y"]


def test_positionals_are_refused_without_a_positional_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load(UpSettings, ["a.mp4"], prog="up")
    assert exited.value.code == 2
    assert "a.mp4" in one_error_line(capsys)


def test_list_and_bool_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_SOURCES", '["cam1=a.mp4", "b.mp4"]')
    monkeypatch.setenv("UP_REALTIME", "false")
    settings = load(UpSettings, [], prog="up", positional="sources")
    assert settings.sources == ["cam1=a.mp4", "b.mp4"]
    assert settings.realtime is False
    assert load(UpSettings, ["--realtime"], prog="up").realtime is True
    assert load(UpSettings, ["--no-once"], prog="up").once is False
    assert load(UpSettings, ["--format", "json", "--timeout-s", "2.5"], prog="up").timeout_s == 2.5


def test_env_names_in_help() -> None:
    assert env_name(ClassifierSettings, "batch_size") == "CLASSIFIER_BATCH_SIZE"
    assert env_name(ClassifierSettings, "redis_url") == "EMOSTREAM_REDIS_URL"
    assert env_name(DetectorSettings, "consumer") == "EMOSTREAM_CONSUMER"
    help_text = build_parser(ClassifierSettings, "emostream classify").format_help()
    assert "CLASSIFIER_BATCH_SIZE" in help_text and "EMOSTREAM_REDIS_URL" in help_text
