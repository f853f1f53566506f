#!/usr/bin/env bash
# Run an MLflow tracking server for genlib (see mlflow/README.md and docs/deploy.md).
#
# Default: this folder's embedded store, the one `genlib pipeline` uses without MLFLOW_TRACKING_URI:
# sqlite mlflow/mlflow.db and artifacts in mlflow/artifacts, on 127.0.0.1:5000. Override with
#   MLFLOW_BACKEND_STORE_URI      e.g. postgresql+psycopg2://genlib:secret@db-host:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  e.g. s3://genlib-mlflow/artifacts or /srv/mlflow/artifacts
#   MLFLOW_HOST / MLFLOW_PORT     e.g. 0.0.0.0 / 5000 to serve GPU workers on other hosts
#   MLFLOW_ALLOWED_HOSTS          Host headers accepted when serving beyond loopback (e.g. mlflow.lab,10.0.0.5:5000)
#   MLFLOW_WORKERS                server worker processes (default 2)
# Authentication (MLflow's basic-auth app), required for any host but loopback:
#   MLFLOW_AUTH_ADMIN_PASSWORD or MLFLOW_AUTH_ADMIN_PASSWORD_FILE   the admin's password (12+ characters;
#                                 no default). Used when the user store is created; later changes go
#                                 through MLflow's update-password API.
#   MLFLOW_AUTH_ADMIN_USERNAME    default admin
#   MLFLOW_AUTH_CONFIG_PATH       MLflow's auth config file (default: mlflow/basic_auth.ini, written here)
#   MLFLOW_AUTH_DATABASE_URI      the user store (default sqlite mlflow/basic_auth.db; PostgreSQL when shared)
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what every signed-in user may do (default EDIT: the team's registry)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF key; default: a random one per start (give one when several
#                                 servers share a user store)
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

password="${MLFLOW_AUTH_ADMIN_PASSWORD:-}"
if [[ -z "$password" && -n "${MLFLOW_AUTH_ADMIN_PASSWORD_FILE:-}" ]]; then
  password="$(<"$MLFLOW_AUTH_ADMIN_PASSWORD_FILE")"
fi
auth="off"
if [[ -n "$password" ]]; then
  # A config file given and present is used as it is; otherwise one is written (without the password:
  # MLflow reads that from MLFLOW_AUTH_ADMIN_PASSWORD).
  export MLFLOW_AUTH_CONFIG_PATH="${MLFLOW_AUTH_CONFIG_PATH:-$here/basic_auth.ini}"
  if [[ ! -f "$MLFLOW_AUTH_CONFIG_PATH" || "$MLFLOW_AUTH_CONFIG_PATH" == "$here/basic_auth.ini" ]]; then
    cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-EDIT}
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$here/basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
  fi
  export MLFLOW_AUTH_ADMIN_PASSWORD="$password" MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
  export MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}"
  args+=(--app-name basic-auth)
  auth="basic-auth, admin ${MLFLOW_AUTH_ADMIN_USERNAME}"
else
  case "$host" in
    127.*|localhost|::1) ;;
    *) echo "error: refusing to serve MLflow on $host without authentication: set MLFLOW_AUTH_ADMIN_PASSWORD" \
            "or MLFLOW_AUTH_ADMIN_PASSWORD_FILE (see docs/deploy.md), or bind 127.0.0.1" >&2
       exit 2 ;;
  esac
fi
if [[ "$artifacts" != *://* ]]; then mkdir -p "$artifacts"; fi

echo "MLflow tracking server: http://$host:$port  (backend ${backend%%:*}, artifacts $artifacts, auth $auth)" >&2
echo "point genlib at it with: export MLFLOW_TRACKING_URI=http://$host:$port" \
     "${password:+MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>}" >&2
exec "$mlflow_bin" "${args[@]}" "$@"
