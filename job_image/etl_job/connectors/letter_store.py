"""Reading a pipeline's dead letters back, and the ledger of those a replay took.

Files: the letters under `deadLetter.path` (Parquet or JSON, by date or not), and the ledger as
JSON files in `_replayed/` beside them, which Spark leaves out when it reads the letters (it
skips names starting with `_`). Kafka: the letters of the topic up to its end when the replay
starts, and the ledger in the compacted topic `<topic>.replayed` (created on first use), one
message per letter keyed by its id. A consumer group cannot serve as the ledger: its offset
marks a whole prefix of the topic, while a replay takes letters by filter and leaves the rest.

Each replay appends its ledger entries once its load and its new letters are written: a replay
stopped before that leaves its letters unmarked, and the next one takes them again (into an
upsert sink, to the same table)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from etl_job.connectors import deadletter
from etl_job.connectors.files.paths import resolve_path
from etl_job.connectors.files.s3 import use_connection
from etl_job.connectors.kafka.admin import TopicProblem, inspect_topic
from etl_job.connectors.kafka.connector import redact, resolve_security, write_messages
from etl_job.connectors.kafka.options import DEFAULT_ADMIN_TIMEOUT_MS, admin_config, offsets_json
from etl_job.connectors.letters import Letter, kafka_id, with_file_ids
from etl_job.contract import KafkaDeadLetter, S3DeadLetter, SourceUnavailable, secret_env_name
from etl_job.runtime.context import RunContext

#: The folder of a file queue's ledger, beside its letters.
LEDGER_FOLDER = "_replayed"
#: The suffix of a Kafka queue's ledger topic.
LEDGER_TOPIC_SUFFIX = ".replayed"
#: The dead letters' Spark schema, as deadletter.write writes them.
LETTER_SCHEMA = (
    "timestamp timestamp, pipelineId string, stage string, errorType string, errorMessage string, "
    "stackTrace string, originalRecord string, originalSchema string, attemptNumber int, "
    "context map<string,string>"
)
LEDGER_SCHEMA = "letter string, outcome string, replay string, replayedAt string"


class LetterStore(Protocol):
    def letters(self) -> list[Letter]: ...
    def marked(self) -> set[str]: ...
    def mark(self, outcomes: Mapping[str, str], replay: str, at: datetime) -> None: ...


def store_for(target: KafkaDeadLetter | S3DeadLetter, context: RunContext) -> LetterStore:
    if isinstance(target, KafkaDeadLetter):
        return KafkaLetters(target, context)
    return FileLetters(target, context)


def letter_from(fields: Mapping[str, Any], letter_id: str) -> Letter:
    timestamp = fields.get("timestamp")
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp)
    return Letter(
        id=letter_id,
        timestamp=timestamp,
        pipeline_id=str(fields.get("pipelineId") or ""),
        stage=str(fields.get("stage") or ""),
        error_type=fields.get("errorType"),
        error_message=fields.get("errorMessage"),
        original_record=fields.get("originalRecord"),
        original_schema=fields.get("originalSchema"),
        attempt_number=int(fields.get("attemptNumber") or 1),
        context=dict(fields.get("context") or {}),
    )


def _ledger_rows(outcomes: Mapping[str, str], replay: str, at: datetime) -> list[tuple[str, str, str, str]]:
    return [(letter, outcome, replay, at.isoformat()) for letter, outcome in sorted(outcomes.items())]


class FileLetters:
    """A dead-letter queue of files under a Hadoop path (s3a://, file://, local)."""

    def __init__(self, target: S3DeadLetter, context: RunContext) -> None:
        self.target, self.context = target, context
        self.path = resolve_path(target.path, context.base_dir).rstrip("/")
        self.ledger = f"{self.path}/{LEDGER_FOLDER}"
        use_connection(context.spark, self.path, target.s3, context.env, stage="deadLetter")

    def _exists(self, path: str) -> bool:
        spark = self.context.spark
        hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
        filesystem = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        return bool(filesystem.exists(hadoop_path))

    def letters(self) -> list[Letter]:
        if not self._exists(self.path):
            return []  # nothing was ever dead-lettered
        reader = self.context.spark.read.format(self.target.format).schema(LETTER_SCHEMA)
        try:
            rows = reader.load(self.path).select(*deadletter.DEAD_LETTER_COLUMNS).collect()
        except Exception as failed:  # noqa: BLE001 - Spark and the store raise many classes
            raise SourceUnavailable(
                f"cannot read the dead letters under {self.target.path}: {_first_line(failed)}",
                stage="replay",
            ) from None
        contents = [row.asDict(recursive=True) for row in rows]
        return [
            letter_from(fields, letter_id)
            for fields, letter_id in zip(contents, with_file_ids(contents), strict=True)
        ]

    def marked(self) -> set[str]:
        if not self._exists(self.ledger):
            return set()
        rows = self.context.spark.read.schema(LEDGER_SCHEMA).json(self.ledger).select("letter").collect()
        return {row["letter"] for row in rows if row["letter"]}

    def mark(self, outcomes: Mapping[str, str], replay: str, at: datetime) -> None:
        if not outcomes:
            return
        entries = self.context.spark.createDataFrame(_ledger_rows(outcomes, replay, at), LEDGER_SCHEMA)
        # One file per replay, committed whole by Spark's commit protocol.
        entries.coalesce(1).write.mode("append").json(self.ledger)


class KafkaLetters:
    """A dead-letter queue in a Kafka topic; its ledger in `<topic>.replayed`."""

    def __init__(self, target: KafkaDeadLetter, context: RunContext) -> None:
        self.target, self.context = target, context
        self.ledger = target.topic + LEDGER_TOPIC_SUFFIX
        self.options = {
            "kafka.bootstrap.servers": target.bootstrap_servers,
            **resolve_security(target.security, context.env, "deadLetter"),
        }
        refs = [target.security.username_ref, target.security.password_ref] if target.security else []
        self.secrets = [context.env.get(secret_env_name(ref), "") for ref in refs if ref is not None]

    def _messages(self, topic: str, *, missing_is_empty: bool) -> list[Any]:
        """Every message of `topic` up to its end now: letters written later (by this replay
        too) are for the next one."""
        config = admin_config(self.options, DEFAULT_ADMIN_TIMEOUT_MS)
        try:
            state = inspect_topic(
                self.context.spark, config, topic, DEFAULT_ADMIN_TIMEOUT_MS, latest_offsets=True
            )
        except TopicProblem as problem:
            if problem.missing and missing_is_empty:
                return []
            raise SourceUnavailable(
                f"cannot read topic {topic} at brokers {self.target.bootstrap_servers}: "
                f"{redact(str(problem), self.secrets)}",
                stage="replay",
                permanent=problem.permanent,
            ) from None
        if not any(state.latest.values()):
            return []
        frame = (
            self.context.spark.read.format("kafka")
            .options(**self.options)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("endingOffsets", offsets_json(topic, state.latest))
            .load()
        )
        messages: list[Any] = frame.selectExpr(
            "partition", "offset", "CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value"
        ).collect()
        return messages

    def letters(self) -> list[Letter]:
        found = []
        for message in self._messages(self.target.topic, missing_is_empty=False):
            try:
                fields = json.loads(message["value"])
            except (TypeError, ValueError):
                continue  # not a letter of this format
            if isinstance(fields, dict):
                found.append(
                    letter_from(fields, kafka_id(self.target.topic, message["partition"], message["offset"]))
                )
        return found

    def marked(self) -> set[str]:
        return {
            message["key"] for message in self._messages(self.ledger, missing_is_empty=True) if message["key"]
        }

    def mark(self, outcomes: Mapping[str, str], replay: str, at: datetime) -> None:
        if not outcomes:
            return
        self._create_ledger()
        entries = [
            (letter, json.dumps({"letter": letter, "outcome": outcome, "replay": run, "replayedAt": when}))
            for letter, outcome, run, when in _ledger_rows(outcomes, replay, at)
        ]
        write_messages(
            self.context.spark.createDataFrame(entries, "key string, value string"),
            bootstrap_servers=self.target.bootstrap_servers,
            topic=self.ledger,
            security=self.target.security,
            extra={},
            context=self.context,
            stage="replay",
        )

    def _create_ledger(self) -> None:
        """The ledger topic, compacted (one entry per letter is all that counts), if missing."""
        jvm = self.context.spark.sparkContext._jvm
        properties = jvm.java.util.Properties()
        for key, value in admin_config(self.options, DEFAULT_ADMIN_TIMEOUT_MS).items():
            properties.setProperty(key, value)
        admin = jvm.org.apache.kafka.clients.admin.Admin.create(properties)
        try:
            topic = jvm.org.apache.kafka.clients.admin.NewTopic(
                self.ledger, jvm.java.util.Optional.of(1), jvm.java.util.Optional.empty()
            )
            configs = jvm.java.util.HashMap()
            configs.put("cleanup.policy", "compact")
            topic.configs(configs)
            unit = jvm.java.util.concurrent.TimeUnit.MILLISECONDS
            try:
                admin.createTopics(jvm.java.util.Collections.singletonList(topic)).all().get(
                    DEFAULT_ADMIN_TIMEOUT_MS, unit
                )
            except Exception as failed:  # noqa: BLE001 - py4j raises one class for every Java one
                if "TopicExistsException" not in str(failed):
                    raise SourceUnavailable(
                        f"cannot create the ledger topic {self.ledger} at brokers "
                        f"{self.target.bootstrap_servers}: {redact(_first_line(failed), self.secrets)}",
                        stage="replay",
                    ) from None
        finally:
            admin.close()


def _first_line(failed: BaseException) -> str:
    text = str(failed)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(failed).__name__)
