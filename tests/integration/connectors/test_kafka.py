"""The Kafka source and sink against a real broker: JSON and Avro values (plain and in the
Confluent wire format), offsets, metadata columns, undecodable messages under both tolerances,
missing topics and brokers, keys and headers, and SASL logins that never show the password."""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from fastavro import schemaless_reader, schemaless_writer
from pyspark.sql import SparkSession

from etl_job.contract import DataError, RunMetrics, SecretKeyRef, SinkRejected, SourceUnavailable
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.manifest import parse_manifest
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from tests.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = SchemaRegistry([REPO / "examples" / "schemas"])
USER_EVENT = SCHEMAS.get("user-event")
EVENT_COLUMNS = ("event_id", "user_id", "country", "event_type", "amount", "event_time")
PIPELINE = "kafka-test"
USER_REF = SecretKeyRef(name="kafka-login", key="username")
PASSWORD_REF = SecretKeyRef(name="kafka-login", key="password")


def millis(day: int, hour: int) -> int:
    return int(datetime(2026, 11, day, hour, tzinfo=UTC).timestamp() * 1000)


EVENTS: list[dict[str, Any]] = [
    {"event_id": 1, "user_id": "u001", "country": "DE", "event_type": "purchase", "amount": 10.5,
     "event_time": millis(1, 10)},
    {"event_id": 2, "user_id": "u002", "country": "FR", "event_type": "view", "amount": 0.0,
     "event_time": millis(1, 11)},
    {"event_id": 3, "user_id": "u001", "country": "DE", "event_type": "refund", "amount": -3.0,
     "event_time": millis(2, 9)},
]  # fmt: skip
#: EVENTS as the rows the pipeline must load (times as UTC text).
EVENT_ROWS = [
    (1, "u001", "DE", "purchase", 10.5, "2026-11-01T10:00:00Z"),
    (2, "u002", "FR", "view", 0.0, "2026-11-01T11:00:00Z"),
    (3, "u001", "DE", "refund", -3.0, "2026-11-02T09:00:00Z"),
]


# --- helpers --------------------------------------------------------------------------------


def new_topic(kafka: KafkaBroker, partitions: int = 1) -> str:
    name = f"t-{secrets.token_hex(4)}"
    kafka.create_topic(name, partitions)
    return name


def sasl_client(kafka: KafkaBroker, mechanism: str = "PLAIN") -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.sasl_bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": kafka.sasl_user,
        "sasl.password": kafka.sasl_password,
    }


def produce(
    config: dict[str, Any], topic: str, values: Sequence[bytes | None], *, keys: list[str] | None = None,
    partitions: list[int] | None = None,
) -> None:  # fmt: skip
    producer = Producer(config)
    for index, value in enumerate(values):
        extra: dict[str, Any] = {} if partitions is None else {"partition": partitions[index]}
        producer.produce(topic, value=value, key=None if keys is None else keys[index], **extra)
    assert producer.flush(30) == 0


def consume(config: dict[str, Any], topic: str, count: int, timeout: float = 30) -> list[Message]:
    """Every message of the topic, read from the start of each partition (assigned: no group
    to join), waiting until `count` have come and briefly for any more."""
    consumer = Consumer({**config, "group.id": f"g-{secrets.token_hex(4)}", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.2 if len(received) >= count else 1.0)
        if message is None and len(received) >= count:
            break
        if message is not None and message.error() is None:
            received.append(message)
    consumer.close()
    return received


def avro_bytes(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, USER_EVENT, record)
    return buffer.getvalue()


def json_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def kafka_source(kafka: KafkaBroker, topic: str, **fields: Any) -> dict[str, Any]:
    return {"sourceType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic, **fields}


def file_sink(tmp_path: Path) -> dict[str, Any]:
    return {"sinkType": "S3", "path": str(tmp_path / "out"), "format": "parquet", "writeMode": "overwrite"}


def run(
    spark: SparkSession,
    spec: dict[str, Any],
    *,
    tolerance: str = "none",
    dead_letter: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    run_id: str = "run-1",
    schemas: SchemaRegistry = SCHEMAS,
) -> RunMetrics:
    error_handling: dict[str, Any] = {"tolerance": tolerance, "retry": {"strategy": "none"}}
    if dead_letter is not None:
        error_handling["deadLetter"] = dead_letter
    pipeline = parse_manifest(
        {"metadata": {"name": PIPELINE}, "spec": {**spec, "errorHandling": error_handling}}
    )
    context = RunContext(
        pipeline=PIPELINE, spark=spark, env=env or {}, tolerance=tolerance, schemas=schemas, run_id=run_id
    )
    return run_pipeline(pipeline, context, schemas)


def loaded_rows(spark: SparkSession, tmp_path: Path, *extra: str) -> list[tuple[Any, ...]]:
    from pyspark.sql import functions as F

    frame = spark.read.parquet(str(tmp_path / "out"))
    columns = [
        F.date_format(name, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias(name) if name == "event_time" else F.col(name)
        for name in (*EVENT_COLUMNS, *extra)
    ]
    return sorted(tuple(row) for row in frame.select(*columns).collect())


def sasl_env(kafka: KafkaBroker, password: str | None = None) -> dict[str, str]:
    return {
        secret_env_name(USER_REF): kafka.sasl_user,
        secret_env_name(PASSWORD_REF): kafka.sasl_password if password is None else password,
    }


def sasl_security(mechanism: str) -> dict[str, Any]:
    return {
        "protocol": "SASL_PLAINTEXT",
        "saslMechanism": mechanism,
        "usernameRef": USER_REF.model_dump(),
        "passwordRef": PASSWORD_REF.model_dump(),
    }


@contextmanager
def jvm_log(spark: SparkSession) -> Iterator[list[str]]:
    """Everything the JVM logs (Spark, the Kafka clients) at INFO and above while inside; the
    text is appended to the yielded list on exit."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    config = context.getConfiguration()
    writer = jvm.java.io.StringWriter()
    layout = (
        jvm.org.apache.logging.log4j.core.layout.PatternLayout.newBuilder().withPattern("%p %c: %m%n").build()
    )
    appender = jvm.org.apache.logging.log4j.core.appender.WriterAppender.createAppender(
        layout, None, writer, "etl-test-capture", False, True
    )
    appender.start()
    config.addAppender(appender)
    config.getRootLogger().addAppender(appender, None, None)
    spark.sparkContext.setLogLevel("INFO")
    captured: list[str] = []
    try:
        yield captured
    finally:
        spark.sparkContext.setLogLevel("WARN")
        config.getRootLogger().removeAppender("etl-test-capture")
        context.updateLoggers()
        appender.stop()
        captured.append(str(writer.toString()))


# --- source ---------------------------------------------------------------------------------


def test_json_source_decodes_the_schema_fields_and_adds_metadata_columns(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka, partitions=2)
    # Avro's JSON writes a timestamp-millis as epoch millis; ISO 8601 text is read too.
    second = {**EVENTS[1], "event_time": "2026-11-01T11:00:00Z"}
    produce(
        {"bootstrap.servers": kafka.bootstrap_servers},
        topic,
        [json_bytes(EVENTS[0]), json_bytes(second), json_bytes(EVENTS[2])],
        keys=["k1", "k2", "k3"],
        partitions=[0, 1, 0],
    )
    metrics = run(
        spark,
        {
            "extract": kafka_source(
                kafka,
                topic,
                schemaName="user-event",
                metadataColumns=["key", "topic", "partition", "offset", "timestamp"],
            ),
            "load": file_sink(tmp_path),
        },
    )
    assert loaded_rows(spark, tmp_path, "kafka_key", "kafka_topic", "kafka_partition", "kafka_offset") == [
        (*EVENT_ROWS[0], "k1", topic, 0, 0),
        (*EVENT_ROWS[1], "k2", topic, 1, 0),
        (*EVENT_ROWS[2], "k3", topic, 0, 1),
    ]
    stamps = spark.read.parquet(str(tmp_path / "out")).select("kafka_timestamp").collect()
    assert all(row.kafka_timestamp is not None for row in stamps)
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (3, 3, 0)


def test_json_source_without_a_schema_keeps_each_value_as_text(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    produce({"bootstrap.servers": kafka.bootstrap_servers}, topic, [b'{"a": 1}', b"plain text"])
    run(spark, {"extract": kafka_source(kafka, topic), "load": file_sink(tmp_path)})
    frame = spark.read.parquet(str(tmp_path / "out"))
    assert frame.columns == ["value"]
    assert sorted(row.value for row in frame.collect()) == sorted(['{"a": 1}', "plain text"])


def test_value_fields_named_like_message_fields_stay_apart_from_them(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    fields = [{"name": "offset", "type": "string"}, {"name": "timestamp", "type": "long"}]
    (folder / "clash.avsc").write_text(json.dumps({"type": "record", "name": "Clash", "fields": fields}))
    topic = new_topic(kafka)
    produce({"bootstrap.servers": kafka.bootstrap_servers}, topic, [b'{"offset": "x", "timestamp": 5}'])
    run(
        spark,
        {
            "extract": kafka_source(kafka, topic, schemaName="clash", metadataColumns=["offset"]),
            "load": file_sink(tmp_path),
        },
        schemas=SchemaRegistry([folder]),
    )
    frame = spark.read.parquet(str(tmp_path / "out"))
    assert frame.columns == ["offset", "timestamp", "kafka_offset"]
    assert [tuple(row) for row in frame.collect()] == [("x", 5, 0)]


def test_plain_avro_source_reads_between_json_offsets(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    produce({"bootstrap.servers": kafka.bootstrap_servers}, topic, [avro_bytes(e) for e in EVENTS * 2])
    metrics = run(
        spark,
        {
            "extract": kafka_source(
                kafka,
                topic,
                valueFormat="avro",
                schemaName="user-event",
                startingOffsets=json.dumps({topic: {"0": 1}}),
                endingOffsets=json.dumps({topic: {"0": 4}}),
                metadataColumns=["offset"],
            ),
            "load": file_sink(tmp_path),
        },
    )
    assert loaded_rows(spark, tmp_path, "kafka_offset") == [
        (*EVENT_ROWS[0], 3),
        (*EVENT_ROWS[1], 1),
        (*EVENT_ROWS[2], 2),
    ]
    assert metrics.records_loaded == 3


def test_confluent_wire_format_source_strips_the_header(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    header = b"\x00" + (42).to_bytes(4, "big")
    produce({"bootstrap.servers": kafka.bootstrap_servers}, topic, [header + avro_bytes(e) for e in EVENTS])
    run(
        spark,
        {
            "extract": kafka_source(kafka, topic, valueFormat="avro-confluent", schemaName="user-event"),
            "load": file_sink(tmp_path),
        },
    )
    assert loaded_rows(spark, tmp_path) == EVENT_ROWS


def test_an_undecodable_message_fails_the_run_naming_topic_partition_and_offset(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka, partitions=2)
    values = [avro_bytes(EVENTS[0]), avro_bytes(EVENTS[1]), b"\x00\x00\x00\x00\x07" + b"\xff" * 3]
    produce({"bootstrap.servers": kafka.bootstrap_servers}, topic, values, partitions=[1, 1, 1])
    with pytest.raises(DataError) as failed:
        run(
            spark,
            {
                "extract": kafka_source(kafka, topic, valueFormat="avro-confluent", schemaName="user-event"),
                "load": file_sink(tmp_path),
            },
        )
    # The first message has no wire-format header: it is the one named.
    assert f"topic {topic} partition 1 offset 0: value has no Confluent wire-format header" in str(
        failed.value
    )


def test_undecodable_messages_are_dead_lettered_to_kafka_and_counted(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic, dead_letters = new_topic(kafka), new_topic(kafka)
    not_avro = b"\x02\x02a"  # a string field whose length runs past the end of the value
    values = [avro_bytes(EVENTS[0]), not_avro, avro_bytes(EVENTS[1]), avro_bytes(EVENTS[2])]
    broker = {"bootstrap.servers": kafka.bootstrap_servers}
    produce(broker, topic, values)
    metrics = run(
        spark,
        {
            "extract": kafka_source(kafka, topic, valueFormat="avro", schemaName="user-event"),
            "load": file_sink(tmp_path),
        },
        tolerance="all",
        dead_letter={"type": "kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": dead_letters},
    )
    assert loaded_rows(spark, tmp_path) == EVENT_ROWS
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (4, 3, 1)
    assert metrics.records_extracted == metrics.records_loaded + metrics.records_failed
    [letter] = consume(broker, dead_letters, 1)
    assert letter.key() == PIPELINE.encode()
    document = json.loads(letter.value() or b"")
    assert document["errorType"] == "UndecodableValue"
    assert document["stage"] == "extract"
    assert (
        document["errorMessage"]
        == f"topic {topic} partition 0 offset 1: value does not decode as Avro schema user-event"
    )
    assert base64.b64decode(document["originalRecord"]) == not_avro
    assert document["originalSchema"] == "user-event"
    assert document["context"] == {"topic": topic, "partition": "0", "offset": "1"}


def test_json_that_does_not_fit_the_schema_is_a_bad_record(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic, dead_letters = new_topic(kafka), new_topic(kafka)
    broker = {"bootstrap.servers": kafka.bootstrap_servers}
    bad = [
        b"not json",
        json_bytes({**EVENTS[0], "amount": "lots"}),
        json_bytes({**EVENTS[0], "event_time": "soon"}),
    ]
    produce(broker, topic, [json_bytes(EVENTS[0]), *bad])
    metrics = run(
        spark,
        {"extract": kafka_source(kafka, topic, schemaName="user-event"), "load": file_sink(tmp_path)},
        tolerance="all",
        dead_letter={"type": "kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": dead_letters},
    )
    assert loaded_rows(spark, tmp_path) == [EVENT_ROWS[0]]
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (4, 1, 3)
    letters = [json.loads(m.value() or b"") for m in consume(broker, dead_letters, 3)]
    assert sorted(letter["originalRecord"].encode() for letter in letters) == sorted(bad)


def test_a_missing_topic_is_named_with_the_brokers(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    with pytest.raises(
        SourceUnavailable, match=f"topic no-such-topic does not exist at brokers {kafka.bootstrap_servers}"
    ):
        run(spark, {"extract": kafka_source(kafka, "no-such-topic"), "load": file_sink(tmp_path)})


def test_unreachable_brokers_fail_within_the_timeout(spark: SparkSession, tmp_path: Path) -> None:
    from tests.infra.process import free_port

    brokers = f"127.0.0.1:{free_port()}"
    source = {
        "sourceType": "Kafka",
        "bootstrapServers": brokers,
        "topic": "events",
        "options": {"kafka.default.api.timeout.ms": "2000"},
    }
    started = time.monotonic()
    with pytest.raises(
        SourceUnavailable, match=f"cannot read topic events at brokers {brokers}: no answer within 2 s"
    ):
        run(spark, {"extract": source, "load": file_sink(tmp_path)})
    assert time.monotonic() - started < 15


# --- sink -----------------------------------------------------------------------------------


def events_csv(tmp_path: Path) -> dict[str, Any]:
    folder = tmp_path / "in"
    folder.mkdir()
    lines = ["event_id,user_id,country,event_type,amount,event_time"] + [
        f"{e['event_id']},{e['user_id']},{e['country']},{e['event_type']},{e['amount']},{row[5]}"
        for e, row in zip(EVENTS, EVENT_ROWS, strict=True)
    ]
    (folder / "events.csv").write_text("\n".join(lines) + "\n")
    return {"sourceType": "S3", "path": str(folder), "format": "csv", "options": {"header": "true"}}


def headers_of(message: Message) -> dict[str, bytes]:
    pairs: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    return {key: value or b"" for key, value in pairs}


def test_json_sink_writes_keyed_messages_with_pipeline_and_run_headers(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    sink = {
        "sinkType": "Kafka",
        "bootstrapServers": kafka.bootstrap_servers,
        "topic": topic,
        "keyColumn": "event_id",
    }
    metrics = run(spark, {"extract": events_csv(tmp_path), "load": sink}, run_id="run-7")
    messages = consume({"bootstrap.servers": kafka.bootstrap_servers}, topic, 3)
    assert sorted((m.key() or b"").decode() for m in messages) == ["1", "2", "3"]
    values = sorted((json.loads(m.value() or b"") for m in messages), key=lambda v: v["event_id"])
    assert values[0] == {
        "event_id": "1", "user_id": "u001", "country": "DE", "event_type": "purchase", "amount": "10.5",
        "event_time": "2026-11-01T10:00:00Z",
    }  # fmt: skip
    assert all(headers_of(m) == {"etl-pipeline": PIPELINE.encode(), "etl-run": b"run-7"} for m in messages)
    assert metrics.records_loaded == 3


@pytest.mark.parametrize("value_format", ["avro", "avro-confluent"])
def test_avro_sink_writes_the_schema_fields(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path, value_format: str
) -> None:
    topic = new_topic(kafka)
    sink = {
        "sinkType": "Kafka",
        "bootstrapServers": kafka.bootstrap_servers,
        "topic": topic,
        "keyColumn": "user_id",
        "valueFormat": value_format,
        "schemaName": "user-event",
        **({"schemaId": 42} if value_format == "avro-confluent" else {}),
    }
    run(spark, {"extract": events_csv(tmp_path), "load": sink})
    messages = consume({"bootstrap.servers": kafka.bootstrap_servers}, topic, 3)
    records: list[dict[str, Any]] = []
    for message in messages:
        value = message.value() or b""
        if value_format == "avro-confluent":
            assert value[:5] == b"\x00\x00\x00\x00\x2a"
            value = value[5:]
        record = schemaless_reader(io.BytesIO(value), USER_EVENT, None)
        assert isinstance(record, dict)
        records.append(record)
    as_millis = [{**r, "event_time": int(r["event_time"].timestamp() * 1000)} for r in records]
    assert sorted(as_millis, key=lambda r: r["event_id"]) == EVENTS
    assert sorted((m.key() or b"").decode() for m in messages) == ["u001", "u001", "u002"]
    assert all(headers_of(m)["etl-pipeline"] == PIPELINE.encode() for m in messages)


def test_a_bad_record_met_while_writing_fails_the_run_as_a_data_error(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    source = events_csv(tmp_path)
    csv = Path(source["path"]) / "events.csv"
    csv.write_text(csv.read_text().replace(",10.5,", ",lots,"))
    sink = {"sinkType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic,
            "valueFormat": "avro", "schemaName": "user-event"}  # fmt: skip
    with pytest.raises(DataError, match="field amount: 'lots' does not cast to double"):
        run(spark, {"extract": source, "load": sink})


def test_a_message_larger_than_the_producer_allows_fails_the_run_as_a_data_error(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    """The record's fault, not the brokers': exit code 3, which the operator does not retry."""
    topic = new_topic(kafka)
    source = events_csv(tmp_path)
    csv = Path(source["path"]) / "events.csv"
    csv.write_text(csv.read_text().replace(",u002,", "," + "u" * 5000 + ","))
    sink = {"sinkType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic,
            "options": {"kafka.max.request.size": "4096"}}  # fmt: skip
    too_large = f"a message is too large for topic {topic} at brokers .*RecordTooLargeException"
    with pytest.raises(DataError, match=too_large) as raised:
        run(spark, {"extract": source, "load": sink})
    assert raised.value.exit_code == 3


def test_a_missing_sink_topic_is_named_with_the_brokers(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    sink = {"sinkType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": "no-such-output"}
    with pytest.raises(
        SinkRejected, match=f"topic no-such-output does not exist at brokers {kafka.bootstrap_servers}"
    ):
        run(spark, {"extract": events_csv(tmp_path), "load": sink})


# --- SASL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_read_and_write_with_credentials_from_secrets_never_logs_the_password(
    kafka: KafkaBroker, spark: SparkSession, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    source_topic, sink_topic = new_topic(kafka), new_topic(kafka)
    login = sasl_client(kafka, mechanism)
    produce(login, source_topic, [json_bytes(e) for e in EVENTS])
    spec = {
        "extract": {**kafka_source(kafka, source_topic, schemaName="user-event"),
                    "bootstrapServers": kafka.sasl_bootstrap, "security": sasl_security(mechanism)},
        "load": {"sinkType": "Kafka", "bootstrapServers": kafka.sasl_bootstrap, "topic": sink_topic,
                 "keyColumn": "event_id", "security": sasl_security(mechanism)},
    }  # fmt: skip
    with jvm_log(spark) as log:
        metrics = run(spark, spec, env=sasl_env(kafka))
    assert metrics.records_loaded == 3
    values = [json.loads(m.value() or b"") for m in consume(login, sink_topic, 3)]
    assert sorted(v["event_id"] for v in values) == [1, 2, 3]
    # The Kafka clients print their configuration, with the JAAS entry hidden.
    assert "sasl.jaas.config = [hidden]" in log[0]
    assert kafka.sasl_password not in log[0]
    assert kafka.sasl_password not in caplog.text


def test_a_wrong_sasl_password_is_a_clear_error_without_the_password(
    kafka: KafkaBroker, spark: SparkSession, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    wrong = "wrong-" + secrets.token_hex(6)
    source = {
        **kafka_source(kafka, topic),
        "bootstrapServers": kafka.sasl_bootstrap,
        "security": sasl_security("PLAIN"),
    }
    with jvm_log(spark) as log, pytest.raises(SourceUnavailable) as failed:
        run(spark, {"extract": source, "load": file_sink(tmp_path)}, env=sasl_env(kafka, wrong))
    message = str(failed.value)
    assert f"cannot read topic {topic} at brokers {kafka.sasl_bootstrap}: authentication failed" in message
    assert wrong not in message
    assert wrong not in log[0]
    assert failed.value.permanent  # a retry would meet the same refusal

    sink = {"sinkType": "Kafka", "bootstrapServers": kafka.sasl_bootstrap, "topic": topic,
            "security": sasl_security("PLAIN")}  # fmt: skip
    with pytest.raises(SinkRejected) as rejected:
        run(spark, {"extract": events_csv(tmp_path), "load": sink}, env=sasl_env(kafka, wrong))
    assert f"cannot write to topic {topic} at brokers {kafka.sasl_bootstrap}: authentication failed" in str(
        rejected.value
    )
    assert wrong not in str(rejected.value)
