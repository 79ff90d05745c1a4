#!/usr/bin/env bash
# Makes everything that is generated from the contract in proto/, the one
# command for it (`make proto`):
#   - the Python binding, into PYTHON_OUT (default sdks/python).
# The R package needs nothing made: its configure script copies proto/ into
# the package at each `R CMD INSTALL sdks/r`, so the contract has one copy.
# tests/unit/test_generated_drift.py runs this into a temporary folder and
# compares the binding byte for byte, so a change to proto/ without
# regenerating fails the tests.
#
#   tools/generate_proto.sh [PYTHON_OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/sdks/python}
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I"$here/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$here/proto/alertsidecar/v1/worker.proto"
touch "$out/alertsidecar/__init__.py" "$out/alertsidecar/v1/__init__.py"
