"""The served models: one VersionManager per model, version labels, and how a request's ModelSpec resolves.

Label rules are TF Serving's (server_core.cc, UpdateModelVersionLabelMap and GetModelVersionForLabel):
a label may only be assigned to a version that is AVAILABLE when the config is applied, else the
whole config is refused with FAILED_PRECONDITION and the previous one stays in effect; with
`allow_version_labels_for_unavailable_models` a label that is new (or unchanged) may point at a
version still loading. Labels are checked before any version change, as TF Serving does, so a
config that both adds a version and labels it is refused until the version is loaded by an
earlier config. An unknown label in a request is INVALID_ARGUMENT "Unrecognized servable version
label: <label>"; a version that is not loaded is NOT_FOUND "Servable not found for request: ...".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_pb2

from emostream_modelserver.model_config import ConfigError, ModelEntry, entries, read
from emostream_modelserver.versions import LoadedVersion, VersionManager, load_version

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses: becomes a gRPC status with this code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ModelRegistry:
    """Models by name, their labels, and the config they were last set from."""

    def __init__(
        self,
        poll_seconds: float = 1.0,
        *,
        allow_labels_for_unavailable: bool = False,
        base_overrides: Mapping[str, Path] | None = None,
        on_change: Callable[[], None] | None = None,
        loader: Callable[[Path, int], LoadedVersion] = load_version,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self._overrides = dict(base_overrides or {})
        self._on_change = on_change
        self._loader = loader
        self._models: dict[str, VersionManager] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._last_error: str | None = None

    @property
    def models(self) -> dict[str, VersionManager]:
        """Managers by model name (a snapshot)."""
        return dict(self._models)

    @property
    def labels(self) -> dict[str, dict[str, int]]:
        """Version labels by model name (a snapshot)."""
        return {name: dict(labels) for name, labels in self._labels.items()}

    def apply(self, models: list[ModelEntry]) -> None:
        """Serve exactly `models`; ConfigError (and nothing changed) where TF Serving would refuse them."""
        with self._lock:
            labels = self._checked_labels(models)
            for entry in models:
                base = self._overrides.get(entry.name, entry.base_path)
                manager = self._models.get(entry.name)
                if manager is None:
                    manager = VersionManager(
                        base, self.poll_seconds, self._changed, loader=self._loader, policy=entry.policy
                    )
                    self._models = {**self._models, entry.name: manager}
                    manager.start()
                else:
                    manager.set_policy(entry.policy, base)
            for name in set(self._models) - {entry.name for entry in models}:
                self._models[name].stop()
                self._models = {k: v for k, v in self._models.items() if k != name}
            self._labels = labels  # one assignment: a request sees the old labels or the new ones

    def _checked_labels(self, models: list[ModelEntry]) -> dict[str, dict[str, int]]:
        labels: dict[str, dict[str, int]] = {}
        for entry in models:
            manager = self._models.get(entry.name)
            available = manager.available if manager is not None else {}
            for label, version in entry.labels.items():
                existing = self._labels.get(entry.name, {}).get(label)
                may_wait = self.allow_labels_for_unavailable and existing in (None, version)
                if version not in available and not may_wait:
                    raise ConfigError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {entry.name}, "
                        "which is not currently available for inference",
                    )
                labels.setdefault(entry.name, {})[label] = version
        return labels

    def _changed(self, _: LoadedVersion | None) -> None:
        if self._on_change is not None:
            self._on_change()

    def serving(self) -> bool:
        """Whether every model has a version available (grpc health SERVING)."""
        models = self._models
        return bool(models) and all(manager.current is not None for manager in models.values())

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[str, LoadedVersion]:
        """The model name and loaded version a request's ModelSpec asks for, as TF Serving resolves it."""
        name = spec.name
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            version: int | None = self._labels.get(name, {}).get(spec.version_label)
            if version is None:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}"
                )
        else:
            version = int(spec.version.value) if choice == "version" else None
        manager = self._models.get(name)
        if manager is None:
            loaded = None
        elif version is None:
            loaded = manager.current
        else:
            loaded = manager.available.get(version)
        if loaded is None:
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
        return name, loaded

    def watch(self, path: Path, poll_seconds: float) -> None:
        """Re-read the config file every `poll_seconds` and apply it, as TF Serving's
        `--model_config_file_poll_wait_seconds` does (0: read once, which `load_file` did)."""
        if poll_seconds <= 0:
            return

        def run() -> None:
            while not self._stop.wait(poll_seconds):
                self.reload_file(path)

        self._watcher = threading.Thread(target=run, name="model-config-poller", daemon=True)
        self._watcher.start()

    def reload_file(self, path: Path) -> bool:
        """Apply the file once; a refused or unreadable config is logged (once per distinct error)."""
        try:
            self.apply(entries(read(path)))
        except ConfigError as error:
            if error.message != self._last_error:
                log.error("model config %s not applied, the previous one stays: %s", path, error.message)
                self._last_error = error.message
            return False
        if self._last_error is not None:
            log.info("model config %s applied", path)
            self._last_error = None
        return True

    def stop(self) -> None:
        """Stop watching the config and the base paths; loaded versions stay usable in flight."""
        self._stop.set()
        for manager in self._models.values():
            manager.stop()
        if self._watcher is not None:
            self._watcher.join(5.0)
