#!/usr/bin/env bash
# Makes everything that is generated from the contract in proto/, the one
# command for it (`make proto`):
#   - the Python binding, into PYTHON_OUT (default sdks/python);
#   - the .proto the R package ships and reads at run time, under R_OUT
#     (default sdks/r/inst/proto): a symbolic link to proto/, not a copy, so
#     the contract has one copy. `R CMD INSTALL sdks/r` installs the file it
#     points to.
# tests/unit/test_generated_drift.py runs it into a temporary folder and
# compares the binding byte for byte, so a change to proto/ without
# regenerating fails the tests; it checks the R package's link too.
#
#   tools/generate_proto.sh [PYTHON_OUT [R_OUT]]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/sdks/python}
r_out=${2:-$here/sdks/r/inst/proto}
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I"$here/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$here/proto/alertsidecar/v1/worker.proto"
touch "$out/alertsidecar/__init__.py" "$out/alertsidecar/v1/__init__.py"
mkdir -p "$r_out/alertsidecar/v1"
ln -sfn "$(realpath --relative-to="$r_out/alertsidecar/v1" "$here/proto/alertsidecar/v1/worker.proto")" \
  "$r_out/alertsidecar/v1/worker.proto"
