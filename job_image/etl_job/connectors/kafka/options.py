"""The options of Spark's Kafka reader and writer, and of the admin client that checks a topic
first, built from a spec block: brokers, topic, offsets and security. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Mapping

from etl_job.contract import ConfigurationError, KafkaSecurity, KafkaSource

#: Login modules by SASL mechanism.
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
#: How long the admin client may take to describe a topic, unless kafka.default.api.timeout.ms says.
DEFAULT_ADMIN_TIMEOUT_MS = 30_000
ADMIN_TIMEOUT_OPTION = "kafka.default.api.timeout.ms"

#: Reader options that spec fields set, and the field to use instead.
SOURCE_OWNED = {
    "kafka.bootstrap.servers": "bootstrapServers",
    "subscribe": "topic",
    "subscribePattern": "topic",
    "assign": "topic",
    "startingOffsets": "startingOffsets",
    "endingOffsets": "endingOffsets",
    "kafka.security.protocol": "security.protocol",
    "kafka.sasl.mechanism": "security.saslMechanism",
    "kafka.sasl.jaas.config": "security.usernameRef and security.passwordRef",
}
#: Writer options that spec fields set, and the field to use instead.
SINK_OWNED = {
    "kafka.bootstrap.servers": "bootstrapServers",
    "topic": "topic",
    "kafka.security.protocol": "security.protocol",
    "kafka.sasl.mechanism": "security.saslMechanism",
    "kafka.sasl.jaas.config": "security.usernameRef and security.passwordRef",
}
#: Delivery guarantees of the writer; options may override them.
WRITER_DEFAULTS = {"kafka.acks": "all", "kafka.enable.idempotence": "true"}


def jaas_config(mechanism: str, username: str, password: str) -> str:
    """The sasl.jaas.config of a SASL login. Values are quoted, with quotes and backslashes
    escaped as Kafka's JAAS parser reads them."""
    module = LOGIN_MODULES.get(mechanism)
    if module is None:
        raise ConfigurationError(f"unknown SASL mechanism {mechanism}", field="security.saslMechanism")
    return f"{module} required username={_jaas_quoted(username)} password={_jaas_quoted(password)};"


def _jaas_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def security_options(
    security: KafkaSecurity | None, username: str | None = None, password: str | None = None
) -> dict[str, str]:
    """kafka.security.protocol, and for SASL kafka.sasl.mechanism and kafka.sasl.jaas.config.
    No block: the client's default, PLAINTEXT."""
    if security is None:
        return {}
    options: dict[str, str] = {"kafka.security.protocol": security.protocol}
    if security.protocol.startswith("SASL"):
        if username is None or password is None:
            raise ConfigurationError(
                f"protocol {security.protocol} needs a user and a password", field="security"
            )
        options["kafka.sasl.mechanism"] = security.sasl_mechanism
        options["kafka.sasl.jaas.config"] = jaas_config(security.sasl_mechanism, username, password)
    return options


def refuse_owned(options: Mapping[str, str], owned: Mapping[str, str], stage: str) -> None:
    """ConfigurationError for an option that a spec field sets (credentials above all: a
    password in options would sit in plain text in the pipeline object)."""
    for key in options:
        if key in owned:
            raise ConfigurationError(
                f"option {key} is set from {owned[key]}; remove it from options",
                stage=stage,
                field=f"options.{key}",
            )


def check_offsets(value: str, topic: str, *, field: str, names: tuple[str, ...], stage: str) -> None:
    """An offsets setting is one of `names` or JSON offsets of this topic's partitions:
    {"events": {"0": 42, "1": -2}} (-2 earliest, -1 latest)."""
    if value in names:
        return
    expected = f'{" or ".join(repr(n) for n in names)} or JSON such as {{"{topic}": {{"0": 42}}}}'
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigurationError(f"{value!r} is not {expected}", stage=stage, field=field) from None
    partitions = document.get(topic) if isinstance(document, dict) else None
    if not isinstance(partitions, dict) or set(document) != {topic}:
        raise ConfigurationError(
            f"{value!r} must give offsets of topic {topic} alone, as {expected}", stage=stage, field=field
        )
    for partition, offset in partitions.items():
        if not partition.isdigit() or not isinstance(offset, int) or isinstance(offset, bool) or offset < -2:
            raise ConfigurationError(
                f"{value!r}: partition {partition!r} needs an offset >= -2 (-2 earliest, -1 latest)",
                stage=stage,
                field=field,
            )


def pinned_offsets(
    setting: str,
    topic: str,
    partitions: list[int],
    latest: Mapping[int, int],
    *,
    field: str,
    stage: str,
) -> str:
    """An offsets setting with "latest" (and -1 in JSON) replaced by the latest offsets seen now.
    JSON must name every partition of the topic, as Spark's batch reader needs."""
    if setting == "latest":
        return offsets_json(topic, latest)
    if setting == "earliest":
        return setting
    given = {int(partition): offset for partition, offset in json.loads(setting)[topic].items()}
    if sorted(given) != sorted(partitions):
        raise ConfigurationError(
            f"offsets name partitions {sorted(given)} of topic {topic}; it has {sorted(partitions)}",
            stage=stage,
            field=field,
        )
    return offsets_json(
        topic, {p: latest.get(p, -1) if offset == -1 else offset for p, offset in given.items()}
    )


def offsets_json(topic: str, offsets: Mapping[int, int]) -> str:
    """Offsets per partition as Spark's Kafka reader takes them."""
    return json.dumps({topic: {str(partition): offset for partition, offset in sorted(offsets.items())}})


def reader_options(
    block: KafkaSource, security: Mapping[str, str], starting: str, ending: str
) -> dict[str, str]:
    """Spark's Kafka reader options of a batch read between two offsets settings."""
    return {
        **block.options,
        "kafka.bootstrap.servers": block.bootstrap_servers,
        "subscribe": block.topic,
        "startingOffsets": starting,
        "endingOffsets": ending,
        **security,
    }


def writer_options(
    bootstrap_servers: str, topic: str, extra: Mapping[str, str], security: Mapping[str, str]
) -> dict[str, str]:
    """Spark's Kafka writer options: acks from all replicas and idempotent retries by default."""
    return {
        **WRITER_DEFAULTS,
        **extra,
        "kafka.bootstrap.servers": bootstrap_servers,
        "topic": topic,
        **security,
    }


def admin_timeout_ms(options: Mapping[str, str]) -> int:
    """How long checking the topic may take: kafka.default.api.timeout.ms, else 30 s."""
    value = options.get(ADMIN_TIMEOUT_OPTION)
    if value is None:
        return DEFAULT_ADMIN_TIMEOUT_MS
    if not value.isdigit() or int(value) <= 0:
        raise ConfigurationError(
            f"{ADMIN_TIMEOUT_OPTION} must be a positive number of milliseconds, not {value!r}",
            field=f"options.{ADMIN_TIMEOUT_OPTION}",
        )
    return int(value)


def admin_config(options: Mapping[str, str], timeout_ms: int) -> dict[str, str]:
    """The admin client's configuration: the reader's or writer's kafka.* options without their
    prefix (brokers, security, SSL stores), with requests bounded by the timeout."""
    config = {key.removeprefix("kafka."): value for key, value in options.items() if key.startswith("kafka.")}
    config.setdefault("request.timeout.ms", str(timeout_ms))
    config.setdefault("default.api.timeout.ms", str(timeout_ms))
    return config


#: The Spark setting listing sources read and written through their V1 path.
V1_SOURCES = "spark.sql.sources.useV1SourceList"


def without_kafka(v1_sources: str) -> str:
    """The V1 source list without kafka, so Kafka goes through Spark's V2 path."""
    return ",".join(name for name in v1_sources.split(",") if name.strip().lower() != "kafka")
