#!/usr/bin/env bash
# Makes sure a Docker daemon answers `docker info`: reuses a running one, else starts Debian's
# dockerd (installed by .ci/install-system-packages.sh --images) in the background and waits for it.
# The daemon gets no bridge, no iptables rules and no masquerading, so containers reach nothing but
# what a test hands them (`--network none`, or the host's loopback with `--network host`); image
# builds use `docker build --network host` for Debian's and PyPI's servers.
# Prints where the daemon's log is. Usage: dockerd.sh
set -euo pipefail
state=${ETL_DOCKERD_DIR:-${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}/dockerd}
log=$state/dockerd.log
if docker info >/dev/null 2>&1; then
  if [[ -f $log ]]; then echo "dockerd: running, log in $log"; else echo "dockerd: running (not started here)"; fi
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd: not installed (run .ci/install-system-packages.sh --images)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "dockerd: not running, and starting it needs root" >&2; exit 1; }
mkdir -p "$state"
# A pid file left by a daemon that died would stop the new one from starting.
if [[ -f $state/dockerd.pid ]] && ! kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null; then
  rm -f "$state/dockerd.pid"
fi
# cgroupfs: there is no systemd to delegate cgroups to. setsid: the daemon outlives this shell and
# make's process group. --ip-forward=false: builds and tests use the host's or no network, so the
# daemon has no reason to turn on the machine's packet forwarding.
setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
  --exec-opt native.cgroupdriver=cgroupfs --storage-driver=overlay2 \
  --pidfile "$state/dockerd.pid" >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "dockerd: started, log in $log"; exit 0; fi
  if ! kill -0 $! 2>/dev/null; then break; fi
  sleep 0.5
done
echo "dockerd: did not come up; the end of $log:" >&2
tail -n 20 "$log" >&2
exit 1
