"""The root of emostream's own exceptions.

Every failure the project raises on purpose derives from `EmostreamError`, so a command's
last line of defence can tell "a known failure with its own message" from a bug. Each
subclass also keeps the builtin base callers caught before (ValueError, RuntimeError).

    EmostreamError
    ├── WireError (ValueError)                      emostream.wire: a stream entry breaks the contract
    ├── RedisUnavailable (RuntimeError)             emostream.connection: Redis does not answer
    ├── ModelRepositoryError                        emostream.model_repository: a version folder is unusable
    ├── BadSource (ValueError)                      emostream.launcher: `up` cannot use a source
    ├── NotReady (RuntimeError)                     emostream.launcher: a replica died or was not ready in time
    ├── SourceError (ValueError)                    capture: a source spec or device cannot be opened
    ├── EncodeError (ValueError)                    capture: a frame cannot be encoded as JPEG
    ├── ModelFetchError (RuntimeError)              detector: the face detector download failed its check
    ├── ServingError (RuntimeError)                 classifier: a TF Serving call failed
    │   ├── ServingNotReady                         no version became AVAILABLE in time
    │   └── ContractError                           the answer breaks the model contract
    ├── BatchingConfigError (ValueError)            classifier: TF Serving's batching file is unusable
    ├── ModelLoadError (RuntimeError)               model server: a version folder cannot be served
    ├── ConfigError                                 model server: the model config file is unusable
    ├── PrecisionError (ValueError)                 model server: a reduced-precision copy is refused
    ├── DatasetError (ValueError)                   trainer: training or evaluation data is unusable
    ├── ServingConfigError (RuntimeError)           trainer: models.config cannot be read or written
    ├── CompileError (RuntimeError)                 trainer: a version cannot be compiled for LiteRT
    └── DeployError (RuntimeError)                  trainer: a deploy step would leave serving broken

Control flow that is not a failure (a rejected message, a stop request, a gRPC request
error answered to the client) keeps its own small classes outside this tree.
"""

from __future__ import annotations


class EmostreamError(Exception):
    """A known failure with a message meant for the operator: one line, naming what to fix."""
