#!/usr/bin/env bash
# Regenerate the Python code for protos/ into src/ (never edit the output by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src protos/emostream/v1/*.proto
touch src/emostream/v1/__init__.py
