"""The pure decisions of `etl replay`: letter ids, filters, the ledger and successors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from etl_job.cli import main
from etl_job.connectors.letters import (
    FAILED_AGAIN,
    REPLAYED,
    Letter,
    ReplayFilter,
    content_id,
    outcomes,
    parse_since,
    replayable,
    successors,
    to_replay,
    with_file_ids,
)

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def letter(letter_id: str, **fields: Any) -> Letter:
    values: dict[str, Any] = {
        "timestamp": NOON,
        "pipeline_id": "orders",
        "stage": "extract",
        "error_type": "NullValue",
        "error_message": "field name: null in a non-nullable field",
        "original_record": '{"id": 1, "name": null}',
        "original_schema": "order",
        "attempt_number": 1,
        "context": {},
    }
    values.update(fields)
    return Letter(id=letter_id, **values)


def test_a_content_id_ignores_field_order_and_naive_utc_and_changes_with_any_field() -> None:
    fields = {"timestamp": NOON, "stage": "load", "context": {"b": "2", "a": "1"}}
    same = {"context": {"a": "1", "b": "2"}, "stage": "load", "timestamp": NOON.replace(tzinfo=None)}
    assert content_id(fields) == content_id(same)
    assert content_id(fields) != content_id({**fields, "stage": "extract"})


def test_identical_letters_get_ids_of_their_own() -> None:
    ids = with_file_ids([{"a": 1}, {"a": 2}, {"a": 1}])
    assert len(set(ids)) == 3
    assert ids[0].rsplit("-", 1)[0] == ids[2].rsplit("-", 1)[0]
    assert with_file_ids([{"a": 1}, {"a": 2}, {"a": 1}]) == ids  # stable between reads


def test_filters_take_this_pipeline_and_the_stage_type_and_time_named() -> None:
    letters = [
        letter("a"),
        letter("b", pipeline_id="other"),
        letter("c", stage="load", error_type="CheckViolation/23514"),
        letter("d", timestamp=datetime(2026, 12, 6, 12, 0)),
    ]

    def ids(wanted: ReplayFilter) -> list[str]:
        return [found.id for found in to_replay(letters, wanted, set())]

    assert ids(ReplayFilter("orders")) == ["a", "c", "d"]
    assert ids(ReplayFilter("orders", stage="load")) == ["c"]
    assert ids(ReplayFilter("orders", error_type="NullValue")) == ["a", "d"]
    assert ids(ReplayFilter("orders", since=parse_since("2026-12-07"))) == ["a", "c"]


def test_letters_in_the_ledger_or_replaced_by_a_successor_are_not_taken_again() -> None:
    letters = [
        letter("a"),
        letter("b"),
        letter("c"),
        letter("b2", attempt_number=2, context={"replayOf": "b"}),
    ]
    assert [found.id for found in to_replay(letters, ReplayFilter("orders"), {"a"})] == ["c", "b2"]


def test_a_row_that_fails_again_inherits_the_attempt_and_id_of_its_letter() -> None:
    taken = [
        letter("a", original_record='{"id": 1, "name": null}'),
        letter("b", original_record='{"id": 2, "name": null}', attempt_number=2),
    ]
    heirs = successors(taken, ['{"name":null,"id":2}', '{"id": 9}'])
    assert [(heir.attempt_number, heir.replay_of) for heir in heirs] == [(3, "b"), (3, None)]
    assert outcomes(taken, heirs) == {"a": REPLAYED, "b": FAILED_AGAIN}


def test_a_message_that_did_not_decode_is_no_row_to_replay() -> None:
    assert not replayable(letter("a", original_record="AgJh"))
    assert replayable(letter("a"))


def test_etl_replay_of_a_pipeline_without_a_queue_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "metadata": {"name": "orders"},
                "spec": {
                    "extract": {"sourceType": "S3", "path": "in/", "format": "csv"},
                    "load": {"sinkType": "S3", "path": "out/", "format": "parquet"},
                },
            }
        )
    )
    assert main(["replay", str(config)]) == 2
