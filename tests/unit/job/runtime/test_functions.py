"""The job's own Spark SQL functions give exactly what the Spark expressions they replace give."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from etl_job.runtime import functions
from etl_job.runtime.functions import ISO_UTC_MICROS, has_functions, timestamp_from_text

USUAL_FORM = [
    "2026-11-11T19:36:16Z",
    "2026-11-11 19:36:16Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
    "0000-03-01T00:00:00Z",
    "9999-12-31T23:59:59.9Z",
    "2024-02-29T12:00:00.5Z",
    "2000-02-29T00:00:00.123Z",
    "1600-02-29T00:00:00.12345Z",
    "2026-04-30T23:59:59.000001Z",
]
# Text the function leaves to Spark's cast (it returns null), some of which the cast reads.
OTHER_TEXT = [
    "2023-02-29T00:00:00Z",  # not a leap year
    "1900-02-29T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-13-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "2026-01-32T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:60:00Z",
    "2026-01-01T23:59:60Z",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00:00z",
    "2026-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00+01:00",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00Z",
    "2026-01-01Z",
    "2026-01-01",
    " 2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00Z ",
    "2026-1-01T00:00:00Z",
    "+2026-01-01T00:00:00Z",
    "12026-01-01T00:00:00Z",
    "2026-01-01T00:00:00 Z",
    "2026/01/01T00:00:00Z",
    "2026-01-01X00:00:00Z",
    "20a6-01-01T00:00:00Z",
    "2026-01-01T0-:00:00Z",
    "not a time",
    "",
]


def fuzzed(count: int, seed: int = 7) -> list[str]:
    """Text of the usual form with one character replaced, to hit every check of the parser."""
    chosen = random.Random(seed)
    alphabet = "0123456789-:.TZ +/ a\u0661"
    texts = []
    for _ in range(count):
        text = list(chosen.choice(USUAL_FORM))
        text[chosen.randrange(len(text))] = chosen.choice(alphabet)
        texts.append("".join(text))
    return texts


def frame(spark: SparkSession, texts: Sequence[str | None]) -> Any:
    return spark.createDataFrame([(text,) for text in texts], "text string")


def test_the_session_has_the_functions(spark: SparkSession) -> None:
    assert has_functions(spark)
    assert spark.catalog.functionExists(ISO_UTC_MICROS)


def test_usual_iso_text_is_read_by_the_function_as_spark_casts_it(spark: SparkSession) -> None:
    rows = (
        frame(spark, USUAL_FORM)
        .select(
            F.call_function(ISO_UTC_MICROS, F.col("text")).alias("micros"),
            F.unix_micros(F.col("text").try_cast("timestamp")).alias("cast"),
        )
        .collect()
    )

    assert [row.micros for row in rows] == [row.cast for row in rows]
    assert all(row.micros is not None for row in rows)


def test_any_other_text_is_left_to_the_cast(spark: SparkSession) -> None:
    rows = (
        frame(spark, OTHER_TEXT).select(F.call_function(ISO_UTC_MICROS, F.col("text")).alias("m")).collect()
    )

    assert [row.m for row in rows] == [None] * len(OTHER_TEXT)


@pytest.mark.parametrize("session_zone", ["UTC", "America/New_York"])
def test_timestamp_from_text_equals_the_cast_for_every_text(spark: SparkSession, session_zone: str) -> None:
    texts: list[str | None] = [*USUAL_FORM, *OTHER_TEXT, *fuzzed(3000), None]
    zone = spark.conf.get("spark.sql.session.timeZone") or "UTC"
    spark.conf.set("spark.sql.session.timeZone", session_zone)
    try:
        rows = (
            frame(spark, texts)
            .select(
                "text",
                F.unix_micros(timestamp_from_text(F.col("text"))).alias("read"),
                F.unix_micros(F.col("text").try_cast("timestamp")).alias("cast"),
            )
            .collect()
        )
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)

    differing = [(row.text, row.read, row.cast) for row in rows if row.read != row.cast]
    assert differing == []
    assert sum(row.cast is not None for row in rows) > len(USUAL_FORM)


def test_without_the_functions_the_cast_alone_is_used(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(functions, "has_functions", lambda session: False)

    read = timestamp_from_text(F.col("text"))

    assert ISO_UTC_MICROS not in str(read)
    assert frame(spark, USUAL_FORM[:1]).select(F.unix_micros(read)).first()[0] == 1794425776000000


class SessionWithoutJar:
    """Stands in for a SparkSession whose classpath lacks the jar: one process holds one
    SparkContext, and the test run's own session has the jar."""

    def __init__(self) -> None:
        self.attempts = 0
        self.catalog = self
        self.udf = self

    def functionExists(self, name: str) -> bool:
        return False

    def registerJavaFunction(self, name: str, class_name: str, return_type: Any) -> None:
        self.attempts += 1
        raise RuntimeError(f"Can not load class {class_name}")


def test_a_session_without_the_jar_is_tried_once() -> None:
    session = SessionWithoutJar()

    assert [has_functions(session), has_functions(session)] == [False, False]
    assert session.attempts == 1
