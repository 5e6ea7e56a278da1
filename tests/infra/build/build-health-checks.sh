#!/usr/bin/env bash
# Builds the two programs that judge an ETLPipeline's health as GitOps tools do, from the Go
# module proxy at the versions pinned in versions.env: argocd-lua (gopher-lua, the interpreter
# Argo CD runs health scripts in) and kstatus (cli-utils' kstatus, as Flux computes it), into
# $ETL_CACHE_DIR/health-checks-lua-<v>-cli-utils-<v>/bin. A finished build is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
sources="$root/tests/infra/health"
# The sources are part of the key: a changed program is rebuilt.
digest=$(cat "$sources"/*/main.go | sha256sum | cut -c1-12)
bin="$cache/health-checks-lua-$GOPHER_LUA_VERSION-cli-utils-$CLI_UTILS_VERSION-$digest/bin"
if [[ -x $bin/argocd-lua && -x $bin/kstatus ]]; then echo "health checks: cached at $bin"; exit 0; fi
start=$(date +%s)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0
rm -rf "$bin.partial"; mkdir -p "$bin.partial"
build() {  # build NAME MODULE@VERSION
  mkdir -p "$work/$1"
  cp "$sources/$1/main.go" "$work/$1/"
  ( cd "$work/$1"
    printf 'module sparkops.local/%s\n\ngo 1.26\n' "$1" > go.mod
    go get "$2" > /dev/null
    go mod tidy > /dev/null
    go build -trimpath -ldflags "-s -w" -o "$bin.partial/$1" . )
}
build argocd-lua "github.com/yuin/gopher-lua@v$GOPHER_LUA_VERSION"
build kstatus "sigs.k8s.io/cli-utils@v$CLI_UTILS_VERSION"
rm -rf "$bin"; mv "$bin.partial" "$bin"
echo "health checks: built in $(( $(date +%s) - start ))s at $bin"
