#!/usr/bin/env bash
# Run an MLflow tracking server for genlib (see mlflow/README.md).
#
# Default: this folder's embedded store, the one `genlib pipeline` uses without MLFLOW_TRACKING_URI:
# sqlite mlflow/mlflow.db and artifacts in mlflow/artifacts, on 127.0.0.1:5000. Override with
#   MLFLOW_BACKEND_STORE_URI      e.g. postgresql://genlib:secret@db-host:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  e.g. s3://genlib-mlflow/artifacts or /srv/mlflow/artifacts
#   MLFLOW_HOST / MLFLOW_PORT     e.g. 0.0.0.0 / 5000 to serve GPU workers on other hosts
#   MLFLOW_ALLOWED_HOSTS          Host headers accepted when serving beyond loopback (e.g. mlflow.lab,10.0.0.5:5000)
#   MLFLOW_WORKERS                server worker processes (default 2)
# Extra arguments are passed to `mlflow server`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mlflow_bin="${MLFLOW_BIN:-}"
if [[ -z "$mlflow_bin" ]]; then
  if [[ -x "$here/../.venv/bin/mlflow" ]]; then mlflow_bin="$here/../.venv/bin/mlflow"; else mlflow_bin="mlflow"; fi
fi

backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$here/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$here/artifacts}"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"

# MLflow 3's job runner (background consumers for GenAI scorers) is of no use to genlib.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

args=(server --backend-store-uri "$backend" --artifacts-destination "$artifacts"
      --host "$host" --port "$port" --workers "${MLFLOW_WORKERS:-2}")
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"); fi
if [[ "$artifacts" != *://* ]]; then mkdir -p "$artifacts"; fi

echo "MLflow tracking server: http://$host:$port  (backend ${backend%%:*}, artifacts $artifacts)" >&2
echo "point genlib at it with: export MLFLOW_TRACKING_URI=http://$host:$port" >&2
exec "$mlflow_bin" "${args[@]}" "$@"
