"""Find, load and hot-swap numbered SavedModel versions under a TF Serving model base path."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from emostream_serving.tensors import dtype_enum
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from emostream import model_repository as repository
from emostream.errors import EmostreamError
from emostream.model_repository import INPUT_DTYPE, INPUT_KEY, INPUT_SHAPE, OUTPUT_KEY, SAVED_MODEL_FILE, SIGNATURE_NAME
from emostream_modelserver.runtime import SAVED_MODEL, Compute

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 60.0

RunModel = Callable[[np.ndarray], dict[str, np.ndarray]]
"""A loaded version's serving function: a uint8 batch in, numpy outputs by name."""


class ModelLoadError(EmostreamError, RuntimeError):
    """A version folder exists but is not a usable model for this server."""


class ModelRunError(Exception):
    """A loaded model failed on a request; answered to the client with this gRPC code, as TF Serving does."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LoadedVersion:
    """One loaded, warmed-up version: everything a request needs, immutable once built."""

    version: int
    path: Path
    run: RunModel
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    labels: tuple[str, ...]
    runtime: str = "tensorflow"

    def predict(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Run serving_default on a uint8 batch; numpy outputs by name (ModelRunError if the model fails)."""
        return self.run(image)


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """SignatureDefs from saved_model.pb, the same map TF Serving reports as metadata."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / SAVED_MODEL_FILE).read_bytes())
    if not saved.meta_graphs:
        raise ModelLoadError(f"{path / SAVED_MODEL_FILE} has no MetaGraph")
    return {name: sig for name, sig in saved.meta_graphs[0].signature_def.items()}


def _check_contract(signature_defs: dict[str, meta_graph_pb2.SignatureDef], path: Path) -> None:
    if SIGNATURE_NAME not in signature_defs:
        raise ModelLoadError(f"{path} has no '{SIGNATURE_NAME}' signature")
    sig = signature_defs[SIGNATURE_NAME]
    if list(sig.inputs) != [INPUT_KEY]:
        raise ModelLoadError(f"{path}: '{SIGNATURE_NAME}' inputs are {sorted(sig.inputs)}, expected ['{INPUT_KEY}']")
    if sig.inputs[INPUT_KEY].dtype != dtype_enum(np.dtype(INPUT_DTYPE)):
        raise ModelLoadError(f"{path}: input '{INPUT_KEY}' is not {INPUT_DTYPE}")
    if OUTPUT_KEY not in sig.outputs:
        raise ModelLoadError(f"{path}: '{SIGNATURE_NAME}' has no '{OUTPUT_KEY}' output")


def read_labels_file(path: Path) -> tuple[str, ...]:
    """Labels of a version folder, or () when it ships none: TF Serving serves a version without labels too."""
    return repository.read_labels(path) if repository.has_labels(path) else ()


def open_model(path: Path, compute: Compute, threads: int) -> RunModel:
    """The version's serving function as `compute` says; each runtime's library is imported only when used."""
    if compute.runtime == "litert":
        from emostream_modelserver import litert_model

        return litert_model.load(path, threads, "float32" if compute.precision == "float32" else "int8")
    from emostream_modelserver import tensorflow_model

    return tensorflow_model.load(path)


def load_version(base: Path, version: int, compute: Compute = SAVED_MODEL, threads: int = 1) -> LoadedVersion:
    """Load, check and warm up one version; raises ModelLoadError (or the runtime's error) if unusable."""
    path = base / str(version)
    signature_defs = read_signature_defs(path)
    _check_contract(signature_defs, path)
    loaded = LoadedVersion(
        version=version,
        path=path,
        run=open_model(path, compute, threads),
        signature_defs=signature_defs,
        labels=read_labels_file(path),
        runtime=compute.runtime,
    )
    # Warm up before the swap so the first real request does not pay for tracing, and a
    # model that cannot run (or disagrees with its labels) never replaces a working one.
    probabilities = loaded.predict(np.zeros((1, *INPUT_SHAPE), np.uint8))[OUTPUT_KEY]
    if probabilities.ndim != 2 or probabilities.shape[0] != 1:
        raise ModelLoadError(f"{path}: '{OUTPUT_KEY}' has shape {probabilities.shape}, expected [N,K]")
    if loaded.labels and len(loaded.labels) != probabilities.shape[1]:
        raise ModelLoadError(f"{path}: {len(loaded.labels)} labels but {probabilities.shape[1]} outputs")
    return loaded


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders to serve: TF Serving's `model_version_policy` (`latest`, `all`, `specific`)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def wanted(self, version: int, rank: int) -> bool:
        """Whether `version`, the `rank`-th newest loadable one (0 = newest), is aspired."""
        if self.kind == "all":
            return True
        if self.kind == "specific":
            return version in self.versions
        return rank < self.num_versions


LATEST_ONE = VersionPolicy()


@dataclass
class _Failure:
    stamp: int
    attempts: int
    retry_at: float


class VersionManager:
    """Serves the versions its policy asks for and follows the base path as versions come and go.

    Like TF Serving's availability-preserving policy: a version is loaded fully (and warmed up)
    before the set of served versions changes, in a single reference swap; a version leaves only
    once some wanted version is available, so removing every wanted folder never goes dark.
    With the default `latest 1` policy this serves the newest loadable version.
    """

    def __init__(
        self,
        base: Path,
        poll_seconds: float = 1.0,
        on_change: Callable[[LoadedVersion | None], None] | None = None,
        loader: Callable[[Path, int], LoadedVersion] = load_version,
        policy: VersionPolicy = LATEST_ONE,
    ) -> None:
        self.base = base
        self.poll_seconds = poll_seconds
        self.policy = policy
        self._on_change = on_change
        self._loader = loader
        self._available: dict[int, LoadedVersion] = {}
        self._ended: set[int] = set()
        self._loading: int | None = None
        self._failures: dict[int, _Failure] = {}
        self._orphan_warned: int | None = None
        self._changed = threading.Condition()
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedVersion | None:
        """The newest served version (TF Serving's `Latest`); requests read this once and keep what they got."""
        available = self._available
        return available[max(available)] if available else None

    @property
    def available(self) -> dict[int, LoadedVersion]:
        """Every served version by number; a snapshot that never changes once read."""
        return self._available

    @property
    def loading(self) -> int | None:
        """The version being loaded right now, if any."""
        return self._loading

    @property
    def ended(self) -> set[int]:
        """Versions that were served and have been unloaded (TF Serving reports them as END)."""
        return set(self._ended)

    def set_policy(self, policy: VersionPolicy, base: Path | None = None) -> None:
        """Serve by `policy` (and from `base`) from the next scan on."""
        self.policy = policy
        if base is not None:
            self.base = base

    def start(self) -> None:
        """Poll the base path in a daemon thread, the first scan immediately."""
        self._thread = threading.Thread(target=self._run, name="model-version-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; the served versions stay usable for requests still in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_for_version(self, timeout: float, version: int | None = None) -> LoadedVersion:
        """Block until some version (or `version`) is served; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (self.current if version is None else self._available.get(version)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    wanted = "no loadable model version" if version is None else f"version {version} not loaded"
                    raise TimeoutError(f"{wanted} under {self.base} after {timeout:.1f}s")
                self._changed.wait(left)
            found = self.current if version is None else self._available[version]
            assert found is not None
            return found

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the poller must outlive any surprise, or serving freezes on one version
                log.exception("scanning %s failed", self.base)
            self._stop.wait(self.poll_seconds)

    def refresh(self) -> None:
        """One scan: load what the policy wants, then let go of what it no longer wants."""
        with self._refreshing:
            candidates = repository.servable_versions(self.base)  # hidden staging folders never count
            for gone in set(self._failures) - set(candidates):
                del self._failures[gone]  # a removed folder starts afresh if it comes back
            wanted = self._load_wanted(candidates)
            self._unload_unwanted(wanted, candidates)

    def _load_wanted(self, candidates: list[int]) -> set[int]:
        wanted: set[int] = set()
        rank = 0
        for version in candidates:  # newest first: `latest N` counts loadable versions only
            if not self.policy.wanted(version, rank):
                if self.policy.kind == "latest":
                    break
                continue
            if version not in self._available and self._should_try(version):
                loaded = self._try_load(version)
                if loaded is not None:
                    self._publish({**self._available, version: loaded}, f"serving model version {version}")
            if version in self._available:
                wanted.add(version)
                rank += 1
        return wanted

    def _unload_unwanted(self, wanted: set[int], candidates: list[int]) -> None:
        unwanted = set(self._available) - wanted
        if not unwanted:
            return
        if not wanted:
            # Keep answering rather than go dark; say so once, not on every poll.
            orphan = max(self._available)
            if orphan not in candidates and self._orphan_warned != orphan:
                log.warning("version %d was removed and no other version loads; still serving it", orphan)
                self._orphan_warned = orphan
            return
        kept = {v: loaded for v, loaded in self._available.items() if v in wanted}
        self._ended |= unwanted
        self._publish(kept, f"unloaded model version(s) {sorted(unwanted)}")

    def _publish(self, available: dict[int, LoadedVersion], what: str) -> None:
        previous = sorted(self._available)
        with self._changed:
            self._available = available  # one reference assignment: each request sees old or new, whole
            self._ended -= set(available)
            self._changed.notify_all()
        current = self.current
        labels = ", ".join(current.labels) if current and current.labels else "none"
        log.info("%s; serving %s (was %s) from %s (labels: %s)", what, sorted(available), previous, self.base, labels)
        if self._on_change is not None:
            self._on_change(current)

    def _should_try(self, version: int) -> bool:
        failure = self._failures.get(version)
        if failure is None:
            return True
        # A rewritten folder is worth trying at once; an unchanged broken one only after backoff.
        return failure.stamp != _stamp(self.base / str(version)) or time.monotonic() >= failure.retry_at

    def _try_load(self, version: int) -> LoadedVersion | None:
        self._loading = version
        try:
            loaded = self._loader(self.base, version)
        except Exception as error:
            self._record_failure(version, error)
            return None
        finally:
            self._loading = None
        self._failures.pop(version, None)
        return loaded

    def _record_failure(self, version: int, error: Exception) -> None:
        previous = self._failures.get(version)
        attempts = previous.attempts + 1 if previous else 1
        delay = min(MAX_RETRY_SECONDS, self.poll_seconds * 2**attempts)
        self._failures[version] = _Failure(_stamp(self.base / str(version)), attempts, time.monotonic() + delay)
        log.error(
            "cannot load model version %d (%s); retrying in %.1fs; serving versions %s",
            version,
            error,
            delay,
            sorted(self._available),
        )


def _stamp(path: Path) -> int:
    """Changes when the version's saved_model.pb is rewritten or replaced."""
    try:
        stat = (path / SAVED_MODEL_FILE).stat()
    except OSError:
        return -1
    return stat.st_mtime_ns ^ stat.st_ino ^ stat.st_size
