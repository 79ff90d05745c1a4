#!/usr/bin/env bash
# Regenerates the Python binding of the contract from proto/ into OUT
# (default sdks/python). The one command for generated code: `make proto`.
# tests/unit/test_generated_drift.py runs it into a temporary folder and
# compares, so a change to proto/ without regenerating fails the tests.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/sdks/python}
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I"$here/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$here/proto/alertsidecar/v1/worker.proto"
touch "$out/alertsidecar/__init__.py" "$out/alertsidecar/v1/__init__.py"
