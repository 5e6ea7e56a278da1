"""Whether a CSV source is parsed file by file or line by line, and what each reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from etl_job.connectors.files.csv_files import MAX_FILES_INSPECTED, file_sizes, parse_whole_files
from etl_job.connectors.registry import read_source
from etl_job.contract import FileFormat, S3Source
from etl_job.runtime.context import RunContext

HEADER = "id,note\n"
# A quoted value holding a line break: one record when a file is parsed whole, two broken ones
# when it is parsed line by line.
TWO_LINE_RECORD = '2,"first line\nsecond line"\n'


@pytest.mark.parametrize(
    ("sizes", "slots", "whole"),
    [
        ([100, 100], 2, True),
        ([100] * 8, 2, True),
        ([60, 50, 50, 40], 2, True),  # the largest file is no more than half of 200
        ([150, 50], 2, False),  # one task would read three quarters of the source
        ([100], 2, False),  # one file leaves a slot idle
        ([100, 100], 3, False),
        ([100, 100, 100], 1, True),
        ([], 2, False),
        ([100, 100], 0, False),
    ],
)
def test_files_are_parsed_whole_when_they_share_the_slots_evenly(
    sizes: list[int], slots: int, whole: bool
) -> None:
    assert parse_whole_files({"header": "true"}, sizes, slots) is whole


@pytest.mark.parametrize(
    "options",
    [
        {"multiLine": "false"},
        {"multiline": "true"},
        {"lineSep": "\n"},
        {"comment": "#"},
        {"encoding": "UTF-16"},
        {"header": "true", "someFutureOption": "x"},
    ],
)
def test_options_that_choose_or_may_parse_differently_keep_spark_line_parse(options: dict[str, str]) -> None:
    assert parse_whole_files(options, [100, 100], 2) is False


def test_options_that_parse_the_same_either_way_leave_the_choice_to_the_engine() -> None:
    options = {
        "HEADER": "true",
        "sep": ";",
        "nullValue": "NA",
        "mode": "DROPMALFORMED",
        "inferSchema": "true",
    }
    assert parse_whole_files(options, [100, 100], 2) is True


def read(spark: SparkSession, folder: Path, slots: int, **options: str) -> list[tuple[Any, ...]]:
    block = S3Source(
        source_type="S3", path=str(folder), format=FileFormat.csv, options={"header": "true", **options}
    )
    frame = read_source(block, RunContext(pipeline="t", spark=spark, task_slots=slots))
    return sorted(tuple(row) for row in frame.collect())


def test_balanced_files_are_parsed_whole_so_a_quoted_line_break_stays_in_its_value(
    spark: SparkSession, tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text(HEADER + "1,one\n" + TWO_LINE_RECORD)
    (tmp_path / "b.csv").write_text(HEADER + "3,three\n" + '4,"x, y"\n' + "5,\n" + "6,padding123\n")
    assert (tmp_path / "a.csv").stat().st_size == (tmp_path / "b.csv").stat().st_size

    assert read(spark, tmp_path, slots=2) == [
        ("1", "one"),
        ("2", "first line\nsecond line"),
        ("3", "three"),
        ("4", "x, y"),
        ("5", None),
        ("6", "padding123"),
    ]


def test_one_file_too_large_to_share_is_parsed_line_by_line(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        HEADER + "1,one\n" + TWO_LINE_RECORD + "".join(f"{n},x\n" for n in range(6, 40))
    )
    (tmp_path / "b.csv").write_text(HEADER + "3,three\n")

    rows = read(spark, tmp_path, slots=2)

    assert ("2", "first line") in rows and ('second line"', None) in rows
    assert len(rows) == 2 + 2 + 34


def test_the_source_options_choice_wins(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + TWO_LINE_RECORD)
    (tmp_path / "b.csv").write_text(HEADER + '3,"two\nlines"\n' + "4,abcdefghij\n")
    assert parse_whole_files({"header": "true"}, file_sizes(spark.read.csv(str(tmp_path))) or [], 2)

    rows = read(spark, tmp_path, slots=2, multiLine="false")

    assert ("2", "first line") in rows and ("3", "two") in rows and len(rows) == 5


def test_file_sizes_come_from_the_listing_of_a_plain_read(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n22\n333\n")
    (tmp_path / "_SUCCESS").write_text("")
    frame = spark.read.option("header", "true").csv(str(tmp_path))

    assert sorted(file_sizes(frame) or []) == [4, 9]
    assert file_sizes(frame.where("x > 1")) is None
    assert MAX_FILES_INSPECTED >= 1000
