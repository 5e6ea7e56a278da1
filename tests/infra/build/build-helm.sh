#!/usr/bin/env bash
# Builds the helm v3 client from the Go module proxy at the version pinned in versions.env,
# into $ETL_CACHE_DIR/helm-<version>/bin. A finished build is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
bin="$cache/helm-$HELM_VERSION/bin"
if [[ -x $bin/helm ]]; then echo "helm: cached at $bin"; exit 0; fi
start=$(date +%s)
rm -rf "$bin.partial"
mkdir -p "$bin.partial"
# helm's go.mod has no replace lines, so a plain `go install` of the module works. Versions
# are stamped in with -X, as helm's own Makefile does: the release for `helm version`, and the
# Kubernetes version `helm template` and `helm lint` assume (client-go v0.X -> 1.X), without
# which they assume v1.20 and refuse charts that need a newer cluster.
go mod download "helm.sh/helm/v3@v$HELM_VERSION"
modfile=$(go env GOMODCACHE)/cache/download/helm.sh/helm/v3/@v/v$HELM_VERSION.mod
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$modfile")
kube_minor=$(echo "$client_go" | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done
CGO_ENABLED=0 GOBIN="$bin.partial" GOFLAGS= go install -trimpath -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
mv "$bin.partial" "$bin"
echo "helm: built v$HELM_VERSION in $(( $(date +%s) - start ))s"
