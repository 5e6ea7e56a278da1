#!/usr/bin/env bash
# Builds the MinIO S3 server from the Go module proxy at the version pinned in versions.env,
# into $ETL_CACHE_DIR/minio-<version>/bin. A finished build is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
bin="$cache/minio-$MINIO_VERSION/bin"
if [[ -x $bin/minio ]]; then echo "minio: cached at $bin"; exit 0; fi
start=$(date +%s)
mkdir -p "$bin.partial"
CGO_ENABLED=0 GOBIN="$bin.partial" GOFLAGS= go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
mv "$bin.partial" "$bin"
echo "minio: built $MINIO_VERSION in $(( $(date +%s) - start ))s"
