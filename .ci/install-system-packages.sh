#!/usr/bin/env bash
# Installs the Debian packages the project needs and the machine may lack: a Java runtime for
# Spark and Kafka, Maven to resolve jars, Go to build the control plane, and the PostgreSQL and
# MariaDB servers the tests start, and (--images, implied by --tests and --node) the Docker daemon
# and debootstrap that job_image/build-images.sh builds the images with, and (--node, implied by
# --tests) what the real node runs on: runc, the CNI plugins, iptables and conntrack for kube-proxy.
# Does nothing for what is already there.
# Usage: install-system-packages.sh [--tests | --images | --node]
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
[[ ${1:-} == --tests || ${1:-} == --images || ${1:-} == --node ]] && {
  # Debian's daemon (docker.io); the client may already be installed without one.
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
}
[[ ${1:-} == --tests || ${1:-} == --node ]] && {
  command -v go >/dev/null || need+=(golang-go)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || need+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || [[ -x /usr/sbin/iptables ]] || need+=(iptables)
  command -v conntrack >/dev/null || [[ -x /usr/sbin/conntrack ]] || need+=(conntrack)
}
[[ ${1:-} == --tests ]] && {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
  command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || need+=(mariadb-server)
}
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "missing system packages: ${need[*]} (run as root, or install them with apt-get)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Installing a server package must not start its service: the tests start their own instances
# (and job_image/dockerd.sh its own daemon, without Docker's bridge and iptables rules).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
