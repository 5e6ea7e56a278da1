#!/usr/bin/env bash
# Compiles the job's own Spark SQL functions (job_image/jvm) into etl-functions.jar, against the
# Spark SQL API of the version pinned in versions.env (from Maven Central), and prints the jar's
# path. Cached by Spark version and a hash of the sources.
# Usage: build-functions.sh [DEST]   (default: $ETL_CACHE_DIR/etl-functions-<spark>-<hash>)
# Dockerfile.job puts the jar in Spark's jars/; the tests and benchmarks put it on the classpath.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
mapfile -t sources < <(find "$root/job_image/jvm/src/main/java" -name '*.java' | sort)
hash=$(cat "${sources[@]}" | sha256sum | cut -c1-12)
dest=${1:-$cache/etl-functions-$SPARK_VERSION-$hash}
jar=$dest/etl-functions.jar
if [[ -f $jar ]]; then echo "$jar"; exit 0; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mvn -B -q -Dstyle.color=never dependency:copy -DoutputDirectory="$work/lib" \
  -Dartifact="org.apache.spark:spark-sql-api_$SCALA_BINARY_VERSION:$SPARK_VERSION" >&2
javac --release 17 -cp "$work/lib/*" -d "$work/classes" "${sources[@]}" >&2
mkdir -p "$dest"
jar cf "$jar.partial" -C "$work/classes" .
mv "$jar.partial" "$jar"
echo "$jar"
