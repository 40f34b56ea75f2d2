# Every emostream image, one target per service (the target is the service's name). Build from the
# repo root (the uv workspace is the context):
#   docker build --target classifier -t emostream-classifier .
# docker-compose.yml names the target of each service (`build.target`). A new service: a
# `<name>-venv` stage that syncs its package and a `<name>` stage with its entrypoint, both below.
# Offline or behind a proxy (docs/DEPLOY.md, Building images): base images are build arguments and a
# proxy's CA bundle is an optional build secret, e.g. --secret id=ca-bundle,src=/path/to/ca.pem.
# No `# syntax=` line: the engine's built-in Dockerfile frontend builds it, nothing is fetched.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# uv pinned to the version that wrote uv.lock.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- shared stages -----------------------------------------------------------------------------------
# Every runtime starts here. Builder and runtime use the same Python image: the venv's interpreter
# link points into it.
FROM ${PYTHON_IMAGE} AS python
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin emostream
# HOME on /tmp: a tmpfs in compose, where the root filesystem is read-only.
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /app

# OpenCV's wheel links libGL, GLib and libxcb (its bundled Qt and FFmpeg); MediaPipe's libmediapipe.so
# links libEGL and libGLESv2 even on CPU; every other wheel bundles its own libraries. Those packages
# depend on Mesa's drivers and LLVM (~140 MB), which are only loaded to draw with OpenGL, never done
# here: removed in the same layer.
FROM python AS opencv
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libxcb1 libegl1 libgles2 \
    && rm -rf /var/lib/apt/lists/* /usr/lib/*/dri /usr/lib/*/libLLVM*

# Every member's pyproject.toml and nothing else (uv reads them all to resolve the workspace, even for
# one package): the dependency layer below is rebuilt only when the lock or a member's metadata
# changes, and a new member needs no line here.
FROM ${PYTHON_IMAGE} AS metadata
COPY services /src/services
RUN find /src/services -type f ! -name pyproject.toml -delete

# The builder: every member's locked dependencies, installed once for all targets; each `<name>-venv`
# stage syncs the venv down to exactly its service's packages. On the OpenCV stage: capture renders
# its demo with OpenCV here.
FROM opencv AS dependencies
COPY --from=uv /uv /bin/uv
# Bytecode is compiled per service, after the sync (and pruning) has cut what it does not need.
ENV UV_COMPILE_BYTECODE=0 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_CACHE_DIR=/root/.cache/uv \
    UV_PYTHON=python3.11 UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY --from=metadata /src/services services
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    with-extra-ca uv sync --frozen --no-dev --no-editable --no-install-workspace --all-packages
COPY src src
COPY services services

# --- capture ----------------------------------------------------------------------------------------
FROM dependencies AS capture-venv
# --no-editable: the venv holds built wheels, so the runtime stage needs the venv only, no source.
# The built-in demo's frames (public-domain images from scikit-image), rendered here so the image
# needs no scikit-image: install the `demo` extra as locked, render, then sync back to exactly the
# service's packages.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    uv export --frozen --no-dev --no-emit-workspace --no-hashes --package emostream --extra demo -o /tmp/demo.txt \
    && with-extra-ca uv sync --frozen --no-dev --no-editable --package emostream-capture \
    && with-extra-ca uv pip install --python /app/.venv/bin/python -r /tmp/demo.txt \
    && python -c "import pathlib, emostream.demo as d; d.write_demo(pathlib.Path('/app/demo'))" \
    && with-extra-ca uv sync --frozen --no-dev --no-editable --compile-bytecode --package emostream-capture

FROM opencv AS capture
COPY --from=capture-venv /app/.venv /app/.venv
# The default source in docker-compose.yml (CAPTURE_SOURCES unset).
COPY --from=capture-venv /app/demo /opt/emostream/demo
USER 10001:10001
# Healthy while this capture's heartbeat in Redis is fresh. 10 s: a Python start on a loaded host can
# take over 5.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["emostream", "health", "capture"]
ENTRYPOINT ["emostream", "capture"]

# --- detector ---------------------------------------------------------------------------------------
FROM dependencies AS detector-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    with-extra-ca uv sync --frozen --no-dev --no-editable --compile-bytecode --package emostream-detector

FROM opencv AS detector
COPY --from=detector-venv /app/.venv /app/.venv
# The face detector models (short and full range) are baked in at build time; the command verifies
# their sha256 and fails the build on a mismatch. Read-only for the service user.
ENV DETECTOR_MODEL_DIR=/opt/emostream
RUN --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    mkdir -p "$DETECTOR_MODEL_DIR" \
    && with-extra-ca emostream fetch-detector-model --dir "$DETECTOR_MODEL_DIR" \
    && chmod 0444 "$DETECTOR_MODEL_DIR"/*.tflite
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["emostream", "health", "detector"]
ENTRYPOINT ["emostream", "detect"]

# --- classifier -------------------------------------------------------------------------------------
FROM dependencies AS classifier-venv
# The classifier uses nothing of TensorFlow but its protobuf modules (tensorflow-serving-api imports
# them from the `tensorflow` package): keep those, drop the rest (~1.8 GB), then prove it still loads.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    --mount=type=bind,source=deploy/docker/prune_venv.py,target=/tmp/prune_venv.py \
    with-extra-ca uv sync --frozen --no-dev --no-editable --package emostream-classifier \
    && python /tmp/prune_venv.py --venv /app/.venv --lock uv.lock --package emostream-classifier --protos-only tensorflow \
    && python -m compileall -q -j 0 /app/.venv/lib \
    && python -c "import emostream_classifier.main"

FROM python AS classifier
COPY --from=classifier-venv /app/.venv /app/.venv
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["emostream", "health", "classifier"]
ENTRYPOINT ["emostream", "classify"]

# --- modelserver ------------------------------------------------------------------------------------
FROM dependencies AS modelserver-venv
# TensorFlow's C++ headers (for building custom ops) and libclang (a build-time tool) are never
# loaded at run time: ~0.5 GB less.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    --mount=type=bind,source=deploy/docker/prune_venv.py,target=/tmp/prune_venv.py \
    with-extra-ca uv sync --frozen --no-dev --no-editable --package emostream-modelserver \
    && python /tmp/prune_venv.py --venv /app/.venv --remove tensorflow/include --uninstall libclang \
    && python -m compileall -q -j 0 /app/.venv/lib \
    && python -c "import tensorflow, emostream_modelserver.main"

FROM python AS modelserver
COPY --from=modelserver-venv /app/.venv /app/.venv
# Inside a container it must listen beyond loopback to be reachable; publish the port on 127.0.0.1
# only (docker run -p 127.0.0.1:8500:8500).
ENV MODELSERVER_HOST=0.0.0.0 MODELSERVER_MODEL_BASE=/models/emotion MODELSERVER_MODEL_NAME=emotion
EXPOSE 8500
USER 10001:10001
# Healthy while the gRPC port accepts connections.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8500), 3).close()"]
ENTRYPOINT ["emostream", "serve-model"]

# --- trainer ----------------------------------------------------------------------------------------
FROM dependencies AS trainer-venv
# The same TensorFlow cut as the model server's.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    --mount=type=bind,source=deploy/docker/prune_venv.py,target=/tmp/prune_venv.py \
    with-extra-ca uv sync --frozen --no-dev --no-editable --package emostream-trainer \
    && python /tmp/prune_venv.py --venv /app/.venv --remove tensorflow/include --uninstall libclang \
    && python -m compileall -q -j 0 /app/.venv/lib \
    && python -c "import tensorflow, emostream_trainer.train_command"

FROM python AS trainer
COPY --from=trainer-venv /app/.venv /app/.venv
# Matplotlib and Keras write caches under these; the service user owns nothing in the image.
ENV MPLCONFIGDIR=/tmp/matplotlib KERAS_HOME=/tmp/keras
USER 10001:10001
# A batch job, not a service: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["emostream", "train"]

# --- tracker ----------------------------------------------------------------------------------------
FROM dependencies AS tracker-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    with-extra-ca uv sync --frozen --no-dev --no-editable --compile-bytecode --package emostream-tracker

FROM python AS tracker
COPY --from=tracker-venv /app/.venv /app/.venv
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["emostream", "health", "tracker"]
ENTRYPOINT ["emostream", "track"]

# --- viewer -----------------------------------------------------------------------------------------
FROM dependencies AS viewer-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca \
    with-extra-ca uv sync --frozen --no-dev --no-editable --compile-bytecode --package emostream-viewer

FROM python AS viewer
COPY --from=viewer-venv /app/.venv /app/.venv
# Listens on all interfaces inside the container; compose publishes it on 127.0.0.1 only.
ENV VIEWER_HOST=0.0.0.0 VIEWER_PORT=8080
EXPOSE 8080
USER 10001:10001
# Healthy while the page answers and Redis with it (/healthz pings Redis). The image has no curl.
HEALTHCHECK --interval=15s --timeout=10s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["emostream", "view"]
