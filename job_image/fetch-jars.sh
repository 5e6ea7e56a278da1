#!/usr/bin/env bash
# Resolves the Spark connector jars pinned in versions.env (Kafka, Avro, S3A with the AWS SDK it declares,
# PostgreSQL and MariaDB JDBC) from Maven Central into one folder, with their runtime
# dependencies minus what the Spark distribution already ships.
# Usage: fetch-jars.sh [DEST]   (default: $ETL_CACHE_DIR/spark-jars-<spark>-<hadoop>)
# Dockerfile.job and the test harness both call it, so the image and the tests use the same jars.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"
cache=${ETL_CACHE_DIR:-$HOME/.cache/sparkops-etl}
dest=${1:-$cache/spark-jars-$SPARK_VERSION-$HADOOP_VERSION}
if [[ -f $dest/.complete ]]; then echo "spark jars: cached at $dest"; exit 0; fi
start=$(date +%s)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
s=$SCALA_BINARY_VERSION
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.sparkops</groupId><artifactId>job-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.spark</groupId><artifactId>spark-sql-kafka-0-10_$s</artifactId><version>$SPARK_VERSION</version></dependency>
    <dependency><groupId>org.apache.spark</groupId><artifactId>spark-avro_$s</artifactId><version>$SPARK_VERSION</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-aws</artifactId><version>$HADOOP_VERSION</version></dependency>
    <dependency><groupId>org.postgresql</groupId><artifactId>postgresql</artifactId><version>$POSTGRESQL_JDBC_VERSION</version></dependency>
    <dependency><groupId>org.mariadb.jdbc</groupId><artifactId>mariadb-java-client</artifactId><version>$MARIADB_JDBC_VERSION</version></dependency>
  </dependencies>
</project>
POM
mkdir -p "$dest.partial"
# Spark and Hadoop's own jars, and anything they already bundle, come with the Spark
# distribution (pyspark's jars/); only what it lacks is copied.
mvn -B -q -f "$work/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$dest.partial" -DincludeScope=runtime \
  -DexcludeGroupIds=org.apache.hadoop.thirdparty,org.scala-lang,org.slf4j,com.google.code.findbugs,org.xerial.snappy,org.lz4,com.github.luben,commons-logging \
  -DexcludeArtifactIds=hadoop-client-api,hadoop-client-runtime,hadoop-common,hadoop-annotations,spark-tags_$s,xz
rm -rf "$dest"; mv "$dest.partial" "$dest"; touch "$dest/.complete"
echo "spark jars: resolved into $dest in $(( $(date +%s) - start ))s"
