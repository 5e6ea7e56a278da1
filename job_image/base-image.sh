#!/usr/bin/env bash
# Makes the local base image sparkops-etl/debian:bookworm with debootstrap, for machines that reach
# Debian's package servers but no container registry (Dockerfile.job and Dockerfile.operator take
# it as BASE_IMAGE; with a registry, their default debian:bookworm-slim serves the same purpose).
# The image is its own cache: it is made again only when missing or when this script changed (the
# script's hash is the image's io.sparkops.content-hash label). Prints the image's name.
# Usage: base-image.sh   (needs root and a running Docker daemon: job_image/dockerd.sh)
set -euo pipefail
image=${ETL_BASE_IMAGE:-sparkops-etl/debian:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
hash=$(sha256sum "$0" | cut -c1-16)
label=$(docker image inspect -f '{{index .Config.Labels "io.sparkops.content-hash"}}' "$image" 2>/dev/null || true)
if [[ $label == "$hash" ]]; then echo "$image"; exit 0; fi
[[ $(id -u) -eq 0 ]] || { echo "base image: debootstrap needs root" >&2; exit 1; }
start=$(date +%s)
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
echo "base image: debootstrap bookworm from $mirror (log in $root/debootstrap/debootstrap.log while it runs)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# As the official debian:bookworm-slim: no package lists, no docs or man pages kept by later
# installs, no downloaded packages kept after an install, and apt that does not pull recommended
# packages.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/*
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$root/etc/apt/apt.conf.d/docker-norecommends"
# Downloaded packages and apt's binary caches do not stay in the layer that installed them.
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  "$mirror" "$mirror" > "$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import \
  --change "LABEL io.sparkops.content-hash=$hash" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base image: $image made in $(( $(date +%s) - start ))s" >&2
echo "$image"
