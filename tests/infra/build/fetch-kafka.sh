#!/usr/bin/env bash
# Resolves the Kafka broker (org.apache.kafka:kafka_2.13 at the version pinned in versions.env)
# and its runtime dependencies from Maven Central into $ETL_CACHE_DIR/kafka-<version>/libs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
dest="$cache/kafka-$KAFKA_VERSION/libs"
if [[ -f $dest/.complete ]]; then echo "kafka: cached at $dest"; exit 0; fi
start=$(date +%s)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.sparkops</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.17</version></dependency>
  </dependencies>
</project>
POM
mkdir -p "$dest.partial"
mvn -B -q -f "$work/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dest.partial" -DincludeScope=runtime \
  -DexcludeArtifactIds=log4j-slf4j2-impl,slf4j-reload4j,slf4j-log4j12
rm -rf "$dest"; mv "$dest.partial" "$dest"; touch "$dest/.complete"
echo "kafka: resolved $KAFKA_VERSION into $dest in $(( $(date +%s) - start ))s"
