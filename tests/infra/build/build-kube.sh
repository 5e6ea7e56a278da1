#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module proxy at the versions pinned in
# versions.env, into $ETL_CACHE_DIR/kube-<k8s>-etcd-<etcd>/bin. A finished build is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
out="$cache/kube-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
bin="$out/bin"
if [[ -x $bin/kube-apiserver && -x $bin/kube-controller-manager && -x $bin/kubectl && -x $bin/etcd && -f $out/.complete ]]; then
  echo "kube: cached at $bin"; exit 0
fi
start=$(date +%s)
mkdir -p "$bin"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0

# The k8s.io/kubernetes module points its staging modules at ./staging; a consumer must pin
# each to the published v0.x.y of the same release instead.
staging_version="v0.${KUBERNETES_VERSION#1.}"
mkdir -p "$work/kube"
cat > "$work/kube/go.mod" <<MOD
module sparkops.local/kubebuild

go 1.26
MOD
cat > "$work/kube/tools.go" <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
( cd "$work/kube"
  go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" > /dev/null
  modfile=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBERNETES_VERSION.mod
  grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}' | while read -r m; do
    go mod edit -replace "$m=$m@$staging_version"
  done
  go mod edit -require "k8s.io/kubernetes@v$KUBERNETES_VERSION"
  go mod tidy -e > /dev/null 2>&1 || true
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION#1.}" \
    -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
)

mkdir -p "$work/etcd"
cat > "$work/etcd/go.mod" <<MOD
module sparkops.local/etcdbuild

go 1.26
MOD
cat > "$work/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
( cd "$work/etcd"
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" > /dev/null 2>&1
  go mod tidy > /dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
)
touch "$out/.complete"
echo "kube: built kube-apiserver, kube-controller-manager, kubectl v$KUBERNETES_VERSION and etcd v$ETCD_VERSION in $(( $(date +%s) - start ))s"
