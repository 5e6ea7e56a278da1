#!/usr/bin/env bash
# Builds the Prometheus server from the Go module proxy at the module version pinned in
# versions.env (v0.3MM.P is Prometheus 3.MM.P), into $ETL_CACHE_DIR/prometheus-<version>/bin.
# A finished build is reused. The harness needs the scraper, the TSDB and the query API only:
# the web UI's assets are left out (no builtinassets tag) and so is every service discovery but
# static, file and http (remove_all_sd): 1044 packages to compile instead of 1518.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
bin="$cache/prometheus-$PROMETHEUS_VERSION/bin"
if [[ -x $bin/prometheus ]]; then echo "prometheus: cached at $bin"; exit 0; fi
start=$(date +%s)
module=github.com/prometheus/prometheus
export GOFLAGS='' CGO_ENABLED=0
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# `prometheus --version` names the release, as its own builds stamp it (.promu.yml).
source_dir=$(cd "$work" && go mod download -json "$module@$PROMETHEUS_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
release=$(cat "$source_dir/VERSION")
rm -rf "$bin.partial"; mkdir -p "$bin.partial"
GOBIN="$bin.partial" go install -trimpath -tags remove_all_sd \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
  "$module/cmd/prometheus@$PROMETHEUS_VERSION"
rm -rf "$bin"; mv "$bin.partial" "$bin"
echo "prometheus: built $release ($PROMETHEUS_VERSION) in $(( $(date +%s) - start ))s at $bin"
