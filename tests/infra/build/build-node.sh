#!/usr/bin/env bash
# Builds what a real node adds to the control plane of build-kube.sh, at the versions pinned in
# versions.env: kubelet, kube-proxy and kube-scheduler (the same Kubernetes release), containerd 2
# with its runc shim and ctr, crictl, CoreDNS, and the pause program of the pod sandbox image.
# Output goes to $ETL_CACHE_DIR/node-<k8s>-containerd-<v>-coredns-<v>/bin; each part is built only
# when its programs are missing, and a finished build is reused.
#
# containerd comes from the Go module proxy rather than Debian: Debian's 1.6 is a containerd major
# that this Kubernetes release no longer supports, and kubelets keep to containerd 2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
out="$cache/node-$KUBERNETES_VERSION-containerd-$CONTAINERD_VERSION-coredns-$COREDNS_VERSION"
bin="$out/bin"
wanted=(kubelet kube-proxy kube-scheduler containerd containerd-shim-runc-v2 ctr crictl coredns pause)
# has PROGRAM...: all of them are built already.
has() { local p; for p in "$@"; do [[ -x $bin/$p ]] || return 1; done; }
if has "${wanted[@]}"; then
  echo "node: cached at $bin"; exit 0
fi
start=$(date +%s)
mkdir -p "$bin"
work=$(mktemp -d); trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0

# Kubernetes: the node's programs from the same module and staging pins as build-kube.sh.
staging_version="v0.${KUBERNETES_VERSION#1.}"
mkdir -p "$work/kube"
cat > "$work/kube/go.mod" <<MOD
module sparkops.local/nodebuild

go 1.26
MOD
cat > "$work/kube/tools.go" <<'GO'
//go:build tools

package nodebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
has kubelet kube-proxy kube-scheduler pause || ( cd "$work/kube"
  go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" > /dev/null
  modfile=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBERNETES_VERSION.mod
  grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}' | while read -r m; do
    go mod edit -replace "$m=$m@$staging_version"
  done
  go mod edit -require "k8s.io/kubernetes@v$KUBERNETES_VERSION"
  go mod tidy -e > /dev/null 2>&1 || true
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION#1.}" \
    -o "$bin/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler
  # The pod sandbox's pause program, from the same release's source, linked statically.
  kube_src=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -o "$bin/pause" -DVERSION="\"$KUBERNETES_VERSION\"" "$kube_src/build/pause/linux/pause.c"
)

# containerd 2 and its runc shim, built inside a copy of the released module (its own go.mod).
has containerd containerd-shim-runc-v2 ctr || (
  dir=$(cd "$work" && GOFLAGS= go mod download -json "github.com/containerd/containerd/v2@v$CONTAINERD_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  cp -r "$dir" "$work/containerd"; chmod -R u+w "$work/containerd"; cd "$work/containerd"
  go build -trimpath -tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
    -o "$bin/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr
)

# CoreDNS with its default plugin set (core/plugin/zplugin.go is part of the module).
has coredns || (
  dir=$(cd "$work" && GOFLAGS= go mod download -json "github.com/coredns/coredns@v$COREDNS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  cp -r "$dir" "$work/coredns"; chmod -R u+w "$work/coredns"; cd "$work/coredns"
  go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .
)

# crictl: the node's clean-up removes pods through the runtime with it, so CNI releases them.
has crictl || (
  dir=$(cd "$work" && GOFLAGS= go mod download -json "sigs.k8s.io/cri-tools@v$CRICTL_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  cp -r "$dir" "$work/cri-tools"; chmod -R u+w "$work/cri-tools"; cd "$work/cri-tools"
  go build -trimpath -ldflags "-s -w" -o "$bin/crictl" ./cmd/crictl
)

for program in "${wanted[@]}"; do [[ -x $bin/$program ]] || { echo "node: $program was not built" >&2; exit 1; }; done
echo "node: built ${wanted[*]} in $(( $(date +%s) - start ))s"
