"""Which dead letters a replay takes, decided without Spark: each letter's stable id, the
filters, the ledger of letters replayed before, and the attempt number of a letter that fails
again.

A letter in files has no id of its own, so its id is a hash of its content (every field of the
seed format), with the count of identical letters before it: two identical rows that failed in
one run are two letters. A letter in Kafka is named by its partition and offset.

A replay marks every letter it took: `replayed` when its row went through (loaded, or dropped
by a Filter), `failedAgain` when it was dead-lettered again. A letter that fails again lives on
as its successor, a new letter with attemptNumber + 1, the new error, and `replayOf` (the first
letter's id) in its context; so each record has one live letter, and a later replay takes the
successor and not the first one. A letter named by another letter's `replayOf` counts as marked
even when the ledger lacks it (a replay stopped after writing the successors, before its ledger)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The context key of a successor letter that names the letter it replaces.
REPLAY_OF = "replayOf"
#: Ledger outcomes.
REPLAYED = "replayed"
FAILED_AGAIN = "failedAgain"
#: Stages a letter can come from (the DLQ's `stage` field), as `etl replay --stage` names them.
STAGES = ("extract", "load")


@dataclass(frozen=True)
class Letter:
    """One dead letter, as read from the queue."""

    id: str
    timestamp: datetime | None
    pipeline_id: str
    stage: str
    error_type: str | None
    error_message: str | None
    original_record: str | None
    original_schema: str | None
    attempt_number: int
    context: Mapping[str, str] = field(default_factory=dict)

    @property
    def replay_of(self) -> str | None:
        return self.context.get(REPLAY_OF)


@dataclass(frozen=True)
class ReplayFilter:
    """What `etl replay` takes: letters of one pipeline, of a stage, an error type, since a time."""

    pipeline: str
    stage: str | None = None
    error_type: str | None = None
    since: datetime | None = None

    def matches(self, letter: Letter) -> bool:
        if letter.pipeline_id != self.pipeline:
            return False
        if self.stage is not None and letter.stage != self.stage:
            return False
        if self.error_type is not None and letter.error_type != self.error_type:
            return False
        return self.since is None or (letter.timestamp is not None and as_utc(letter.timestamp) >= self.since)


def as_utc(moment: datetime) -> datetime:
    """A naive time is UTC: the job's Spark session runs in UTC, and so are its letters."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_since(text: str) -> datetime:
    """`--since` as ISO-8601 (a date, or a time with or without offset; naive means UTC)."""
    return as_utc(datetime.fromisoformat(text.strip()))


def content_id(fields: Mapping[str, Any]) -> str:
    """The hash of a letter's fields, whatever order or format (Parquet, JSON) they came in."""
    canonical = json.dumps(
        {name: _canonical(value) for name, value in fields.items()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in sorted(value.items())}
    return value


def with_file_ids(contents: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of letters without one: content hash and how many identical letters came before."""
    seen: Counter[str] = Counter()
    ids = []
    for fields in contents:
        digest = content_id(fields)
        ids.append(f"{digest}-{seen[digest]}")
        seen[digest] += 1
    return ids


def kafka_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def to_replay(letters: Sequence[Letter], wanted: ReplayFilter, marked: Iterable[str]) -> list[Letter]:
    """The letters a replay takes: those matching `wanted`, neither in the ledger (`marked`) nor
    replaced by a successor letter."""
    done = set(marked) | {letter.replay_of for letter in letters if letter.replay_of}
    return [letter for letter in letters if wanted.matches(letter) and letter.id not in done]


def record_key(original_record: str | None) -> str | None:
    """An originalRecord in a form that ignores spacing and key order, to find the letter a
    failed-again row came from; None when it is not a JSON object."""
    if original_record is None:
        return None
    try:
        parsed = json.loads(original_record)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Successor:
    """What a row that failed again inherits: its attempt number and the letter it replaces."""

    attempt_number: int
    replay_of: str | None


def successors(taken: Sequence[Letter], failed_records: Sequence[str | None]) -> list[Successor]:
    """For each row that failed again (its new originalRecord), the letter it came from, found
    by its record: attempt + 1 and that letter's id. A row whose record changed on the way (a
    transform before the sink refused it) matches none: it gets the highest attempt taken + 1."""
    by_record: dict[str, list[Letter]] = {}
    for letter in taken:
        key = record_key(letter.original_record)
        if key is not None:
            by_record.setdefault(key, []).append(letter)
    fallback = max((letter.attempt_number for letter in taken), default=0) + 1
    found = []
    for record in failed_records:
        key = record_key(record)
        candidates = by_record.get(key, []) if key is not None else []
        if candidates:
            origin = candidates.pop(0)  # each letter is the origin of one row at most
            found.append(Successor(origin.attempt_number + 1, origin.id))
        else:
            found.append(Successor(fallback, None))
    return found


def outcomes(taken: Sequence[Letter], heirs: Sequence[Successor]) -> dict[str, str]:
    """The ledger's entry for each letter taken: failedAgain when a successor names it, else replayed."""
    failed = {heir.replay_of for heir in heirs if heir.replay_of}
    return {letter.id: FAILED_AGAIN if letter.id in failed else REPLAYED for letter in taken}


def replayable(letter: Letter) -> bool:
    """Whether the letter's originalRecord is a row (a JSON object), as validation and the sinks
    write it; a message that did not decode is its raw value, which no row can be made of."""
    return record_key(letter.original_record) is not None
