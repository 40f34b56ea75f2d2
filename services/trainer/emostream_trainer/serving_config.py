"""Roles of model versions, kept where serving reads them: TF Serving's model config file.

The served version carries the label `stable`, the candidate `canary`; both (and the version
served before the last promotion, kept loaded for an instant rollback) are listed in a
`specific` version policy. Every other version folder is retired: on disk, not loaded. The file
is rewritten in one rename; models other than ours, and every other field, are kept as they are.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from emostream.errors import EmostreamError

STABLE = "stable"
CANARY = "canary"
HEADER = (
    "# TF Serving model config (ModelServerConfig, text format), rewritten by `emostream deploy`.\n"
    "# stable: the served version; canary: the candidate the classifiers shadow. base_path is the\n"
    "# folder as the model server sees it (inside the TF Serving container).\n"
)


class ServingConfigError(EmostreamError, RuntimeError):
    """The config file cannot be read or does not describe the model."""


@dataclass
class Roles:
    """What the config says about one model."""

    base_path: str
    loaded: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def stable(self) -> int | None:
        return self.labels.get(STABLE)

    @property
    def canary(self) -> int | None:
        return self.labels.get(CANARY)

    def role(self, version: int) -> str:
        if version == self.stable:
            return "served"
        if version == self.canary:
            return "candidate"
        return "previous" if version in self.loaded else "retired"


def _read(path: Path) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except text_format.ParseError as error:
            raise ServingConfigError(f"{path} does not parse as a TF Serving model config: {error}") from None
    return config


def _entry(
    config: model_server_config_pb2.ModelServerConfig, model_name: str
) -> model_server_config_pb2.ModelConfig | None:
    return next((entry for entry in config.model_config_list.config if entry.name == model_name), None)


def read_roles(path: Path, model_name: str) -> Roles | None:
    """The model's roles, or None when the file does not exist or does not list it."""
    entry = _entry(_read(path), model_name)
    if entry is None:
        return None
    policy = entry.model_version_policy
    loaded = sorted(int(v) for v in policy.specific.versions) if policy.HasField("specific") else []
    return Roles(entry.base_path, loaded, {str(k): int(v) for k, v in entry.version_labels.items()})


def write_roles(path: Path, model_name: str, roles: Roles) -> None:
    """Set the model's policy and labels to `roles`, atomically; adds the model (or the file) if missing."""
    config = _read(path)
    entry = _entry(config, model_name)
    if entry is None:
        entry = config.model_config_list.config.add(name=model_name, model_platform="tensorflow")
    entry.base_path = roles.base_path
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.extend(sorted(set(roles.loaded)))
    entry.version_labels.clear()
    for label, version in sorted(roles.labels.items()):
        entry.version_labels[label] = version
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(HEADER + text_format.MessageToString(config))
        os.chmod(staging, 0o644)
        os.replace(staging, path)  # a server polling the file reads the old text or the new, whole
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
