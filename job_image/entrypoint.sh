#!/usr/bin/env bash
# The job image's entry point, run under tini (Dockerfile.job). Spark's Kubernetes backend starts
# executor pods with the argument `executor` and their settings in SPARK_* environment variables;
# this starts the executor JVM the way Apache Spark's own image does
# (resource-managers/kubernetes/docker/src/main/dockerfiles/spark/entrypoint.sh). `driver` runs
# spark-submit in client mode as Spark's image does; the operator's driver pods name their own
# command instead. Anything else (`etl run ...`, `spark-submit ...`, `python3 ...`) runs as given.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME is not set (Dockerfile.job sets it)}"

# An arbitrary uid (OpenShift-style) has no passwd entry, and the JVM and Hadoop want a user
# name. The root filesystem is read-only, so the name comes from the environment instead.
if ! getent passwd "$(id -u)" >/dev/null; then
  export SPARK_USER=${SPARK_USER:-${SPARK_USER_NAME:-anonymous}} HADOOP_USER_NAME=${HADOOP_USER_NAME:-spark}
fi

spark_classpath() {
  local classpath="${SPARK_HOME}/jars/*"
  [[ -n ${SPARK_CLASSPATH:-} ]] && classpath="$SPARK_CLASSPATH:$classpath"
  [[ -n ${SPARK_EXTRA_CLASSPATH:-} ]] && classpath="$classpath:$SPARK_EXTRA_CLASSPATH"
  [[ -n ${HADOOP_CONF_DIR:-} ]] && classpath="$HADOOP_CONF_DIR:$classpath"
  classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$classpath"
  [[ -n ${SPARK_DIST_CLASSPATH:-} ]] && classpath="$classpath:$SPARK_DIST_CLASSPATH"
  echo "$classpath"
}

# require ROLE VARIABLE...: stop with the first variable Spark's backend should have set and did not.
require() {
  local role=$1 name
  shift
  for name in "$@"; do
    if [[ -z ${!name:-} ]]; then
      echo "entrypoint: $role: $name is not set (Spark's Kubernetes backend sets it in $role pods)" >&2
      exit 64
    fi
  done
}

case "${1:-}" in
  executor)
    shift
    require executor SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_APPLICATION_ID \
      SPARK_EXECUTOR_POD_IP SPARK_EXECUTOR_MEMORY
    # The driver passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
    java_opts=()
    while IFS= read -r line; do java_opts+=("${line#*=}"); done < <(
      env | grep '^SPARK_JAVA_OPT_[0-9]*=' | sort -t_ -k4 -n || true
    )
    java=java
    [[ -n ${JAVA_HOME:-} ]] && java=$JAVA_HOME/bin/java
    cmd=(
      "$java" "${java_opts[@]}"
      "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY"
      -cp "$(spark_classpath)"
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
      --driver-url "$SPARK_DRIVER_URL"
      --executor-id "$SPARK_EXECUTOR_ID"
      --cores "$SPARK_EXECUTOR_CORES"
      --app-id "$SPARK_APPLICATION_ID"
      --hostname "$SPARK_EXECUTOR_POD_IP"
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}"
      --podName "${SPARK_EXECUTOR_POD_NAME:-$HOSTNAME}"
    )
    ;;
  driver)
    shift
    require driver SPARK_DRIVER_BIND_ADDRESS
    cmd=("$SPARK_HOME/bin/spark-submit" --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS"
      --deploy-mode client "$@")
    ;;
  "")
    cmd=(etl --help)
    ;;
  *)
    cmd=("$@")
    ;;
esac

# ETL_ENTRYPOINT_DRY_RUN=1 prints the command instead of running it, one argument a line: what the
# image's tests check the executor's command with.
if [[ ${ETL_ENTRYPOINT_DRY_RUN:-} == 1 ]]; then
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
