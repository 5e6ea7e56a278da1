#!/usr/bin/env bash
# Builds the platform's two images, sparkops-etl/job and sparkops-etl/operator, tagged with the
# version in pyproject.toml, on a local Debian base made by debootstrap (no registry needed).
# Cached by content: each image's build context is exactly the files its Dockerfile reads, packed
# reproducibly; its hash (with the base image's id and the build arguments) is the image's
# io.sparkops.content-hash label and a second tag, and a build whose hash has an image is skipped.
# Prints the images' names. Usage: build-images.sh [job] [operator]   (default: both)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=/dev/null
source versions.env
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)
[[ -n $version ]] || { echo "build-images: no version in pyproject.toml" >&2; exit 1; }

job_image/dockerd.sh >&2
base=${ETL_BASE_IMAGE:-$(job_image/base-image.sh)}
logs=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}/image-builds
mkdir -p "$logs"
base_id=$(docker image inspect -f '{{.Id}}' "$base")

# Certificate authorities this machine added to Debian's (/usr/local/share/ca-certificates): a
# network that inspects TLS needs them for the builds' downloads from PyPI and Maven Central.
build_ca_certs=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)

# The files each Dockerfile copies; the context holds these and nothing else.
common=(pyproject.toml constraints.txt README.md versions.env job_image/etl_job operator/etl_operator)
job_files=(Dockerfile.job "${common[@]}" job_image/fetch-jars.sh job_image/build-functions.sh
  job_image/jvm job_image/entrypoint.sh examples)
operator_files=(Dockerfile.operator "${common[@]}")

# context NAME FILE...: a reproducible tar of the files (no caches, no run output, fixed owners and
# times), so the same sources always hash the same.
context() {
  tar -c --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=go-w \
    --exclude=__pycache__ --exclude='*.pyc' --exclude=examples/output --exclude='*.egg-info' "$@"
}

build() {
  local name=$1 dockerfile=$2; shift 2
  local image=sparkops-etl/$name args hash existing start
  args=(--build-arg "BASE_IMAGE=$base" --build-arg "PYTHON_VERSION=$PYTHON_VERSION")
  [[ -n $build_ca_certs ]] && args+=(--build-arg "BUILD_CA_CERTS=$build_ca_certs")
  [[ $name == job ]] && args+=(--build-arg "SPARK_VERSION=$SPARK_VERSION")
  hash=$( { context "$@" | sha256sum; echo "$base_id ${args[*]}"; } | sha256sum | cut -c1-16)
  existing=$(docker images -q --filter "label=io.sparkops.content-hash=$hash" "$image" | head -n1)
  if [[ -n $existing ]]; then
    # Same content: only make sure both tags point at it (a version tag may have moved).
    docker tag "$existing" "$image:$version"; docker tag "$existing" "$image:$hash"
    echo "$name image: cached ($hash)" >&2
  else
    start=$(date +%s)
    echo "$name image: building ($hash), log in $logs/$name.log ..." >&2
    # Host networking for Debian's, PyPI's and Maven Central's servers; the daemon has no bridge.
    # The classic builder: Debian's daemon has no BuildKit front end for this client.
    if ! context "$@" | DOCKER_BUILDKIT=0 docker build --network host --force-rm -f "$dockerfile" \
      "${args[@]}" --label "io.sparkops.content-hash=$hash" \
      --label "org.opencontainers.image.version=$version" \
      --label "org.opencontainers.image.title=sparkops-etl-$name" \
      -t "$image:$version" -t "$image:$hash" - >"$logs/$name.log" 2>&1; then
      echo "$name image: build failed; the end of $logs/$name.log:" >&2
      tail -n 30 "$logs/$name.log" >&2
      exit 1
    fi
    echo "$name image: built in $(( $(date +%s) - start ))s" >&2
    # The image this one replaces (another content hash) is not kept: a job image is 1-2 GB.
    docker images --format '{{.Repository}}:{{.Tag}}' "$image" | grep -E ":[0-9a-f]{16}$" \
      | grep -v ":$hash$" | xargs -r docker rmi >/dev/null 2>&1 || true
  fi
  echo "$image:$version"
}

wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(job operator)
for name in "${wanted[@]}"; do
  case $name in
    job) build job Dockerfile.job "${job_files[@]}" ;;
    operator) build operator Dockerfile.operator "${operator_files[@]}" ;;
    *) echo "build-images: no image named $name (job, operator)" >&2; exit 2 ;;
  esac
done
