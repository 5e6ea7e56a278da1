"""The pure parts of the Kafka connector: reader, writer and admin options, SASL logins,
offsets, and how client errors are told apart and kept free of credentials."""

from __future__ import annotations

import json

import pytest

from etl_job.connectors.kafka import options as kafka_options
from etl_job.connectors.kafka.admin import describe_causes, is_missing, is_refusal
from etl_job.connectors.kafka.connector import redact, resolve_security
from etl_job.contract import ConfigurationError, CredentialsMissing, KafkaSecurity, KafkaSource, SecretKeyRef
from etl_job.contract.credentials import secret_env_name

USER = SecretKeyRef(name="kafka", key="user")
PASSWORD = SecretKeyRef(name="kafka", key="password")
SASL = KafkaSecurity(
    protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username_ref=USER, password_ref=PASSWORD
)


def source(**fields: object) -> KafkaSource:
    return KafkaSource.model_validate(
        {"sourceType": "Kafka", "bootstrapServers": "b:9092", "topic": "events", **fields}
    )


# --- security -------------------------------------------------------------------------------


def test_jaas_config_names_the_login_module_of_the_mechanism() -> None:
    assert kafka_options.jaas_config("PLAIN", "etl", "s3cret") == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="etl" password="s3cret";'
    )
    assert kafka_options.jaas_config("SCRAM-SHA-256", "etl", "x").startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
    )


def test_jaas_values_escape_quotes_and_backslashes() -> None:
    config = kafka_options.jaas_config("PLAIN", 'e"tl', 'pa\\ss"word;')
    assert config.endswith(' username="e\\"tl" password="pa\\\\ss\\"word;";')


def test_security_options_per_protocol() -> None:
    assert kafka_options.security_options(None) == {}
    assert kafka_options.security_options(KafkaSecurity(protocol="SSL")) == {"kafka.security.protocol": "SSL"}
    options = kafka_options.security_options(SASL, "etl", "pw")
    assert options == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": kafka_options.jaas_config("SCRAM-SHA-512", "etl", "pw"),
    }


def test_security_reads_the_user_and_password_from_the_secret_values() -> None:
    env = {secret_env_name(USER): "etl", secret_env_name(PASSWORD): "pw"}
    assert resolve_security(SASL, env, "extract")["kafka.sasl.jaas.config"].endswith(
        'username="etl" password="pw";'
    )
    with pytest.raises(CredentialsMissing, match="Secret kafka key password is not in the environment"):
        resolve_security(SASL, {secret_env_name(USER): "etl"}, "extract")


def test_options_that_spec_fields_set_are_refused_naming_the_field() -> None:
    kafka_options.refuse_owned({"kafka.max.poll.records": "500"}, kafka_options.SOURCE_OWNED, "extract")
    with pytest.raises(ConfigurationError, match="option subscribe is set from topic") as refused:
        kafka_options.refuse_owned({"subscribe": "other"}, kafka_options.SOURCE_OWNED, "extract")
    assert refused.value.field == "options.subscribe"
    with pytest.raises(ConfigurationError, match=r"usernameRef and security\.passwordRef"):
        kafka_options.refuse_owned({"kafka.sasl.jaas.config": "..."}, kafka_options.SINK_OWNED, "load")


# --- offsets --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["earliest", "latest", '{"events": {"0": 5, "1": -2}}'])
def test_starting_offsets_that_are_accepted(value: str) -> None:
    kafka_options.check_offsets(
        value, "events", field="startingOffsets", names=("earliest", "latest"), stage="x"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("earliest", "'earliest' is not 'latest' or JSON"),
        ("{not json", "is not 'latest' or JSON"),
        ('{"other": {"0": 1}}', "must give offsets of topic events alone"),
        ('{"events": {"0": 1}, "other": {"0": 1}}', "must give offsets of topic events alone"),
        ('{"events": {"0": -3}}', "partition '0' needs an offset >= -2"),
        ('{"events": {"x": 1}}', "partition 'x' needs an offset"),
        ('{"events": {"0": true}}', "partition '0' needs an offset"),
    ],
)
def test_ending_offsets_that_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        kafka_options.check_offsets(
            value, "events", field="endingOffsets", names=("latest",), stage="extract"
        )
    assert refused.value.field == "endingOffsets"


def test_latest_is_pinned_to_the_offsets_seen_now() -> None:
    def pin(setting: str) -> str:
        return kafka_options.pinned_offsets(setting, "events", [0, 1], {0: 7, 1: 3}, field="f", stage="s")

    assert json.loads(pin("latest")) == {"events": {"0": 7, "1": 3}}
    assert pin("earliest") == "earliest"
    assert json.loads(pin('{"events": {"1": -1, "0": 2}}')) == {"events": {"0": 2, "1": 3}}
    with pytest.raises(
        ConfigurationError, match=r"offsets name partitions \[0\] of topic events; it has \[0, 1\]"
    ):
        pin('{"events": {"0": 2}}')


# --- reader, writer, admin ------------------------------------------------------------------


def test_reader_options_keep_extra_options_and_set_the_rest_from_the_spec() -> None:
    block = source(options={"kafka.max.poll.records": "100", "failOnDataLoss": "false"})
    options = kafka_options.reader_options(block, {"kafka.security.protocol": "SSL"}, "earliest", "{}")
    assert options == {
        "kafka.max.poll.records": "100",
        "failOnDataLoss": "false",
        "kafka.bootstrap.servers": "b:9092",
        "subscribe": "events",
        "startingOffsets": "earliest",
        "endingOffsets": "{}",
        "kafka.security.protocol": "SSL",
    }


def test_writer_options_deliver_to_all_replicas_idempotently_unless_told_otherwise() -> None:
    assert kafka_options.writer_options("b:9092", "out", {}, {}) == {
        "kafka.acks": "all",
        "kafka.enable.idempotence": "true",
        "kafka.bootstrap.servers": "b:9092",
        "topic": "out",
    }
    assert kafka_options.writer_options("b:9092", "out", {"kafka.acks": "1"}, {})["kafka.acks"] == "1"


def test_admin_config_takes_the_client_options_and_bounds_requests() -> None:
    options = {"kafka.bootstrap.servers": "b:9092", "kafka.sasl.mechanism": "PLAIN", "subscribe": "events"}
    assert kafka_options.admin_config(options, 5000) == {
        "bootstrap.servers": "b:9092",
        "sasl.mechanism": "PLAIN",
        "request.timeout.ms": "5000",
        "default.api.timeout.ms": "5000",
    }
    assert (
        kafka_options.admin_config({"kafka.request.timeout.ms": "100"}, 5000)["request.timeout.ms"] == "100"
    )


def test_admin_timeout_comes_from_the_api_timeout_option() -> None:
    assert kafka_options.admin_timeout_ms({}) == kafka_options.DEFAULT_ADMIN_TIMEOUT_MS
    assert kafka_options.admin_timeout_ms({"kafka.default.api.timeout.ms": "2500"}) == 2500
    with pytest.raises(ConfigurationError, match="must be a positive number of milliseconds"):
        kafka_options.admin_timeout_ms({"kafka.default.api.timeout.ms": "soon"})


def test_kafka_leaves_the_v1_source_list_alone_otherwise() -> None:
    assert (
        kafka_options.without_kafka("avro,csv,json,kafka,orc,parquet,text")
        == "avro,csv,json,orc,parquet,text"
    )
    assert kafka_options.without_kafka("parquet") == "parquet"


# --- errors ---------------------------------------------------------------------------------

EXECUTION = "java.util.concurrent.ExecutionException"


def test_client_errors_are_described_by_their_innermost_cause() -> None:
    missing = [
        (EXECUTION, "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: no"),
        ("org.apache.kafka.common.errors.UnknownTopicOrPartitionException", "This server does not host it."),
    ]
    assert is_missing(missing)
    assert describe_causes(missing, 1000) == "UnknownTopicOrPartitionException: This server does not host it."
    timeout = [(EXECUTION, "x"), ("org.apache.kafka.common.errors.TimeoutException", "Timed out waiting")]
    assert not is_missing(timeout)
    assert describe_causes(timeout, 2000) == "no answer within 2 s (Timed out waiting)"
    login = [
        (EXECUTION, "x"),
        ("org.apache.kafka.common.errors.SaslAuthenticationException", "Invalid password"),
    ]
    assert describe_causes(login, 2000) == "authentication failed (Invalid password)"
    assert is_refusal(login) and not is_refusal(timeout)
    assert is_refusal([("org.apache.kafka.common.errors.TopicAuthorizationException", "Not authorized")])
    assert describe_causes([("Py4JError", "gone")], 0) == "Py4JError: gone"


def test_redact_replaces_every_secret_value() -> None:
    assert redact('password="pw" and pw again', ["pw", ""]) == 'password="***" and *** again'
