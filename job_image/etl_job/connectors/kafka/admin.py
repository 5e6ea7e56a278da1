"""Looking at a topic before Spark reads or writes it, with the Kafka admin client of the JVM
Spark runs in (the client Spark's connector uses, so brokers, security and SSL stores mean the
same to both). A missing topic, unreachable brokers or refused credentials are named at once,
where Spark would wait for minutes or report something obscure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TopicState:
    partitions: list[int]
    #: The offset after the last message of each partition, when asked for.
    latest: dict[int, int]


class TopicProblem(Exception):
    """The admin client could not describe the topic; `missing` when the brokers say it does
    not exist, `permanent` when retrying cannot help (missing, refused credentials or rights).
    The message names neither brokers nor topic: the caller does."""

    def __init__(self, message: str, *, missing: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.missing, self.permanent = missing, permanent or missing


def inspect_topic(
    spark: Any, config: Mapping[str, str], topic: str, timeout_ms: int, *, latest_offsets: bool
) -> TopicState:
    """The topic's partitions, and their latest offsets when asked; TopicProblem otherwise."""
    jvm = spark.sparkContext._jvm
    unit = jvm.java.util.concurrent.TimeUnit.MILLISECONDS
    with _admin(jvm, config) as admin:
        try:
            described = admin.describeTopics(jvm.java.util.Collections.singletonList(topic))
            description = described.allTopicNames().get(timeout_ms, unit).get(topic)
            partitions = sorted(int(info.partition()) for info in description.partitions())
            latest: dict[int, int] = {}
            if latest_offsets and partitions:
                asked = jvm.java.util.HashMap()
                by_partition = {p: jvm.org.apache.kafka.common.TopicPartition(topic, p) for p in partitions}
                for topic_partition in by_partition.values():
                    asked.put(topic_partition, jvm.org.apache.kafka.clients.admin.OffsetSpec.latest())
                answers = admin.listOffsets(asked).all().get(timeout_ms, unit)
                latest = {p: int(answers.get(tp).offset()) for p, tp in by_partition.items()}
        except Exception as failed:  # noqa: BLE001 - py4j raises one error class for every Java one
            causes = java_causes(failed)
            raise TopicProblem(
                describe_causes(causes, timeout_ms), missing=is_missing(causes), permanent=is_refusal(causes)
            ) from None
    return TopicState(partitions, latest)


@contextmanager
def _admin(jvm: Any, config: Mapping[str, str]) -> Iterator[Any]:
    properties = jvm.java.util.Properties()
    for key, value in config.items():
        properties.setProperty(key, value)
    try:
        admin = jvm.org.apache.kafka.clients.admin.Admin.create(properties)
    except Exception as failed:  # noqa: BLE001 - a bad option fails the constructor
        raise TopicProblem(describe_causes(java_causes(failed), 0)) from None
    try:
        yield admin
    finally:
        admin.close(jvm.java.time.Duration.ofSeconds(5))


def java_causes(failed: BaseException) -> list[tuple[str, str]]:
    """(class name, message) of a Java exception and each of its causes, outermost first; the
    Python error alone when it did not come from the JVM."""
    throwable = getattr(failed, "java_exception", None)
    if throwable is None:
        return [(type(failed).__name__, str(failed))]
    causes: list[tuple[str, str]] = []
    while throwable is not None and len(causes) < 10:
        causes.append((str(throwable.getClass().getName()), str(throwable.getMessage() or "")))
        throwable = throwable.getCause()
    return causes


#: Wrappers that say nothing of their own.
_WRAPPERS = ("java.util.concurrent.ExecutionException", "org.apache.kafka.common.KafkaException")


def is_missing(causes: Sequence[tuple[str, str]]) -> bool:
    return any(name.endswith(".UnknownTopicOrPartitionException") for name, _ in causes)


def is_refusal(causes: Sequence[tuple[str, str]]) -> bool:
    """The brokers refused the credentials or the rights: a retry meets the same answer."""
    return any(name.endswith(("AuthenticationException", "AuthorizationException")) for name, _ in causes)


def describe_causes(causes: Sequence[tuple[str, str]], timeout_ms: int) -> str:
    """What went wrong, from the innermost cause that is not a bare wrapper."""
    meaningful = [(name, message) for name, message in causes if name not in _WRAPPERS] or list(causes)
    name, message = meaningful[-1] if meaningful else ("Error", "")
    simple = name.rsplit(".", 1)[-1]
    if simple == "TimeoutException" and timeout_ms:
        return f"no answer within {timeout_ms / 1000:g} s ({message.strip() or simple})"
    if simple in ("SaslAuthenticationException", "AuthenticationException"):
        return f"authentication failed ({message.strip() or simple})"
    return f"{simple}: {message.strip()}" if message.strip() else simple
