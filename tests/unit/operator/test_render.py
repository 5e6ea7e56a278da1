"""A run renders into a ConfigMap, a locked-down driver Pod and (with executors) a headless Service;
credentials only as secretKeyRef; the pod template merged in, protected fields refused by name."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from etl_job.contract import ETLPipeline, ETLPipelineSpec, SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_operator import naming
from etl_operator.render import (
    OPERATOR_CONF,
    OperatorDefaults,
    PipelineRef,
    RenderError,
    driver_container,
    driver_memory_mib,
    merge_pod_template,
    render_run,
    spark_memory_mib,
    submit_conf,
)

DEFAULTS = OperatorDefaults(job_image="registry.local/etl-job:1.0", service_account="spark-driver")
OWNER = {
    "apiVersion": "etl.sparkops.io/v1alpha1",
    "kind": "ETLPipeline",
    "name": "user-summary",
    "uid": "uid-1234",
    "controller": True,
    "blockOwnerDeletion": True,
}
LABELS = {
    "etl.sparkops.io/pipeline": "user-summary",
    "etl.sparkops.io/run": "7",
    "etl.sparkops.io/generation": "3",
    "app.kubernetes.io/managed-by": "sparkops-etl",
    "app.kubernetes.io/component": "driver",
}


def _spec(**overrides: Any) -> ETLPipelineSpec:
    document: dict[str, Any] = {
        "extract": {
            "sourceType": "PostgreSQL",
            "connection": {"host": "pg", "port": 5432, "database": "shop", "user": "etl"},
            "credentialsRef": {"name": "source-db", "key": "password"},
            "table": "events",
        },
        "transforms": [
            {"transformType": "Aggregation", "groupBy": ["user_id"], "aggregations": {"amount": "sum"}}
        ],
        "load": {
            "sinkType": "PostgreSQL",
            "connection": {"host": "pg", "port": 5432, "database": "analytics", "user": "etl"},
            "credentialsRef": {"name": "pg-credentials", "key": "password"},
            "table": "user_summary",
            "writeMode": "upsert",
            "primaryKey": ["user_id"],
        },
        "spark": {"executors": 0, "driver": {"cores": 2, "memory": "2g"}},
    }
    document.update(overrides)
    return ETLPipelineSpec.model_validate(document)


def _pipeline(spec: ETLPipelineSpec | None = None, name: str = "user-summary") -> PipelineRef:
    return PipelineRef(name=name, namespace="analytics", uid="uid-1234", generation=3, spec=spec or _spec())


def _distributed(conf: dict[str, str] | None = None) -> ETLPipelineSpec:
    return _spec(
        spark={
            "executors": 4,
            "driver": {"cores": 1, "memory": "1g"},
            "executor": {"cores": 3, "memory": "6g"},
            "conf": conf or {"spark.sql.shuffle.partitions": "64"},
            "image": "registry.local/etl-job:custom",
            "serviceAccount": "analytics-spark",
        }
    )


def _driver(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    return next(c for c in containers if c["name"] == "driver")


def _template_error(template: dict[str, Any]) -> str:
    with pytest.raises(RenderError) as refused:
        render_run(_pipeline(_spec(podTemplate=template)), 7, DEFAULTS)
    return refused.value.field


# --- local mode ------------------------------------------------------------------------------


def test_local_mode_pod_is_exactly_this() -> None:
    pod = render_run(_pipeline(), 7, DEFAULTS).pod
    field_env = [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ]
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "user-summary-run-7-driver",
            "namespace": "analytics",
            "labels": LABELS,
            "ownerReferences": [OWNER],
        },
        "spec": {
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "serviceAccountName": "spark-driver",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 185,
                "fsGroup": 185,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "driver",
                    "image": "registry.local/etl-job:1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["etl"],
                    "args": [
                        "run",
                        "/etc/etl/pipeline/pipeline.json",
                        "--master",
                        "local[2]",
                        "--termination-log",
                        "/dev/termination-log",
                    ],
                    "env": [
                        {"name": "ETL_TERMINATION_LOG", "value": "/dev/termination-log"},
                        {"name": "ETL_RUN_ID", "value": "user-summary-run-7"},
                        {"name": "ETL_PIPELINE", "value": "user-summary"},
                        {"name": "ETL_GENERATION", "value": "3"},
                        {"name": "ETL_TRACE_ID", "value": naming.trace_id("uid-1234", 7)},
                        {"name": "ETL_LOG_FORMAT", "value": "json"},
                        {"name": "ETL_SPARK_MASTER", "value": "local[2]"},
                        {"name": "ETL_HEALTH_PORT", "value": "8080"},
                        {"name": "SPARK_DRIVER_MEMORY", "value": "2048m"},
                        {"name": "SPARK_LOCAL_DIRS", "value": "/var/lib/spark/local"},
                        *[
                            {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
                            for name, path in field_env
                        ],
                        {
                            "name": secret_env_name(SecretKeyRef(name="source-db", key="password")),
                            "valueFrom": {"secretKeyRef": {"name": "source-db", "key": "password"}},
                        },
                        {
                            "name": secret_env_name(SecretKeyRef(name="pg-credentials", key="password")),
                            "valueFrom": {"secretKeyRef": {"name": "pg-credentials", "key": "password"}},
                        },
                    ],
                    "resources": {
                        "requests": {"cpu": "2", "memory": "2432Mi"},
                        "limits": {"memory": "2432Mi"},
                    },
                    "volumeMounts": [
                        {"name": "etl-pipeline", "mountPath": "/etc/etl/pipeline", "readOnly": True},
                        {"name": "spark-local-dir", "mountPath": "/var/lib/spark/local"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": False,
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "ports": [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}],
                }
            ],
            "volumes": [
                {
                    "name": "etl-pipeline",
                    "configMap": {
                        "name": "user-summary-run-7-config",
                        "items": [{"key": "pipeline.json", "path": "pipeline.json"}],
                    },
                },
                {"name": "spark-local-dir", "emptyDir": {}},
            ],
        },
    }


def test_local_mode_has_no_service() -> None:
    assert render_run(_pipeline(), 7, DEFAULTS).service is None


def test_config_map_parses_back_to_the_same_spec() -> None:
    spec = _spec(errorHandling={"tolerance": "all", "deadLetter": {"type": "s3", "path": "s3a://dlq/"}})
    config_map = render_run(_pipeline(spec), 7, DEFAULTS).config_map
    assert config_map["metadata"]["name"] == "user-summary-run-7-config"
    assert config_map["immutable"] is True
    assert set(config_map["data"]) == {"pipeline.json"}
    parsed = ETLPipeline.model_validate(json.loads(config_map["data"]["pipeline.json"]))
    assert parsed.spec == spec
    assert parsed.name == "user-summary"


def test_active_deadline_for_batch_runs_only() -> None:
    batch = render_run(_pipeline(_spec(activeDeadlineSeconds=3600)), 7, DEFAULTS).pod
    assert batch["spec"]["activeDeadlineSeconds"] == 3600
    streaming = _spec(
        mode="streaming",
        streaming={"checkpointLocation": "s3a://state/p/"},
        activeDeadlineSeconds=3600,
        extract={"sourceType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "events"},
    )
    assert "activeDeadlineSeconds" not in render_run(_pipeline(streaming), 7, DEFAULTS).pod["spec"]


def test_streaming_drivers_are_probed_on_their_health_port_and_batch_drivers_serve_metrics_unprobed() -> None:
    streaming = _spec(
        mode="streaming",
        streaming={"checkpointLocation": "s3a://state/p/", "healthPort": 8181},
        extract={"sourceType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "events"},
    )
    container = driver_container(_pipeline(streaming), 7, DEFAULTS)
    assert {"name": "metrics", "containerPort": 8181, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "ETL_HEALTH_PORT", "value": "8181"} in container["env"]
    batch = driver_container(_pipeline(), 7, DEFAULTS)
    assert "readinessProbe" not in batch and "livenessProbe" not in batch
    assert batch["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "ETL_HEALTH_PORT", "value": "8080"} in batch["env"]


@pytest.mark.parametrize(
    ("memory", "heap_mib", "pod_mib"),
    [("2g", 2048, 2432), ("512m", 512, 896), ("8g", 8192, 9011), ("1024", 1024, 1408), ("1536k", 2, 386)],
)
def test_memory_request_is_heap_plus_spark_overhead(memory: str, heap_mib: int, pod_mib: int) -> None:
    assert spark_memory_mib(memory) == heap_mib
    assert driver_memory_mib(memory) == pod_mib


def test_init_command_goes_before_the_job() -> None:
    defaults = OperatorDefaults(job_image="img", init_command=("/usr/bin/tini", "--"))
    driver = _driver(render_run(_pipeline(), 7, defaults).pod)
    assert driver["command"] == ["/usr/bin/tini", "--", "etl"]
    assert driver["args"][0] == "run"


def test_schemas_config_map_is_mounted_when_configured() -> None:
    defaults = OperatorDefaults(job_image="img", schemas_config_map="etl-schemas")
    pod = render_run(_pipeline(), 7, defaults).pod
    assert {"name": "etl-schemas", "configMap": {"name": "etl-schemas", "optional": True}} in pod["spec"][
        "volumes"
    ]
    driver = _driver(pod)
    assert {"name": "etl-schemas", "mountPath": "/etc/etl/schemas", "readOnly": True} in driver[
        "volumeMounts"
    ]
    assert {"name": "ETL_SCHEMA_DIRS", "value": "/etc/etl/schemas:/opt/etl/examples/schemas"} in driver["env"]


# --- executors > 0 -----------------------------------------------------------------------------


def test_distributed_driver_runs_spark_submit_in_client_mode() -> None:
    manifests = render_run(_pipeline(_distributed()), 7, DEFAULTS)
    driver = _driver(manifests.pod)
    assert driver["command"] == ["spark-submit"]
    args: list[str] = driver["args"]
    assert args[:6] == [
        "--master",
        "k8s://https://kubernetes.default.svc",
        "--deploy-mode",
        "client",
        "--name",
        "user-summary-run-7-driver",
    ]
    confs = [args[i + 1] for i, arg in enumerate(args) if arg == "--conf"]
    for expected in [
        "spark.kubernetes.namespace=analytics",
        "spark.kubernetes.driver.pod.name=user-summary-run-7-driver",
        "spark.driver.host=user-summary-run-7-driver-svc.analytics.svc",
        "spark.driver.port=7078",
        "spark.driver.blockManager.port=7079",
        "spark.kubernetes.container.image=registry.local/etl-job:custom",
        "spark.kubernetes.authenticate.driver.serviceAccountName=analytics-spark",
        "spark.executor.instances=4",
        "spark.executor.cores=3",
        "spark.executor.memory=6144m",
        "spark.driver.memory=1024m",
        "spark.sql.shuffle.partitions=64",
    ]:
        assert expected in confs
    entry = args.index("/opt/etl/venv/lib/python3.11/site-packages/etl_job/cli.py")
    assert args[entry + 1 :] == [
        "run",
        "/etc/etl/pipeline/pipeline.json",
        "--master",
        "",
        "--termination-log",
        "/dev/termination-log",
    ]
    assert "spark.driver.bindAddress=$(POD_IP)" in confs
    assert any(e["name"] == "POD_IP" for e in driver["env"])
    assert driver["image"] == "registry.local/etl-job:custom"
    assert manifests.pod["spec"]["serviceAccountName"] == "analytics-spark"
    assert manifests.pod["spec"]["automountServiceAccountToken"] is True
    assert {"name": "PYTHONSAFEPATH", "value": "1"} in driver["env"]


def test_distributed_run_renders_a_headless_service_for_the_driver() -> None:
    service = render_run(_pipeline(_distributed()), 7, DEFAULTS).service
    assert service is not None
    assert service["metadata"]["name"] == "user-summary-run-7-driver-svc"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == LABELS
    ports = {(p["name"], p["port"]) for p in service["spec"]["ports"]}
    assert ports == {("driver-rpc", 7078), ("blockmanager", 7079)}


def test_executors_start_from_a_template_with_the_pipelines_labels_and_restricted_security() -> None:
    manifests = render_run(_pipeline(_distributed()), 7, DEFAULTS)
    args: list[str] = _driver(manifests.pod)["args"]
    confs = [args[i + 1] for i, arg in enumerate(args) if arg == "--conf"]
    assert "spark.kubernetes.executor.podTemplateFile=/etc/etl/pipeline/executor-pod.yaml" in confs
    assert "spark.kubernetes.executor.podTemplateContainerName=executor" in confs
    template = json.loads(manifests.config_map["data"]["executor-pod.yaml"])
    labels = template["metadata"]["labels"]
    assert labels == {
        "etl.sparkops.io/pipeline": "user-summary",
        "etl.sparkops.io/run": "7",
        "app.kubernetes.io/component": "executor",
    }
    # Not the driver Service's selector, and not watched by the operator as one of its pods.
    assert not set(LABELS.items()) <= set(labels.items())
    assert "app.kubernetes.io/managed-by" not in labels
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["name"] == "executor"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    volume = next(v for v in manifests.pod["spec"]["volumes"] if "configMap" in v)
    assert {"key": "executor-pod.yaml", "path": "executor-pod.yaml"} in volume["configMap"]["items"]


def test_a_local_mode_run_has_no_executor_template() -> None:
    manifests = render_run(_pipeline(_spec()), 7, DEFAULTS)
    assert set(manifests.config_map["data"]) == {"pipeline.json"}


def test_every_conf_the_operator_sets_is_refused_in_the_spec_or_merged_with_it() -> None:
    owned = submit_conf(_pipeline(_spec(spark={"executors": 2})), 7, DEFAULTS)
    assert set(owned) - {"spark.driver.extraJavaOptions"} <= set(OPERATOR_CONF)


def test_the_driver_jvm_logs_json_and_keeps_the_specs_own_java_options() -> None:
    entry = "/opt/etl/venv/lib/python3.11/site-packages/etl_job"
    ours = f"-Dlog4j2.configurationFile=file:{entry}/runtime/log4j2/json.properties"
    plain = submit_conf(_pipeline(_distributed()), 7, DEFAULTS)
    assert plain["spark.driver.extraJavaOptions"] == ours
    mine = "-XX:+UseG1GC -Dlog4j2.configurationFile=file:/etc/mine.properties"
    tuned = submit_conf(_pipeline(_distributed({"spark.driver.extraJavaOptions": mine})), 7, DEFAULTS)
    # The spec's options come last: for the JVM the last -D of a name wins.
    assert tuned["spark.driver.extraJavaOptions"] == f"{ours} {mine}"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("spark.executor.instances", "spec.spark.executors"),
        ("spark.kubernetes.container.image", "spec.spark.image"),
        ("spark.kubernetes.driver.pod.name", "operator"),
    ],
)
def test_conf_owned_by_the_operator_is_refused(key: str, hint: str) -> None:
    with pytest.raises(RenderError, match=re.escape(hint)) as refused:
        render_run(_pipeline(_distributed({key: "x"})), 7, DEFAULTS)
    assert refused.value.field == f'spec.spark.conf["{key}"]'


@pytest.mark.parametrize(
    "key",
    ["spark.hadoop.fs.s3a.secret.key", "spark.ssl.keyStorePassword", "spark.kafka.sasl.jaas.config"],
)
def test_conf_that_would_carry_a_credential_is_refused(key: str) -> None:
    with pytest.raises(RenderError, match="Secret") as refused:
        render_run(_pipeline(_spec(spark={"conf": {key: "x"}})), 7, DEFAULTS)
    assert refused.value.field == f'spec.spark.conf["{key}"]'


def test_credential_provider_conf_is_not_a_credential() -> None:
    conf = {"spark.hadoop.fs.s3a.aws.credentials.provider": "com.amazonaws.auth.WebIdentityTokenProvider"}
    render_run(_pipeline(_distributed(conf)), 7, DEFAULTS)


# --- credentials -----------------------------------------------------------------------------


def _paths_of(value: Any, needle: str, path: str = "") -> list[str]:
    """Paths of every string in `value` that contains `needle`."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _paths_of(item, needle, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _paths_of(item, needle, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and needle in value else []


@pytest.mark.parametrize("executors", [0, 4])
def test_secret_names_appear_only_in_secret_key_refs(executors: int) -> None:
    spec = _spec(spark={"executors": executors, "conf": {"spark.sql.shuffle.partitions": "8"}})
    manifests = render_run(_pipeline(spec), 7, DEFAULTS)
    pipeline_json = json.loads(manifests.config_map["data"]["pipeline.json"])
    for secret in ("source-db", "pg-credentials"):
        found = _paths_of(manifests.pod, secret)
        assert found
        assert all(p.endswith(".valueFrom.secretKeyRef.name") for p in found), found
        assert not _paths_of(manifests.service or {}, secret)
        # The job's config holds the reference it reads the env var for, nothing else.
        assert all(p.endswith(".credentialsRef.name") for p in _paths_of(pipeline_json, secret))
    assert not _paths_of(_driver(manifests.pod)["args"], "pg-credentials")


def test_the_same_secret_key_read_twice_is_one_env_var() -> None:
    same = {"name": "pg-credentials", "key": "password"}
    spec = _spec(
        extract={
            "sourceType": "PostgreSQL",
            "connection": {"host": "pg", "port": 5432, "database": "shop", "user": "etl"},
            "credentialsRef": same,
            "table": "events",
        }
    )
    env = _driver(render_run(_pipeline(spec), 7, DEFAULTS).pod)["env"]
    assert len([e for e in env if "secretKeyRef" in e.get("valueFrom", {})]) == 1


def test_secret_env_names_are_valid_stable_and_distinct() -> None:
    refs = [
        SecretKeyRef(name="a-b", key="c"),
        SecretKeyRef(name="a", key="b-c"),
        SecretKeyRef(name="db", key="Password"),
        SecretKeyRef(name="db", key="password"),
    ]
    names = [secret_env_name(ref) for ref in refs]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"ETL_SECRET_[A-Z0-9_]+", name) for name in names)
    assert names[0].startswith("ETL_SECRET_A_B_C_")
    assert secret_env_name(SecretKeyRef(name="a-b", key="c")) == names[0]


# --- ownership and names ---------------------------------------------------------------------


@pytest.mark.parametrize("executors", [0, 2])
def test_every_object_is_owned_by_the_pipeline_and_labelled(executors: int) -> None:
    manifests = render_run(_pipeline(_spec(spark={"executors": executors})), 7, DEFAULTS)
    objects = [manifests.config_map, manifests.pod, *([manifests.service] if manifests.service else [])]
    assert len(objects) == (3 if executors else 2)
    for rendered in objects:
        assert rendered["metadata"]["ownerReferences"] == [OWNER]
        assert rendered["metadata"]["namespace"] == "analytics"
        assert rendered["metadata"]["labels"] == LABELS


def test_long_pipeline_names_give_bounded_names_everywhere() -> None:
    name = "a-very-long-pipeline-name-that-goes-on-and-on-beyond-what-labels-and-dns-allow"
    manifests = render_run(_pipeline(_spec(spark={"executors": 2}), name=name), 12, DEFAULTS)
    assert manifests.service is not None
    for rendered in (manifests.config_map, manifests.pod, manifests.service):
        assert len(rendered["metadata"]["name"]) <= 63
        assert all(len(value) <= 63 for value in rendered["metadata"]["labels"].values())
    assert manifests.pod["metadata"]["name"] == naming.driver_pod_name(name, 12)
    volume = manifests.pod["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == manifests.config_map["metadata"]["name"]
    confs = _driver(manifests.pod)["args"]
    assert f"spark.driver.host={manifests.service['metadata']['name']}.analytics.svc" in confs


# --- pod template ----------------------------------------------------------------------------


def test_template_labels_and_annotations_are_added_and_operator_labels_win() -> None:
    template = {
        "metadata": {
            "labels": {"team": "analytics", "etl.sparkops.io/run": "99"},
            "annotations": {"prometheus.io/scrape": "true"},
        }
    }
    pod = render_run(_pipeline(_spec(podTemplate=template)), 7, DEFAULTS).pod
    assert pod["metadata"]["labels"] == {**LABELS, "team": "analytics"}
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_template_lists_are_appended_and_maps_set() -> None:
    template = {
        "spec": {
            "volumes": [{"name": "certs", "secret": {"secretName": "ca"}}],
            "tolerations": [{"key": "spark", "operator": "Exists", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "registry"}],
            "nodeSelector": {"pool": "spark"},
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "priorityClassName": "batch",
            "securityContext": {"supplementalGroups": [1000]},
        }
    }
    spec = render_run(_pipeline(_spec(podTemplate=template)), 7, DEFAULTS).pod["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["etl-pipeline", "spark-local-dir", "certs"]
    assert spec["tolerations"] == template["spec"]["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["nodeSelector"] == {"pool": "spark"}
    assert spec["affinity"] == template["spec"]["affinity"]
    assert spec["priorityClassName"] == "batch"
    assert spec["securityContext"]["supplementalGroups"] == [1000]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_template_driver_entry_is_merged_into_the_driver_and_others_are_sidecars() -> None:
    template = {
        "spec": {
            "containers": [
                {
                    "name": "driver",
                    "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": True}],
                    "env": [
                        {"name": "TZ", "value": "UTC"},
                        {
                            "name": "AWS_SECRET_ACCESS_KEY",
                            "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}},
                        },
                    ],
                    "resources": {"requests": {"cpu": "3", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
                },
                {"name": "log-shipper", "image": "fluent-bit:3"},
            ],
            "volumes": [{"name": "certs", "secret": {"secretName": "ca"}}],
        }
    }
    pod = render_run(_pipeline(_spec(podTemplate=template)), 7, DEFAULTS).pod
    driver = _driver(pod)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["driver", "log-shipper"]
    assert driver["volumeMounts"][-1] == {"name": "certs", "mountPath": "/etc/certs", "readOnly": True}
    assert driver["env"][-2:] == template["spec"]["containers"][0]["env"]  # type: ignore[index]
    assert driver["env"][0]["name"] == "ETL_TERMINATION_LOG"
    assert driver["resources"] == {"requests": {"cpu": "3", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    assert [*driver["command"], *driver["args"][:1]] == ["etl", "run"]


def test_template_does_not_change_the_input_pod() -> None:
    pod = render_run(_pipeline(), 7, DEFAULTS).pod
    before = json.dumps(pod, sort_keys=True)
    merge_pod_template(pod, {"spec": {"tolerations": [{"key": "x", "operator": "Exists"}]}})
    assert json.dumps(pod, sort_keys=True) == before


def test_template_restating_a_protected_value_is_accepted() -> None:
    template = {"spec": {"restartPolicy": "Never", "serviceAccountName": "spark-driver"}}
    render_run(_pipeline(_spec(podTemplate=template)), 7, DEFAULTS)


@pytest.mark.parametrize(
    ("template", "field"),
    [
        (
            {"spec": {"securityContext": {"runAsNonRoot": False}}},
            "spec.podTemplate.spec.securityContext.runAsNonRoot",
        ),
        ({"spec": {"securityContext": {"runAsUser": 0}}}, "spec.podTemplate.spec.securityContext.runAsUser"),
        ({"spec": {"restartPolicy": "OnFailure"}}, "spec.podTemplate.spec.restartPolicy"),
        ({"spec": {"serviceAccountName": "admin"}}, "spec.podTemplate.spec.serviceAccountName"),
        ({"spec": {"activeDeadlineSeconds": 5}}, "spec.podTemplate.spec.activeDeadlineSeconds"),
        (
            {"spec": {"containers": [{"name": "driver", "args": ["sh"]}]}},
            "spec.podTemplate.spec.containers[0].args",
        ),
        (
            {"spec": {"containers": [{"name": "x", "image": "y"}, {"name": "driver", "command": ["sh"]}]}},
            "spec.podTemplate.spec.containers[1].command",
        ),
        (
            {"spec": {"containers": [{"name": "driver", "image": "evil"}]}},
            "spec.podTemplate.spec.containers[0].image",
        ),
        (
            {
                "spec": {
                    "containers": [{"name": "driver", "securityContext": {"allowPrivilegeEscalation": True}}]
                }
            },
            "spec.podTemplate.spec.containers[0].securityContext.allowPrivilegeEscalation",
        ),
        (
            {"spec": {"containers": [{"name": "driver", "securityContext": {"privileged": True}}]}},
            "spec.podTemplate.spec.containers[0].securityContext.privileged",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {"name": "driver", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
                    ]
                }
            },
            "spec.podTemplate.spec.containers[0].securityContext.capabilities.drop",
        ),
    ],
)
def test_protected_fields_are_refused_with_the_field_named(template: dict[str, Any], field: str) -> None:
    assert _template_error(template) == field


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"spec": {"containers": [{"image": "sidecar"}]}}, "spec.podTemplate.spec.containers[0].name"),
        (
            {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}},
            "spec.podTemplate.spec.containers[1].name",
        ),
        ({"spec": {"containers": {"name": "driver"}}}, "spec.podTemplate.spec.containers"),
        ({"spec": {"containers": ["driver"]}}, "spec.podTemplate.spec.containers[0]"),
        (
            {"spec": {"volumes": [{"name": "etl-pipeline", "emptyDir": {}}]}},
            "spec.podTemplate.spec.volumes[0].name",
        ),
        ({"spec": {"tolerations": {"key": "x"}}}, "spec.podTemplate.spec.tolerations"),
        ({"metadata": {"name": "mine"}}, "spec.podTemplate.metadata.name"),
        ({"metadata": {"labels": {"team": 7}}}, "spec.podTemplate.metadata.labels.team"),
        ({"kind": "Pod"}, "spec.podTemplate.kind"),
        (
            {
                "spec": {
                    "containers": [{"name": "driver", "env": [{"name": "ETL_SPARK_MASTER", "value": "x"}]}]
                }
            },
            "spec.podTemplate.spec.containers[0].env[0].name",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {
                            "name": "driver",
                            "volumeMounts": [{"name": "v", "mountPath": "/var/lib/spark/local"}],
                        }
                    ]
                }
            },
            "spec.podTemplate.spec.containers[0].volumeMounts[0].mountPath",
        ),
    ],
)
def test_malformed_templates_are_refused_with_the_field_named(template: dict[str, Any], field: str) -> None:
    assert _template_error(template) == field


def test_render_error_is_a_value_error_with_the_path_in_its_message() -> None:
    error = RenderError("spec.podTemplate.spec.restartPolicy", "nope")
    assert isinstance(error, ValueError)
    assert str(error) == "spec.podTemplate.spec.restartPolicy: nope"


def test_the_high_water_mark_is_handed_to_the_next_run_and_nothing_else_of_the_status() -> None:
    first = json.loads(render_run(_pipeline(), 1, DEFAULTS).config_map["data"]["pipeline.json"])
    assert "status" not in first
    marked = PipelineRef(
        name="user-summary",
        namespace="analytics",
        uid="uid-1234",
        generation=3,
        spec=_spec(),
        high_water_mark="2026-11-25T10:00:00",
    )
    document = json.loads(render_run(marked, 2, DEFAULTS).config_map["data"]["pipeline.json"])
    assert document["status"] == {"highWaterMark": "2026-11-25T10:00:00"}
    assert ETLPipeline.model_validate(document).status.high_water_mark == "2026-11-25T10:00:00"  # type: ignore[union-attr]
