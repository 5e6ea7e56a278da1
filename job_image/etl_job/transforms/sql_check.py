"""Offline check of the SQL in a pipeline: every condition, expression and query must parse.

Parsing needs Spark's own parser, so this starts a small local JVM; it reads no data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etl_job.contract import (
    ConfigurationError,
    ETLPipelineSpec,
    FilterTransform,
    SelectTransform,
    SqlTransform,
)


def sql_fragments(spec: ETLPipelineSpec) -> Iterator[tuple[str, str, str]]:
    """(field, kind, text) for each piece of SQL: field is its path in the spec, such as
    `transforms[0].condition`; kind is "expression" or "query"."""
    for index, transform in enumerate(spec.transforms):
        at = f"transforms[{index}]"
        if isinstance(transform, FilterTransform):
            yield f"{at}.condition", "expression", transform.condition
        elif isinstance(transform, SelectTransform):
            for number, column in enumerate(transform.columns):
                yield f"{at}.columns[{number}]", "expression", column
        elif isinstance(transform, SqlTransform):
            yield f"{at}.query", "query", transform.query


def check_expressions(spec: ETLPipelineSpec, spark: Any = None) -> None:
    fragments = list(sql_fragments(spec))
    if not fragments:
        return
    if spark is None:
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[1]")
            .appName("etl-validate")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
    parser = spark._jsparkSession.sessionState().sqlParser()
    for field, kind, text in fragments:
        try:
            if kind == "query":
                parser.parsePlan(text)
            else:
                parser.parseExpression(text)
        except Exception as broken:  # noqa: BLE001 - py4j wraps Spark's ParseException
            detail = _first_line(broken)
            raise ConfigurationError(f"{kind} {text!r} does not parse: {detail}", field=field) from None


def _first_line(error: BaseException) -> str:
    text = str(error)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("An error occurred", ": org.apache", "py4j")):
            return line.removeprefix(": ")
    return text.splitlines()[0] if text else type(error).__name__
