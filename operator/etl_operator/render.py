"""Rendering one run of an ETLPipeline into the plain-dict manifests the operator creates: the
ConfigMap holding the pipeline JSON, the driver Pod, and (executors > 0) the driver's headless Service.

Pure functions, no I/O. Credentials appear only as `secretKeyRef` references, never as values, and
never in args or Spark conf. A pod template the operator cannot honour is a RenderError naming the
field under `spec.podTemplate`."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from etl_job.contract import (
    API_GROUP,
    API_VERSION,
    KIND,
    ETLPipelineSpec,
    Mode,
    SecretKeyRef,
    secret_env_name,
)
from etl_operator import naming

#: Where the ConfigMap's pipeline.json is mounted; the job runs `etl run` on this file.
PIPELINE_DIR = "/etc/etl/pipeline"
PIPELINE_KEY = "pipeline.json"
PIPELINE_FILE = f"{PIPELINE_DIR}/{PIPELINE_KEY}"
#: Spark's executor pod template, beside the pipeline in the run's ConfigMap (executors > 0).
EXECUTOR_TEMPLATE_KEY = "executor-pod.yaml"
EXECUTOR_TEMPLATE_FILE = f"{PIPELINE_DIR}/{EXECUTOR_TEMPLATE_KEY}"
EXECUTOR_CONTAINER = "executor"
#: An optional ConfigMap of .avsc files is mounted here, listed first in ETL_SCHEMA_DIRS.
SCHEMAS_DIR = "/etc/etl/schemas"
#: The schemas Dockerfile.job ships (its ETL_SCHEMA_DIRS); kept after a mounted schemas ConfigMap.
IMAGE_SCHEMAS_DIR = "/opt/etl/examples/schemas"
#: spark.local.dir: Spark spills shuffle and broadcast files here, so it is an emptyDir. Not /tmp,
#: so it cannot be mistaken for a host path under /tmp when pods run outside a node (tests).
SPARK_LOCAL_DIR = "/var/lib/spark/local"
#: spark-submit only runs Python applications given as a `.py` file, and the `etl` console script is
#: not one. Dockerfile.job pip-installs the package (not editable) into the image's venv
#: (/opt/etl/venv, Python 3.11), so the CLI module the `etl` command runs is this file
#: (Dockerfile.job's SPARK_HOME names the same site-packages); cli.py ends in
#: `raise SystemExit(main())` under `__main__`. PYTHONSAFEPATH=1 in the driver keeps the file's own
#: folder (etl_job/) off sys.path, so its modules (spec, logs, ...) cannot shadow top-level imports.
JOB_ENTRY_POINT = "/opt/etl/venv/lib/python3.11/site-packages/etl_job/cli.py"
#: Spark's log4j2 settings for JSON lines, beside the entry point in the job package
#: (etl_job/runtime/log4j2/json.properties): the driver JVM that spark-submit starts reads them.
JOB_LOG_CONFIG = "runtime/log4j2/json.properties"
K8S_MASTER = "k8s://https://kubernetes.default.svc"
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
#: A batch driver's /metrics (a streaming driver's port is spec.streaming.healthPort).
BATCH_METRICS_PORT = 8080
#: Spark's user in the job image (Dockerfile.job: useradd --uid 185).
SPARK_UID = 185
#: Spark's memoryOverhead: 10% of the heap, at least 384 MiB.
MEMORY_OVERHEAD_FACTOR = 0.10
MEMORY_OVERHEAD_MIN_MIB = 384

_PIPELINE_VOLUME = "etl-pipeline"
_SCHEMAS_VOLUME = "etl-schemas"
_LOCAL_DIR_VOLUME = "spark-local-dir"
_TEMPLATE = "spec.podTemplate"
#: Spark conf keys that hold credentials; those come from Secrets, never from the spec.
_CREDENTIAL_CONF_KEY = re.compile(
    r"(password|passwd|secret|secret[._-]?key|token|jaas[._-]config|private[._-]?key)$", re.IGNORECASE
)


class RenderError(ValueError):
    """The pipeline cannot be rendered into a run; `field` is the path of the value at fault."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class PipelineRef:
    """The ETLPipeline a run belongs to, as the operator observed it."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: ETLPipelineSpec
    #: status.highWaterMark: where the next run of an incremental source starts reading.
    high_water_mark: str | None = None
    #: The run replays the dead letters (`etl replay`) instead of running the pipeline.
    replay: bool = False


@dataclass(frozen=True)
class OperatorDefaults:
    """What the operator supplies where a pipeline's spec says nothing."""

    job_image: str
    service_account: str = "spark-driver"
    image_pull_policy: str = "IfNotPresent"
    #: Where the job writes its metrics JSON; the kubelet turns it into the termination message.
    termination_log: str = "/dev/termination-log"
    #: A ConfigMap of .avsc files in the pipeline's namespace, mounted at SCHEMAS_DIR when it exists.
    schemas_config_map: str | None = None
    job_entry_point: str = JOB_ENTRY_POINT
    #: Put before the driver's command, e.g. ("/usr/bin/tini", "--") to keep the job image's init as
    #: PID 1 (signal forwarding, zombie reaping). Empty: the job is PID 1 and must handle SIGTERM.
    init_command: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunManifests:
    config_map: dict[str, Any]
    pod: dict[str, Any]
    service: dict[str, Any] | None


# --- the run ---------------------------------------------------------------------------------


def render_run(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> RunManifests:
    """The manifests of run number `run`. Raises RenderError for a pod template or Spark conf the
    operator refuses (the error names the field)."""
    check_spark_conf(pipeline.spec.spark.conf)
    pod = driver_pod(pipeline, run, defaults)
    pod = merge_pod_template(pod, pipeline.spec.pod_template)
    service = driver_service(pipeline, run) if pipeline.spec.spark.executors > 0 else None
    return RunManifests(config_map=config_map(pipeline, run), pod=pod, service=service)


def owner_reference(pipeline: PipelineRef) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pipeline: PipelineRef, run: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": naming.run_labels(pipeline.name, run, pipeline.generation),
        "ownerReferences": [owner_reference(pipeline)],
    }


def pipeline_document(pipeline: PipelineRef) -> dict[str, Any]:
    """The job's configuration: the pipeline as an ETLPipeline manifest. Of the status only the
    high-water mark goes in, the one thing a run needs from the runs before it."""
    document: dict[str, Any] = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": pipeline.name, "namespace": pipeline.namespace},
        "spec": pipeline.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    if pipeline.high_water_mark is not None:
        document["status"] = {"highWaterMark": pipeline.high_water_mark}
    return document


def config_map(pipeline: PipelineRef, run: int) -> dict[str, Any]:
    data = {PIPELINE_KEY: json.dumps(pipeline_document(pipeline), indent=2, sort_keys=True)}
    if pipeline.spec.spark.executors > 0:
        template = executor_pod_template(pipeline, run)
        data[EXECUTOR_TEMPLATE_KEY] = json.dumps(template, indent=2, sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(pipeline, run, naming.config_map_name(pipeline.name, run)),
        # A run's configuration never changes; immutable ConfigMaps are not watched by kubelets.
        "immutable": True,
        "data": data,
    }


def executor_pod_template(pipeline: PipelineRef, run: int) -> dict[str, Any]:
    """What Spark starts its executor pods from (spark.kubernetes.executor.podTemplateFile): the
    pipeline's labels, so `kubectl get pods -l etl.sparkops.io/pipeline=NAME` lists them with the
    driver, and the same locked-down security as the driver, which the `restricted` Pod Security
    level requires. Spark adds the image, resources, env and the owner reference to the driver pod."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": naming.executor_labels(pipeline.name, run)},
        "spec": {
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "securityContext": _POD_SECURITY,
            "containers": [{"name": EXECUTOR_CONTAINER, "securityContext": _CONTAINER_SECURITY}],
        },
    }


#: Pod and container security of every pod of a run: what `restricted` Pod Security demands.
_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": SPARK_UID,
    "fsGroup": SPARK_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    # Spark and Python write scratch files outside the mounted local dir too.
    "readOnlyRootFilesystem": False,
}


def driver_service(pipeline: PipelineRef, run: int) -> dict[str, Any]:
    """Headless Service giving executors a stable DNS name for the driver (spark.driver.host)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(pipeline, run, naming.driver_service_name(pipeline.name, run)),
        "spec": {
            "clusterIP": "None",
            "selector": naming.run_labels(pipeline.name, run, pipeline.generation),
            # Executors resolve the name as the driver starts, before any readiness is known.
            "publishNotReadyAddresses": True,
            "ports": [
                {"name": "driver-rpc", "port": DRIVER_PORT, "targetPort": DRIVER_PORT, "protocol": "TCP"},
                {
                    "name": "blockmanager",
                    "port": BLOCK_MANAGER_PORT,
                    "targetPort": BLOCK_MANAGER_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }


# --- the driver pod --------------------------------------------------------------------------


def driver_pod(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> dict[str, Any]:
    """The driver Pod before the pipeline's pod template is merged in."""
    spec = pipeline.spec
    distributed = spec.spark.executors > 0
    volumes: list[dict[str, Any]] = [
        {
            "name": _PIPELINE_VOLUME,
            "configMap": {
                "name": naming.config_map_name(pipeline.name, run),
                "items": [
                    {"key": key, "path": key}
                    for key in (PIPELINE_KEY, *([EXECUTOR_TEMPLATE_KEY] if distributed else []))
                ],
            },
        },
        {"name": _LOCAL_DIR_VOLUME, "emptyDir": {}},
    ]
    if defaults.schemas_config_map:
        volumes.append(
            {"name": _SCHEMAS_VOLUME, "configMap": {"name": defaults.schemas_config_map, "optional": True}}
        )
    pod_spec: dict[str, Any] = {
        # The operator restarts runs (with backoff and a circuit breaker), not the kubelet.
        "restartPolicy": "Never",
        # Thousands of Services in a namespace otherwise make "argument list too long".
        "enableServiceLinks": False,
        # Only a driver that creates executor pods needs the API.
        "automountServiceAccountToken": distributed,
        "serviceAccountName": spec.spark.service_account or defaults.service_account,
        "securityContext": copy.deepcopy(_POD_SECURITY),
        "containers": [driver_container(pipeline, run, defaults)],
        "volumes": volumes,
    }
    if spec.active_deadline_seconds is not None and spec.mode == Mode.batch:
        pod_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(pipeline, run, naming.driver_pod_name(pipeline.name, run)),
        "spec": pod_spec,
    }


def driver_container(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> dict[str, Any]:
    spark = pipeline.spec.spark
    memory = f"{driver_memory_mib(spark.driver.memory)}Mi"
    argv = driver_argv(pipeline, run, defaults)
    mounts = [
        {"name": _PIPELINE_VOLUME, "mountPath": PIPELINE_DIR, "readOnly": True},
        {"name": _LOCAL_DIR_VOLUME, "mountPath": SPARK_LOCAL_DIR},
    ]
    if defaults.schemas_config_map:
        mounts.append({"name": _SCHEMAS_VOLUME, "mountPath": SCHEMAS_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": naming.DRIVER_CONTAINER,
        "image": spark.image or defaults.job_image,
        "imagePullPolicy": defaults.image_pull_policy,
        # command, not just args: the fake kubelet of the tests runs no image entrypoint, and an
        # init from the image is opted into with OperatorDefaults.init_command.
        "command": [*defaults.init_command, argv[0]],
        "args": argv[1:],
        "env": driver_env(pipeline, run, defaults),
        "resources": {
            "requests": {"cpu": str(spark.driver.cores), "memory": memory},
            "limits": {"memory": memory},
        },
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(_CONTAINER_SECURITY),
        "terminationMessagePath": defaults.termination_log,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spark.executors > 0:
        container["ports"] = [
            {"name": "driver-rpc", "containerPort": DRIVER_PORT, "protocol": "TCP"},
            {"name": "blockmanager", "containerPort": BLOCK_MANAGER_PORT, "protocol": "TCP"},
        ]
    # Every driver serves /metrics on the port named as the chart's PodMonitor scrapes it.
    container.setdefault("ports", []).append(
        {"name": "metrics", "containerPort": health_port(pipeline), "protocol": "TCP"}
    )
    if pipeline.spec.mode == "streaming":
        # The job serves /healthz and /readyz (etl_job.streaming): a stalled query is not ready,
        # and a driver that stops answering is restarted by the kubelet. The port also serves
        # /progress, which the operator reads.
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        }
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            # The JVM and the query take a while to start on a small node.
            "initialDelaySeconds": 60,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }
    return container


def spark_master(pipeline: PipelineRef) -> str:
    spark = pipeline.spec.spark
    return K8S_MASTER if spark.executors > 0 else f"local[{spark.driver.cores}]"


def driver_argv(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> list[str]:
    """What the driver container runs: `etl run` in local mode, else `spark-submit` of the job."""
    spark = pipeline.spec.spark
    command = "replay" if pipeline.replay else "run"
    if spark.executors == 0:
        return [
            "etl",
            command,
            PIPELINE_FILE,
            "--master",
            spark_master(pipeline),
            "--termination-log",
            defaults.termination_log,
        ]
    submit = [
        "spark-submit",
        "--master",
        K8S_MASTER,
        "--deploy-mode",
        "client",
        "--name",
        naming.driver_pod_name(pipeline.name, run),
    ]
    for key, value in submit_conf(pipeline, run, defaults).items():
        submit += ["--conf", f"{key}={value}"]
    # An empty --master: the session takes the master spark-submit set up.
    job = [command, PIPELINE_FILE, "--master", "", "--termination-log", defaults.termination_log]
    return [*submit, defaults.job_entry_point, *job]


def submit_conf(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> dict[str, str]:
    """spark-submit's --conf for client mode on Kubernetes: the operator's keys, then spec.spark.conf."""
    spark = pipeline.spec.spark
    service = naming.driver_service_name(pipeline.name, run)
    owned = {
        "spark.kubernetes.namespace": pipeline.namespace,
        "spark.kubernetes.driver.pod.name": naming.driver_pod_name(pipeline.name, run),
        "spark.driver.host": f"{service}.{pipeline.namespace}.svc",
        # Kubernetes expands $(POD_IP) from the container's env: bind to the pod's own address.
        "spark.driver.bindAddress": "$(POD_IP)",
        "spark.driver.port": str(DRIVER_PORT),
        "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.kubernetes.container.image": spark.image or defaults.job_image,
        "spark.kubernetes.container.image.pullPolicy": defaults.image_pull_policy,
        "spark.kubernetes.authenticate.driver.serviceAccountName": spark.service_account
        or defaults.service_account,
        "spark.executor.instances": str(spark.executors),
        "spark.executor.cores": str(spark.executor.cores),
        "spark.executor.memory": f"{spark_memory_mib(spark.executor.memory)}m",
        "spark.driver.cores": str(spark.driver.cores),
        "spark.driver.memory": f"{spark_memory_mib(spark.driver.memory)}m",
        "spark.local.dir": SPARK_LOCAL_DIR,
        "spark.pyspark.python": "python3",
        "spark.kubernetes.executor.podTemplateFile": EXECUTOR_TEMPLATE_FILE,
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER,
    }
    conf = {**owned, **spark.conf}
    log_config = (
        f"-Dlog4j2.configurationFile=file:{PurePosixPath(defaults.job_entry_point).parent / JOB_LOG_CONFIG}"
    )
    # Before the spec's own options, so a -Dlog4j2.configurationFile there wins.
    java_options = conf.get("spark.driver.extraJavaOptions")
    conf["spark.driver.extraJavaOptions"] = f"{log_config} {java_options}" if java_options else log_config
    return conf


def health_port(pipeline: PipelineRef) -> int:
    """The port of the driver's /metrics (and a streaming driver's probes and /progress)."""
    streaming = pipeline.spec.streaming
    if pipeline.spec.mode == "streaming" and streaming is not None:
        return streaming.health_port
    return BATCH_METRICS_PORT


def driver_env(pipeline: PipelineRef, run: int, defaults: OperatorDefaults) -> list[dict[str, Any]]:
    spark = pipeline.spec.spark
    env: list[dict[str, Any]] = [
        {"name": "ETL_TERMINATION_LOG", "value": defaults.termination_log},
        {"name": "ETL_RUN_ID", "value": naming.run_name(pipeline.name, run)},
        # The run's labels on every log line of the driver (etl_job.runtime.logs), JSON in pods.
        {"name": "ETL_PIPELINE", "value": pipeline.name},
        {"name": "ETL_GENERATION", "value": str(pipeline.generation)},
        {"name": "ETL_TRACE_ID", "value": naming.trace_id(pipeline.uid, run)},
        {"name": "ETL_LOG_FORMAT", "value": "json"},
        {"name": "ETL_SPARK_MASTER", "value": spark_master(pipeline)},
        {"name": "ETL_HEALTH_PORT", "value": str(health_port(pipeline))},
        # The launcher reads it for the driver JVM's heap (local mode has no spark.driver.memory).
        {"name": "SPARK_DRIVER_MEMORY", "value": f"{spark_memory_mib(spark.driver.memory)}m"},
        {"name": "SPARK_LOCAL_DIRS", "value": SPARK_LOCAL_DIR},
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("POD_IP", "status.podIP"),
    ]
    if spark.executors > 0:
        env.append({"name": "PYTHONSAFEPATH", "value": "1"})
    if defaults.schemas_config_map:
        env.append({"name": "ETL_SCHEMA_DIRS", "value": f"{SCHEMAS_DIR}:{IMAGE_SCHEMAS_DIR}"})
    env += secret_env(pipeline.spec.secret_refs())
    return env


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


# --- credentials -----------------------------------------------------------------------------


def secret_env(refs: list[SecretKeyRef]) -> list[dict[str, Any]]:
    """One `secretKeyRef` env var per distinct Secret key, in the order the spec names them."""
    env: dict[str, dict[str, Any]] = {}
    for ref in refs:
        name = secret_env_name(ref)
        env.setdefault(
            name, {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    return list(env.values())


#: Conf keys the operator sets from the spec or the run, and the field to use instead.
OPERATOR_CONF: Mapping[str, str] = {
    "spark.master": "set by the operator from spec.spark.executors",
    "spark.submit.deployMode": "set by the operator",
    "spark.kubernetes.namespace": "set by the operator",
    "spark.kubernetes.driver.pod.name": "set by the operator",
    "spark.driver.host": "set by the operator",
    "spark.driver.bindAddress": "set by the operator",
    "spark.driver.port": "set by the operator",
    "spark.driver.blockManager.port": "set by the operator",
    "spark.kubernetes.container.image": "set spec.spark.image instead",
    "spark.kubernetes.container.image.pullPolicy": "set by the operator",
    "spark.kubernetes.authenticate.driver.serviceAccountName": "set spec.spark.serviceAccount instead",
    "spark.executor.instances": "set spec.spark.executors instead",
    "spark.executor.cores": "set spec.spark.executor.cores instead",
    "spark.executor.memory": "set spec.spark.executor.memory instead",
    "spark.driver.cores": "set spec.spark.driver.cores instead",
    "spark.driver.memory": "set spec.spark.driver.memory instead",
    "spark.local.dir": "set by the operator",
    "spark.pyspark.python": "set by the operator",
    "spark.kubernetes.executor.podTemplateFile": "set by the operator; use spec.podTemplate for the driver",
    "spark.kubernetes.executor.podTemplateContainerName": "set by the operator",
}


def check_spark_conf(conf: Mapping[str, str]) -> None:
    """Refuse conf keys the operator owns, and keys that would carry a credential in plain text."""
    for key in conf:
        field = f'spec.spark.conf["{key}"]'
        if key in OPERATOR_CONF:
            raise RenderError(field, OPERATOR_CONF[key])
        if _CREDENTIAL_CONF_KEY.search(key):
            raise RenderError(
                field,
                "looks like a credential; Spark conf shows up in pod specs and events, so give it to the"
                " driver as an env var from a Secret (spec.podTemplate, secretKeyRef)",
            )


# --- memory ----------------------------------------------------------------------------------

_SPARK_MEMORY = re.compile(r"([0-9]+)([kmgtKMGT]?)")
_MIB_PER_UNIT = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}


def spark_memory_mib(memory: str) -> int:
    """A Spark memory setting in MiB; like Spark, a bare number means MiB."""
    parsed = _SPARK_MEMORY.fullmatch(memory)
    if parsed is None:
        raise RenderError("spec.spark", f"{memory!r} is not a Spark memory size such as 512m or 2g")
    return max(1, math.ceil(int(parsed[1]) * _MIB_PER_UNIT[parsed[2].lower()]))


def driver_memory_mib(memory: str) -> int:
    """The driver's heap plus Spark's memoryOverhead: what the pod requests and is limited to."""
    heap = spark_memory_mib(memory)
    return heap + max(int(heap * MEMORY_OVERHEAD_FACTOR), MEMORY_OVERHEAD_MIN_MIB)


# --- the pod template ------------------------------------------------------------------------

#: Pod fields the template may not change, and why.
_PROTECTED_POD_FIELDS = {
    "restartPolicy": "the operator restarts runs, so the pod's restartPolicy is Never",
    "serviceAccountName": "set spec.spark.serviceAccount instead",
    "serviceAccount": "set spec.spark.serviceAccount instead",
    "activeDeadlineSeconds": "set spec.activeDeadlineSeconds instead",
}
_PROTECTED_DRIVER_FIELDS = {
    "image": "set spec.spark.image instead",
    "command": "the operator runs the job",
    "args": "the operator runs the job",
    "terminationMessagePath": "the operator reads the run's metrics from it",
}
#: List fields of the pod spec and of the driver container that the template extends.
_POD_LIST_FIELDS = frozenset(
    {
        "volumes",
        "initContainers",
        "tolerations",
        "imagePullSecrets",
        "topologySpreadConstraints",
        "hostAliases",
        "readinessGates",
        "resourceClaims",
        "schedulingGates",
    }
)
_APPENDED_CONTAINER_FIELDS = frozenset({"env", "envFrom", "volumeMounts", "volumeDevices", "ports"})


def merge_pod_template(pod: dict[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """`pod` with the pipeline's pod template merged in (a new dict; `pod` is not changed).

    metadata.labels and annotations are added (the operator's labels win). In spec, lists
    (volumes, tolerations, imagePullSecrets, ...) are appended, other values set; the container
    named `driver` is merged into the driver (lists appended, securityContext merged, the rest
    set) and other containers are added as sidecars. Raises RenderError for a protected field, a
    weakened security setting, a duplicate name or a malformed template."""
    merged = copy.deepcopy(pod)
    template = copy.deepcopy(dict(_mapping(template, _TEMPLATE)))
    for key in template:
        if key not in ("metadata", "spec"):
            raise RenderError(f"{_TEMPLATE}.{key}", "a pod template has only metadata and spec")
    _merge_metadata(merged["metadata"], _mapping(template.get("metadata", {}), f"{_TEMPLATE}.metadata"))
    _merge_spec(merged["spec"], _mapping(template.get("spec", {}), f"{_TEMPLATE}.spec"))
    return merged


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RenderError(path, f"expected an object, not {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise RenderError(path, f"expected a list, not {type(value).__name__}")
    return value


def _string_map(value: Any, path: str) -> dict[str, str]:
    mapping = _mapping(value, path)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise RenderError(f"{path}.{key}", f"expected a string, not {type(item).__name__}")
    return dict(mapping)


def _merge_metadata(metadata: dict[str, Any], template: Mapping[str, Any]) -> None:
    path = f"{_TEMPLATE}.metadata"
    for key, value in template.items():
        if key not in ("labels", "annotations"):
            raise RenderError(f"{path}.{key}", "only labels and annotations can be set on the driver pod")
        extra = _string_map(value, f"{path}.{key}")
        metadata[key] = {**extra, **metadata.get(key, {})}


def _merge_spec(spec: dict[str, Any], template: Mapping[str, Any]) -> None:
    path = f"{_TEMPLATE}.spec"
    for key, value in template.items():
        field = f"{path}.{key}"
        if key in _PROTECTED_POD_FIELDS:
            if value != spec.get(key):
                raise RenderError(field, _PROTECTED_POD_FIELDS[key])
        elif key == "containers":
            _merge_containers(spec, _list(value, field), field)
        elif key in ("volumes", "initContainers"):
            spec[key] = _append_named(spec.get(key, []), _list(value, field), field)
        elif key == "securityContext":
            spec[key] = {**spec.get(key, {}), **_mapping(value, field)}
            _check_security_context(spec[key], field, pod_level=True)
        elif key in _POD_LIST_FIELDS or isinstance(spec.get(key), list) or isinstance(value, list):
            spec[key] = [*spec.get(key, []), *_list(value, field)]
        else:
            spec[key] = value


def _merge_containers(spec: dict[str, Any], containers: list[Any], path: str) -> None:
    """The `driver` entry is merged into the driver; the others are added as sidecars."""
    _check_names(containers, path, set())
    for index, container in enumerate(containers):
        if container["name"] == naming.DRIVER_CONTAINER:
            _merge_driver(spec["containers"][0], container, f"{path}[{index}]")
        else:
            spec["containers"].append(container)


def _append_named(existing: list[Any], entries: list[Any], path: str) -> list[Any]:
    """`existing` + `entries`, each entry named, no name used twice."""
    _check_names(entries, path, {entry["name"] for entry in existing})
    return [*existing, *entries]


def _merge_driver(driver: dict[str, Any], template: Mapping[str, Any], path: str) -> None:
    own_env = {entry["name"] for entry in driver["env"]}
    own_mounts = {mount["mountPath"] for mount in driver["volumeMounts"]}
    for key, value in template.items():
        field = f"{path}.{key}"
        if key == "name":
            continue
        if key in _PROTECTED_DRIVER_FIELDS:
            raise RenderError(field, _PROTECTED_DRIVER_FIELDS[key])
        if key in _APPENDED_CONTAINER_FIELDS:
            driver[key] = [*driver.get(key, []), *_list(value, field)]
        elif key == "securityContext":
            driver[key] = {**driver.get(key, {}), **_mapping(value, field)}
            _check_security_context(driver[key], field, pod_level=False)
        else:
            driver[key] = value
    _check_names(list(template.get("env", [])), f"{path}.env", own_env)
    for index, mount in enumerate(template.get("volumeMounts", [])):
        if isinstance(mount, Mapping) and mount.get("mountPath") in own_mounts:
            raise RenderError(f"{path}.volumeMounts[{index}].mountPath", "used by the operator")


def _check_security_context(context: Mapping[str, Any], path: str, pod_level: bool) -> None:
    """The merged securityContext keeps the driver non-root and unprivileged."""
    if context.get("runAsNonRoot") is False:
        raise RenderError(f"{path}.runAsNonRoot", "the driver runs as non-root; it cannot be false")
    if context.get("runAsUser") == 0:
        raise RenderError(f"{path}.runAsUser", "the driver runs as non-root; user 0 is root")
    seccomp = context.get("seccompProfile")
    if isinstance(seccomp, Mapping) and seccomp.get("type") == "Unconfined":
        raise RenderError(f"{path}.seccompProfile.type", "the driver runs under a seccomp profile")
    if pod_level:
        return
    if context.get("privileged") is True:
        raise RenderError(f"{path}.privileged", "the driver is not privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        raise RenderError(f"{path}.allowPrivilegeEscalation", "the driver allows no privilege escalation")
    capabilities = context.get("capabilities")
    if not isinstance(capabilities, Mapping) or "ALL" not in (capabilities.get("drop") or []):
        raise RenderError(f"{path}.capabilities.drop", "the driver drops all capabilities")


def _check_names(entries: list[Any], path: str, taken: set[str]) -> None:
    seen = set(taken)
    for index, entry in enumerate(entries):
        field = f"{path}[{index}]"
        name = _mapping(entry, field).get("name")
        if not isinstance(name, str) or not name:
            raise RenderError(f"{field}.name", "every entry needs a name")
        if name in seen:
            raise RenderError(f"{field}.name", f"{name!r} is already used")
        seen.add(name)
