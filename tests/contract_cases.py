"""Pipeline specs that break the contract, and specs that keep it, shared by the pydantic tests
and the API-server tests: both layers must refuse (and accept) the same things.

Each invalid spec is the valid example `examples/user-summary.yaml` with one thing changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "user-summary.yaml"

Spec = dict[str, Any]


def example_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return manifest


def base_spec() -> Spec:
    """The example's spec: valid, and using most of the contract. Its Join's unquoted `on:` key,
    which PyYAML (YAML 1.1) reads as the boolean true, is spelled "on" here so cases can edit it."""
    spec: Spec = _on_key_restored(example_manifest()["spec"])
    return spec


def _on_key_restored(node: Any) -> Any:
    if isinstance(node, dict):
        return {("on" if key is True else key): _on_key_restored(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_on_key_restored(item) for item in node]
    return node


@dataclass(frozen=True)
class InvalidCase:
    """A spec both layers refuse, the field the error must name, and what the error says.

    `message` is a substring of the API server's error; `python_message` of pydantic's, when the
    two differ (schema-level checks word their errors differently; cross-field rules do not).
    """

    id: str
    spec: Spec
    field: str
    message: str
    python_message: str | None = None

    @property
    def expected_python_message(self) -> str:
        return self.python_message if self.python_message is not None else self.message


def _changed(change: Callable[[Spec], None]) -> Spec:
    spec = base_spec()
    change(spec)
    return spec


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    """A change that sets one dotted path (list indices as numbers): "load.connection.port"."""

    def change(spec: Spec) -> None:
        *parents, leaf = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(leaf) if leaf.isdigit() else leaf] = copy.deepcopy(value)

    return change


def _delete(path: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        *parents, leaf = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[leaf]

    return change


def _append_transform(transform: dict[str, Any]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["transforms"].append(copy.deepcopy(transform))

    return change


def _append_window_function(function: dict[str, Any]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["transforms"][3]["functions"].append(copy.deepcopy(function))

    return change


def _all(*changes: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        for one in changes:
            one(spec)

    return change


CONNECTION = {"host": "db.data.svc", "port": 5432, "database": "analytics", "user": "etl"}
CREDENTIALS = {"name": "db-credentials", "key": "password"}
POSTGRES_SOURCE = {
    "sourceType": "PostgreSQL",
    "connection": CONNECTION,
    "credentialsRef": CREDENTIALS,
    "table": "events",
}
KAFKA_SOURCE = {"sourceType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "events"}
TIME_WINDOW = {
    "transformType": "Window",
    "timeColumn": "event_time",
    "windowDuration": "10 minutes",
    "aggregations": {"amount": "sum"},
}

STREAMING = {"checkpointLocation": "s3a://state/user-summary/", "trigger": {"processingTime": "5 seconds"}}
#: The example as a stream: mode streaming, its streaming block, no schedule, and transforms a
#: stream can run (the filter and the aggregation; the analytic window is batch only).
STREAM_TRANSFORMS = [
    {"transformType": "Filter", "condition": "amount > 0"},
    {
        "transformType": "Aggregation",
        "groupBy": ["user_id", "country"],
        "aggregations": {"amount": "sum"},
    },
]
JOIN_DIMENSION = {
    "transformType": "Join",
    "right": {"sourceType": "S3", "path": "s3a://dim/users/", "format": "parquet"},
    "on": ["user_id"],
}
REFRESHED_JOIN = {**JOIN_DIMENSION, "refreshInterval": "10 minutes"}
_AS_STREAM = _all(
    _set("mode", "streaming"),
    _delete("schedule"),
    _set("streaming", STREAMING),
    _set("transforms", STREAM_TRANSFORMS),
)


def _streaming(*changes: Callable[[Spec], None]) -> Spec:
    return _changed(_all(_AS_STREAM, *changes))


INVALID_CASES: list[InvalidCase] = [
    InvalidCase(
        "upsert-without-primary-key",
        _changed(_delete("load.primaryKey")),
        "spec.load.primaryKey",
        "writeMode upsert needs primaryKey",
    ),
    InvalidCase(
        "schedule-with-streaming",
        _changed(_set("mode", "streaming")),
        "spec.schedule",
        "schedule is only for batch pipelines",
    ),
    InvalidCase(
        "empty-schedule",
        _changed(_set("schedule", "")),
        "spec.schedule",
        "at least 1 char",
    ),
    InvalidCase(
        "join-without-right",
        _changed(_delete("transforms.1.right")),
        "spec.transforms[1].right",
        "a Join needs right",
    ),
    InvalidCase(
        "join-without-on",
        _changed(_delete("transforms.1.on")),
        "spec.transforms[1].on",
        "a Join needs on",
    ),
    InvalidCase(
        "unknown-join-type",
        _changed(_set("transforms.1.joinType", "cross")),
        "spec.transforms[1].joinType",
        "Unsupported value",
        "Input should be",
    ),
    InvalidCase(
        "ranking-window-without-order-by",
        _changed(_delete("transforms.3.orderBy")),
        "spec.transforms[3].orderBy",
        "ranking and offset window functions need orderBy",
    ),
    InvalidCase(
        "max-delay-below-initial-delay",
        _changed(_set("errorHandling.retry.maxDelaySeconds", 1)),
        "spec.errorHandling.retry.maxDelaySeconds",
        "maxDelaySeconds must be >= initialDelaySeconds",
    ),
    InvalidCase(
        "missing-extract",
        _changed(_delete("extract")),
        "spec.extract",
        "Required value",
        "Field required",
    ),
    InvalidCase(
        "unknown-source-type",
        _changed(_set("extract.sourceType", "FTP")),
        "spec.extract.sourceType",
        "Unsupported value",
        "does not match any of the expected tags",
    ),
    InvalidCase(
        "s3-source-without-path",
        _changed(_set("extract", {"sourceType": "S3", "format": "csv"})),
        "spec.extract.path",
        "sourceType S3 needs path",
        "Field required",
    ),
    InvalidCase(
        "kafka-source-without-topic",
        _changed(_set("extract", {"sourceType": "Kafka", "bootstrapServers": "kafka:9092"})),
        "spec.extract.topic",
        "sourceType Kafka needs topic",
        "Field required",
    ),
    InvalidCase(
        "kafka-field-on-s3-source",
        _changed(_set("extract.topic", "events")),
        "spec.extract",
        "topic, startingOffsets, endingOffsets, valueFormat, metadataColumns, security are only for "
        "sourceType Kafka",
        "Extra inputs are not permitted",
    ),
    InvalidCase(
        "kafka-avro-without-schema-name",
        _changed(_set("extract", {**KAFKA_SOURCE, "valueFormat": "avro"})),
        "spec.extract",
        "valueFormat avro and avro-confluent need schemaName",
    ),
    InvalidCase(
        "kafka-sink-avro-without-schema-name",
        _changed(
            _set(
                "load",
                {"sinkType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "t", "valueFormat": "avro"},
            )
        ),
        "spec.load",
        "valueFormat avro and avro-confluent need schemaName",
    ),
    InvalidCase(
        "kafka-sink-avro-confluent-without-schema-id",
        _changed(
            _set(
                "load",
                {
                    "sinkType": "Kafka",
                    "bootstrapServers": "kafka:9092",
                    "topic": "t",
                    "valueFormat": "avro-confluent",
                    "schemaName": "user-event",
                },
            )
        ),
        "spec.load",
        "valueFormat avro-confluent needs schemaId",
    ),
    InvalidCase(
        "kafka-sasl-without-credentials",
        _changed(_set("extract", {**KAFKA_SOURCE, "security": {"protocol": "SASL_SSL"}})),
        "spec.extract.security",
        "SASL protocols need usernameRef and passwordRef",
        "protocol SASL_SSL needs usernameRef and passwordRef",
    ),
    InvalidCase(
        "s3-access-key-without-secret-key",
        _changed(
            _set("extract.s3", {"endpoint": "http://minio:9000", "accessKeyRef": {"name": "s3", "key": "id"}})
        ),
        "spec.extract.s3",
        "give both accessKeyRef and secretKeyRef, or neither",
    ),
    InvalidCase(
        "database-user-and-user-ref",
        _changed(_set("load.connection.userRef", {"name": "pg-credentials", "key": "user"})),
        "spec.load.connection",
        "give exactly one of user or userRef",
    ),
    InvalidCase(
        "jdbc-source-with-table-and-query",
        _changed(_set("extract", {**POSTGRES_SOURCE, "query": "SELECT * FROM events"})),
        "spec.extract",
        "give exactly one of table or query",
    ),
    InvalidCase(
        "jdbc-source-without-table-or-query",
        _changed(_set("extract", {k: v for k, v in POSTGRES_SOURCE.items() if k != "table"})),
        "spec.extract",
        "give exactly one of table or query",
    ),
    InvalidCase(
        "jdbc-source-zero-partitions",
        _changed(_set("extract", {**POSTGRES_SOURCE, "numPartitions": 0})),
        "spec.extract.numPartitions",
        "greater than or equal to 1",
    ),
    InvalidCase(
        "unknown-field-typo",
        _changed(_all(_delete("extract.path"), _set("extract.pth", "s3a://raw/events/"))),
        "spec.extract.pth",
        "unknown field",
        "Extra inputs are not permitted",
    ),
    InvalidCase(
        "s3-sink-with-upsert",
        _changed(_set("load", {"sinkType": "S3", "path": "s3a://out/summary/", "writeMode": "upsert"})),
        "spec.load.writeMode",
        "writeMode upsert needs a database sink",
    ),
    InvalidCase(
        "kafka-sink-with-overwrite",
        _changed(
            _set(
                "load",
                {
                    "sinkType": "Kafka",
                    "bootstrapServers": "kafka:9092",
                    "topic": "out",
                    "writeMode": "overwrite",
                },
            )
        ),
        "spec.load.writeMode",
        "sinkType Kafka takes writeMode append",
        "Input should be 'append'",
    ),
    InvalidCase(
        "port-out-of-range",
        _changed(_set("load.connection.port", 70000)),
        "spec.load.connection.port",
        "less than or equal to 65535",
    ),
    InvalidCase(
        "credentials-ref-without-key",
        _changed(_set("load.credentialsRef", {"name": "pg-credentials"})),
        "spec.load.credentialsRef.key",
        "Required value",
        "Field required",
    ),
    InvalidCase(
        "negative-executors",
        _changed(_set("spark.executors", -1)),
        "spec.spark.executors",
        "greater than or equal to 0",
    ),
    InvalidCase(
        "memory-in-words",
        _changed(_set("spark.driver.memory", "lots")),
        "spec.spark.driver.memory",
        "should match",
    ),
    InvalidCase(
        "unknown-aggregation-function",
        _changed(_set("transforms.2.aggregations.0.function", "median")),
        "spec.transforms[2].aggregations[0].function",
        "Unsupported value",
        "Input should be",
    ),
    InvalidCase(
        "unknown-aggregation-function-in-map-form",
        _changed(_set("transforms.2.aggregations", {"amount": "median"})),
        "spec.transforms[2].aggregations",
        "Unsupported value",
        "Input should be",
    ),
    InvalidCase(
        "window-duration-in-words",
        _changed(_append_transform({**TIME_WINDOW, "windowDuration": "ten minutes"})),
        "spec.transforms[4].windowDuration",
        "should match",
    ),
    InvalidCase(
        "time-window-without-duration",
        _changed(_append_transform({k: v for k, v in TIME_WINDOW.items() if k != "windowDuration"})),
        "spec.transforms[4].windowDuration",
        "a time window needs windowDuration and aggregations",
    ),
    InvalidCase(
        "window-with-functions-and-time-column",
        _changed(_set("transforms.3.timeColumn", "event_time")),
        "spec.transforms[3]",
        "give functions (analytic window) or timeColumn (time window), not both",
    ),
    InvalidCase(
        "ntile-without-offset",
        _changed(_append_window_function({"function": "ntile", "as": "bucket"})),
        "spec.transforms[3].functions[2].offset",
        "ntile needs offset",
    ),
    InvalidCase(
        "lag-without-column",
        _changed(_append_window_function({"function": "lag", "as": "previous"})),
        "spec.transforms[3].functions[2].column",
        "needs column",
    ),
    InvalidCase(
        "select-without-columns-or-rename",
        _changed(_append_transform({"transformType": "Select"})),
        "spec.transforms[4]",
        "give columns, rename or both",
    ),
    InvalidCase(
        "unknown-transform-type",
        _changed(_append_transform({"transformType": "Pivot"})),
        "spec.transforms[4].transformType",
        "Unsupported value",
        "does not match any of the expected tags",
    ),
    InvalidCase(
        "tolerance-all-without-dead-letter",
        _changed(_all(_set("errorHandling.tolerance", "all"), _delete("errorHandling.deadLetter"))),
        "spec.errorHandling",
        "errorHandling.tolerance all needs errorHandling.deadLetter",
    ),
    InvalidCase(
        "streaming-without-streaming-block",
        _streaming(_delete("streaming")),
        "spec.streaming",
        "mode streaming needs streaming (checkpointLocation, trigger)",
    ),
    InvalidCase(
        "streaming-block-in-batch",
        _changed(_set("streaming", STREAMING)),
        "spec.streaming",
        "streaming is only for mode streaming",
    ),
    InvalidCase(
        "streaming-with-jdbc-source",
        _streaming(_set("extract", POSTGRES_SOURCE)),
        "spec.extract.sourceType",
        "a streaming pipeline reads Kafka or S3",
    ),
    InvalidCase(
        "streaming-trigger-with-both",
        _streaming(_set("streaming.trigger", {"processingTime": "5 seconds", "availableNow": True})),
        "spec.streaming.trigger",
        "give exactly one of processingTime or availableNow: true",
    ),
    InvalidCase(
        "s3-dead-letter-without-path",
        _changed(_set("errorHandling.deadLetter", {"type": "s3"})),
        "spec.errorHandling.deadLetter.path",
        "type s3 needs path",
        "Field required",
    ),
]

#: Specs pydantic refuses and the API server cannot: `aggregations` takes a list or a map, so its
#: CRD node has no type and CEL rules cannot see it. The operator refuses these with a status
#: condition. A test checks the API server still accepts them, so closing the gap shows up.
PYDANTIC_ONLY_CASES: list[InvalidCase] = [
    InvalidCase(
        "aggregation-without-aggregations",
        _changed(_delete("transforms.2.aggregations")),
        "spec.transforms[2].aggregations",
        "",
        "Field required",
    ),
    InvalidCase(
        "time-window-without-aggregations",
        _changed(_append_transform({k: v for k, v in TIME_WINDOW.items() if k != "aggregations"})),
        "spec.transforms[4]",
        "",
        "a time window needs windowDuration and aggregations",
    ),
    # Which transforms Spark runs on a stream is decided by the contract's Python rules; the
    # operator refuses the rest with a status condition naming the transform and the reason.
    InvalidCase(
        "streaming-analytic-window",
        _streaming(
            _append_transform(
                {
                    "transformType": "Window",
                    "partitionBy": ["country"],
                    "functions": [{"function": "count", "as": "n"}],
                }
            )
        ),
        "spec.transforms",
        "",
        "analytic window functions are not supported on a stream",
    ),
    InvalidCase(
        "streaming-time-window-without-watermark",
        _streaming(_set("transforms", [{**TIME_WINDOW, "groupBy": ["user_id", "country"]}])),
        "spec.transforms",
        "",
        "a time window on a stream needs watermark",
    ),
    InvalidCase(
        "batch-join-refresh-interval",
        _changed(_set("transforms.1.refreshInterval", "10 minutes")),
        "spec.transforms",
        "",
        "transforms[1].refreshInterval is for streaming pipelines",
    ),
    InvalidCase(
        "streaming-join-refreshed-before-the-aggregation",
        _streaming(
            _set("transforms", [{**JOIN_DIMENSION, "refreshInterval": "10 minutes"}, *STREAM_TRANSFORMS])
        ),
        "spec.transforms",
        "",
        "refreshInterval applies to joins after the aggregation",
    ),
    InvalidCase(
        "streaming-aggregation-appended",
        _streaming(_set("load.writeMode", "append")),
        "spec.transforms",
        "",
        "a streaming aggregation emits updated rows, so load needs writeMode upsert",
    ),
]

VALID_CASES: list[tuple[str, Spec]] = [
    ("example", base_spec()),
    ("streaming", _streaming()),
    (
        "streaming-join-refreshed-after-the-aggregation",
        _streaming(
            _set("transforms", [*STREAM_TRANSFORMS, {**JOIN_DIMENSION, "refreshInterval": "10 minutes"}])
        ),
    ),
    (
        "streaming-kafka-time-window-available-now",
        _streaming(
            _set("extract", KAFKA_SOURCE),
            _set("transforms", [{**TIME_WINDOW, "watermark": "1 minute", "groupBy": ["user_id", "country"]}]),
            _set("streaming.trigger", {"availableNow": True}),
            _set("streaming.maxOffsetsPerTrigger", 1000),
        ),
    ),
    (
        "map-form-aggregations",
        _changed(_set("transforms.2.aggregations", {"amount": "sum", "event_id": "count"})),
    ),
    (
        "time-window",
        _changed(
            _append_transform(
                {**TIME_WINDOW, "slideDuration": "5 minutes", "watermark": "1 hour", "groupBy": ["country"]}
            )
        ),
    ),
    (
        "select-rename-and-sql",
        _changed(
            _all(
                _append_transform({"transformType": "Select", "rename": {"country": "country_code"}}),
                _append_transform({"transformType": "SQL", "query": "SELECT * FROM input"}),
            )
        ),
    ),
    ("postgresql-source", _changed(_set("extract", POSTGRES_SOURCE))),
    (
        "mysql-source-query-in-parallel",
        _changed(
            _set(
                "extract",
                {
                    **{k: v for k, v in POSTGRES_SOURCE.items() if k != "table"},
                    "sourceType": "MySQL",
                    "query": "SELECT * FROM events",
                    "partitionColumn": "id",
                    "numPartitions": 8,
                    "incremental": {"column": "updated_at"},
                },
            )
        ),
    ),
    (
        "streaming-kafka-avro-source",
        _streaming(_set("extract", {**KAFKA_SOURCE, "valueFormat": "avro", "schemaName": "user-event"})),
    ),
    ("join-with-a-database", _changed(_set("transforms.1.right", POSTGRES_SOURCE))),
    ("s3-sink", _changed(_set("load", {"sinkType": "S3", "path": "s3a://out/", "writeMode": "overwrite"}))),
    (
        "kafka-sink",
        _changed(_set("load", {"sinkType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "t"})),
    ),
    (
        "kafka-sink-avro-confluent",
        _changed(
            _set(
                "load",
                {
                    "sinkType": "Kafka",
                    "bootstrapServers": "kafka:9092",
                    "topic": "t",
                    "valueFormat": "avro-confluent",
                    "schemaName": "user-summary",
                    "schemaId": 7,
                },
            )
        ),
    ),
    ("mysql-sink-append", _changed(_all(_set("load.sinkType", "MySQL"), _set("load.writeMode", "append")))),
    (
        "tolerance-all-with-s3-dead-letter",
        _changed(
            _all(
                _set("errorHandling.tolerance", "all"),
                _set("errorHandling.deadLetter", {"type": "s3", "path": "s3a://dlq/", "format": "json"}),
            )
        ),
    ),
    (
        "minimal",
        {"extract": {"sourceType": "S3", "path": "data/in/"}, "load": {"sinkType": "S3", "path": "out/"}},
    ),
]

#: A Join whose `on:` key is unquoted, as users write it: YAML 1.1 parsers (kubectl's and PyYAML
#: among them) read the key as the boolean true. `{namespace}` is filled in by the tests.
UNQUOTED_ON_JOIN_YAML = """\
apiVersion: etl.sparkops.io/v1alpha1
kind: ETLPipeline
metadata: {{name: unquoted-on, namespace: {namespace}}}
spec:
  extract: {{sourceType: S3, path: "s3a://raw/events/", format: csv}}
  transforms:
    - transformType: Join
      right: {{sourceType: S3, path: "s3a://dim/users/"}}
      on: [user_id]
      joinType: left
  load: {{sinkType: S3, path: "s3a://out/joined/"}}
"""


def manifest(name: str, namespace: str, spec: Spec) -> dict[str, Any]:
    """A whole ETLPipeline object around a spec."""
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
