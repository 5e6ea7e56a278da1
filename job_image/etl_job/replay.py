"""`etl replay`: a pipeline's own dead letters run through its validation, transforms and load
again, once each.

The letters are read once, when the replay starts (letters written after that, its own new ones
too, wait for the next replay), and those taken are chosen by connectors.letters: this
pipeline's, matching the filters, neither marked in the ledger nor replaced by a successor.
Their originalRecord is a row as the stage that set it aside saw it: a letter of the extract
stage holds a row of the source, which goes through validation, transforms and load; a letter of
the load stage holds a row of the output (past the transforms), which goes through the output's
validation and the load only. Rows are rebuilt from the records' JSON, numbers as numbers and
text as text, columns in the record's order; the stage's Avro schema converts them as in a run.

The replay writes no dead letters through the run: it takes the rows that fail again from the
run's report and writes them itself, each as the successor of the letter it came from
(attemptNumber + 1, the new error, `replayOf` in its context). Then it marks the letters taken
in the ledger (connectors.letter_store says where and why there). A sink written with
`overwrite` is appended to: the letters are rows missing from the output, not all of it."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from etl_job.connectors import deadletter
from etl_job.connectors.letter_store import LetterStore, store_for
from etl_job.connectors.letters import (
    REPLAY_OF,
    STAGES,
    Letter,
    ReplayFilter,
    outcomes,
    replayable,
    successors,
    to_replay,
)
from etl_job.contract import ConfigurationError, ETLPipeline, RunMetrics
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.columns import named_column
from etl_job.runtime.context import RunContext, RunReport
from etl_job.runtime.metrics import success_rate

log = logging.getLogger("etl_job.replay")


@dataclasses.dataclass(frozen=True)
class Selection:
    """The letters a replay takes, and those it leaves because no row can be made of them."""

    taken: list[Letter]
    not_rows: list[Letter]

    def summary(self) -> dict[str, Any]:
        """What --dry-run prints: how many letters, by stage and by error type."""
        return {
            "letters": len(self.taken),
            "byStage": dict(Counter(letter.stage for letter in self.taken)),
            "byErrorType": dict(Counter(letter.error_type or "" for letter in self.taken)),
            "notReplayable": len(self.not_rows),
        }


def select(store: LetterStore, wanted: ReplayFilter) -> Selection:
    chosen = to_replay(store.letters(), wanted, store.marked())
    return Selection(
        [letter for letter in chosen if replayable(letter)],
        [letter for letter in chosen if not replayable(letter)],
    )


def replay(
    pipeline: ETLPipeline,
    context: RunContext,
    schemas: SchemaRegistry,
    wanted: ReplayFilter,
    *,
    dry_run: bool = False,
) -> tuple[RunMetrics, Selection]:
    """Replay the letters `wanted` names; raise an EtlError subclass on failure, as a run does."""
    target = pipeline.spec.error_handling.dead_letter
    if target is None:
        raise ConfigurationError(
            f"pipeline {pipeline.name} has no dead-letter queue to replay", field="errorHandling.deadLetter"
        )
    started = datetime.now(UTC)
    store = store_for(target, context)
    selection = select(store, wanted)
    if selection.not_rows:
        log.warning(
            "%d letters hold no row (a message that did not decode) and are left in the queue",
            len(selection.not_rows),
            extra={"pipeline": pipeline.name},
        )
    if dry_run:
        return RunMetrics(records_extracted=len(selection.taken)), selection
    parts = []
    for stage in STAGES:
        taken = [letter for letter in selection.taken if letter.stage == stage]
        if taken:
            parts.append(_replay_stage(pipeline, context, schemas, store, stage, taken, started))
    metrics = combined(parts)
    return metrics.model_copy(
        update={"duration_ms": int((datetime.now(UTC) - started).total_seconds() * 1000)}
    ), selection


def _replay_stage(
    pipeline: ETLPipeline,
    context: RunContext,
    schemas: SchemaRegistry,
    store: LetterStore,
    stage: str,
    taken: Sequence[Letter],
    started: datetime,
) -> RunMetrics:
    """One run over the letters of one stage: load, the successors of the rows that failed
    again, then the ledger, in that order (a replay stopped on the way is taken up again)."""
    run_context = dataclasses.replace(context, report=RunReport())
    rows = rows_of(context.spark, [letter.original_record or "{}" for letter in taken])
    metrics = run_pipeline(replay_pipeline(pipeline, stage), run_context, schemas, source=rows)
    failed_again = _new_letters(run_context.report)
    heirs = []
    if failed_again:
        collected = [row.asDict(recursive=True) for frame in failed_again for row in frame.collect()]
        heirs = successors(taken, [fields["originalRecord"] for fields in collected])
        by_id = {letter.id: letter for letter in taken}
        for fields, heir in zip(collected, heirs, strict=True):
            origin = by_id.get(heir.replay_of or "")
            fields["attemptNumber"] = heir.attempt_number
            # The first letter's context (the source's topic and offset, say), then the new error's.
            entries = {**(origin.context if origin else {}), **(fields.get("context") or {})}
            entries.pop(REPLAY_OF, None)
            if heir.replay_of:
                entries[REPLAY_OF] = heir.replay_of
            fields["context"] = entries
        letters = context.spark.createDataFrame(
            [tuple(fields[name] for name in deadletter.DEAD_LETTER_COLUMNS) for fields in collected],
            failed_again[0].select(*deadletter.DEAD_LETTER_COLUMNS).schema,
        )
        assert pipeline.spec.error_handling.dead_letter is not None  # replay() checked it
        deadletter.write(letters, pipeline.spec.error_handling.dead_letter, stage, context)
    store.mark(outcomes(taken, heirs), context.run_id, started)
    log.info(
        "replayed %d letters of the %s stage: %d loaded, %d dead-lettered again",
        len(taken),
        stage,
        metrics.records_loaded,
        len(heirs),
        extra={"pipeline": pipeline.name},
    )
    return metrics


def _new_letters(report: RunReport) -> list[Any]:
    """The dead letters the run set aside: rows invalid again, and rows the sink refused."""
    frames = [checkpoint.rejected for checkpoint in report.checkpoints if checkpoint.failed]
    if report.sink_refusals is not None and report.sink_refusals.count:
        frames.append(report.sink_refusals.letters)
    return [frame for frame in frames if frame is not None]


def replay_pipeline(pipeline: ETLPipeline, stage: str) -> ETLPipeline:
    """The pipeline as a replay of one stage's letters runs it: without a dead-letter queue of
    its own (the replay writes the successors), appending instead of overwriting, and for rows of
    the output (the load stage's letters) without the extract's validation and the transforms."""
    spec = pipeline.spec
    load = spec.load
    if getattr(load, "write_mode", None) == "overwrite":
        load = load.model_copy(update={"write_mode": "append"})
    update: dict[str, Any] = {
        "load": load,
        "error_handling": spec.error_handling.model_copy(update={"dead_letter": None}),
    }
    if stage == "load":
        update["transforms"] = []
        update["extract"] = spec.extract.model_copy(update={"schema_name": None})
    return pipeline.model_copy(update={"spec": spec.model_copy(update=update)})


def rows_of(spark: Any, records: Sequence[str]) -> Any:
    """A DataFrame of the records (JSON objects), their columns in the order the records give."""
    import json

    order: dict[str, None] = {}
    for record in records:
        order.update(dict.fromkeys(json.loads(record)))
    frame = spark.read.json(spark.sparkContext.parallelize(list(records), 1))
    present = set(frame.columns)
    return frame.select(*[named_column(name) for name in order if name in present])


def combined(parts: Sequence[RunMetrics]) -> RunMetrics:
    """The metrics of a replay made of one run per stage."""
    failed_by_stage: Counter[str] = Counter()
    for part in parts:
        failed_by_stage.update(part.records_failed_by_stage or {})
    extracted = sum(part.records_extracted for part in parts)
    failed = sum(part.records_failed for part in parts)
    return RunMetrics(
        records_extracted=extracted,
        records_transformed=sum(part.records_transformed for part in parts),
        records_filtered=sum(part.records_filtered for part in parts),
        records_loaded=sum(part.records_loaded for part in parts),
        records_failed=failed,
        records_failed_by_stage=dict(failed_by_stage) or None,
        retry_count=sum(part.retry_count for part in parts),
        success_rate=success_rate(extracted, failed),
    )
