"""TF Serving's model config file (`--model_config_file`): a text-format `ModelServerConfig`.

Read and checked as TF Serving does (tensorflow_serving/model_servers/server_core.cc): each model
listed once, platform `tensorflow`, an absolute base path; the version policy and the version labels
are kept for the registry, which checks the labels against what is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from emostream.errors import EmostreamError
from emostream_modelserver.versions import LATEST_ONE, VersionPolicy

PLATFORM = "tensorflow"


class ConfigError(EmostreamError):
    """A config TF Serving would refuse: the gRPC code and message it answers with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModelEntry:
    """One `config { ... }` of the list."""

    name: str
    base_path: Path
    policy: VersionPolicy = LATEST_ONE
    labels: dict[str, int] = field(default_factory=dict)


def single_model(name: str, base_path: Path) -> list[ModelEntry]:
    """What `--model_name` and `--model_base_path` mean: one model, newest version, no labels."""
    return [ModelEntry(name, base_path)]


def parse(text: str, source: str = "model config") -> model_server_config_pb2.ModelServerConfig:
    """The text proto as a message; ConfigError (INVALID_ARGUMENT) if it does not parse."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(grpc.StatusCode.INVALID_ARGUMENT, f"{source} does not parse: {error}") from None
    return config


def read(path: Path) -> model_server_config_pb2.ModelServerConfig:
    """Parse the file at `path`; ConfigError naming it if it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(grpc.StatusCode.NOT_FOUND, f"cannot read model config file {path}: {error}") from None
    return parse(text, f"model config file {path}")


def _policy(config: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=frozenset(int(v) for v in policy.specific.versions))
    if choice == "latest":
        return VersionPolicy("latest", num_versions=max(1, int(policy.latest.num_versions)))
    return LATEST_ONE


def entries(config: model_server_config_pb2.ModelServerConfig) -> list[ModelEntry]:
    """The models of a config, checked as TF Serving's ValidateModelConfigList and GetPlatform do."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError(
            grpc.StatusCode.INVALID_ARGUMENT, "custom_model_config is not supported; use model_config_list"
        )
    found: list[ModelEntry] = []
    for model in config.model_config_list.config:
        if any(entry.name == model.name for entry in found):
            raise ConfigError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Illegal to list model {model.name} multiple times in config list"
            )
        if not model.model_platform:
            raise ConfigError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                "nor ModelServerConfig::model_platform.",
            )
        if model.model_platform != PLATFORM:
            raise ConfigError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Model {model.name} requests unsupported platform {model.model_platform}",
            )
        if not model.base_path.startswith("/"):
            raise ConfigError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}",
            )
        labels = {str(label): int(version) for label, version in model.version_labels.items()}
        found.append(ModelEntry(model.name, Path(model.base_path), _policy(model), labels))
    return found
