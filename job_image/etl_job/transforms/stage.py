"""The transform stage of a run: one class per `transformType`, applied in order to a DataFrame.

Each transform turns its spec model into Spark expressions; none reads or writes anything, and a
Join gets its second side from the engine through `TransformContext.read_source`. A mistake in
a transform's configuration (an unknown column, SQL that does not parse) surfaces when Spark
analyses the plan, which `apply_transforms` forces at each stage, so the `ConfigurationError` it
raises names the stage (`transforms[2] (Aggregation)`) and not some later action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from pyspark.errors import AnalysisException, IllegalArgumentException
from pyspark.sql import Column, DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType

from etl_job import contract
from etl_job.contract import ConfigurationError, EtlError, first_line
from etl_job.runtime.columns import named_column

logger = logging.getLogger("etl_job.transforms")

#: Reads one extract block (a Join's `right`) into a DataFrame.
SourceReader = Callable[[contract.Source], DataFrame]

#: Spark's exceptions for a plan that a configuration got wrong, raised when the plan is analysed.
SPARK_CONFIGURATION_ERRORS = (AnalysisException, IllegalArgumentException)

#: The name under which a SQL transform's query sees the rows so far.
SQL_INPUT_VIEW = "input"


@dataclass(frozen=True)
class TransformContext:
    """What the engine hands every transform besides the rows."""

    #: The run's session.
    spark: SparkSession
    #: Reads a source block; the engine's extract code, so transforms never do I/O themselves.
    #: It raises the engine's own errors (SourceUnavailable, ...) for sources it cannot read.
    read_source: SourceReader
    #: The pipeline's name, for logs.
    pipeline: str
    #: Makes one observer per Filter stage (given the stage name) that counts, as `removed`, the
    #: rows the stage drops; the engine adds them up as recordsFiltered. One per stage, because a
    #: Spark Observation attaches to one plan only.
    filter_counter: Callable[[str], RowObserver] | None = None
    #: The observer of the Filter stage being applied; set by apply_transforms.
    on_filter: RowObserver | None = None


class RowObserver(Protocol):
    """Observes aggregates of the rows that flow through a plan (etl_job.runtime.metrics.RowCounter)."""

    def attach(self, frame: DataFrame, **extra: Column) -> DataFrame: ...


class Transform(Protocol):
    """One configured transform: rows in, rows out."""

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame: ...


#: Builds a transform from its spec model (a class whose constructor takes the model will do).
TransformFactory = Callable[[Any], Transform]
FactoryT = TypeVar("FactoryT", bound=TransformFactory)

_REGISTRY: dict[str, TransformFactory] = {}


def register(transform_type: str) -> Callable[[FactoryT], FactoryT]:
    """Class decorator: `@register("Filter")` makes the class the transform of that transformType."""

    def decorate(factory: FactoryT) -> FactoryT:
        if transform_type in _REGISTRY:
            raise ValueError(f"transformType {transform_type} is registered twice")
        _REGISTRY[transform_type] = factory
        return factory

    return decorate


def registered_transform_types() -> frozenset[str]:
    return frozenset(_REGISTRY)


def transform_for(config: contract.Transform) -> Transform:
    """The transform that carries out one entry of `spec.transforms`.

    Raises ConfigurationError when no transform is registered for its transformType.
    """
    factory = _REGISTRY.get(config.transform_type)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigurationError(
            f"no transform is registered for {config.transform_type!r} (known: {known})",
            field="transformType",
        )
    return factory(config)


def stage_name(index: int, config: contract.Transform) -> str:
    """How messages name a transform: `transforms[2] (Aggregation)`."""
    return f"transforms[{index}] ({config.transform_type})"


def apply_transforms(
    frame: DataFrame, transforms: Sequence[contract.Transform], context: TransformContext
) -> DataFrame:
    """Apply `transforms` in order. Spark only plans here; no rows are computed.

    Raises ConfigurationError naming the stage (and the field or column) when a transform does
    not fit the rows it gets; other EtlErrors (from `read_source`) get the stage added too.
    """
    for index, config in enumerate(transforms):
        stage = stage_name(index, config)
        logger.debug("pipeline %s: planning %s", context.pipeline, stage)
        counts_rows = context.filter_counter is not None and isinstance(config, contract.FilterTransform)
        observer = context.filter_counter(stage) if context.filter_counter and counts_rows else None
        stage_context = replace(context, on_filter=observer)
        try:
            frame = _analysed(transform_for(config).apply(frame, stage_context))
        except EtlError as error:
            if error.stage is not None:
                raise
            raise _at_stage(error, stage) from error
        except SPARK_CONFIGURATION_ERRORS as error:
            raise ConfigurationError(spark_message(error), stage=stage) from error
    return frame


# --- the transforms -------------------------------------------------------------------------


@register("Filter")
@dataclass(frozen=True)
class Filter:
    config: contract.FilterTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        condition = self.config.condition
        with _spark_errors("condition"):
            kept = _analysed(frame.where(condition))
            # Observations do not support streaming plans; the count is a batch metric.
            if context.on_filter is None or frame.isStreaming:
                return kept
            observed = context.on_filter.attach(frame, removed=removed_rows(condition))
            return _analysed(observed.where(condition))


@register("Select")
@dataclass(frozen=True)
class Select:
    """Columns first (each a column or a Spark SQL expression), then renames of the result."""

    config: contract.SelectTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        if self.config.columns:
            with _spark_errors("columns"):
                frame = _analysed(frame.select(*(F.expr(column) for column in self.config.columns)))
        if self.config.rename:
            # withColumnsRenamed skips names it does not find; a rename that does nothing is a typo.
            missing = [old for old in self.config.rename if _find_column(frame, old) is None]
            if missing:
                raise ConfigurationError(
                    f"cannot rename {_names(missing)}: no such column (columns: {_names(frame.columns)})",
                    field="rename",
                )
            frame = frame.withColumnsRenamed(dict(self.config.rename))
        return frame


# Temp views belong to a session, and threads of one process may share it (streaming
# foreachBatch, tests): one SQL stage at a time holds the name.
_SQL_VIEW_LOCK = threading.Lock()


@register("SQL")
@dataclass(frozen=True)
class Sql:
    """`spark.sql(query)`, the query seeing the rows so far as the temp view `input`.

    The view is created under that very name, in the frame's own session, so the query reads as
    users write it; it exists only while the query is parsed and analysed and is dropped at once.
    That is safe because a classic session analyses `spark.sql` eagerly and the resulting plan
    holds the view's plan, not its name: consecutive SQL stages each see their own input, and
    a pipeline leaves no `input` view behind. A table of the user's called `input` is hidden
    from the query by the view. (A Spark Connect session resolves names lazily; the job does not
    use one.)
    """

    config: contract.SqlTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        session = frame.sparkSession
        with _SQL_VIEW_LOCK, _spark_errors("query"):
            frame.createOrReplaceTempView(SQL_INPUT_VIEW)
            try:
                return _analysed(session.sql(self.config.query))
            finally:
                session.catalog.dropTempView(SQL_INPUT_VIEW)


_JOIN_HOW: dict[str, str] = {
    "inner": "inner",
    "left": "left",
    "right": "right",
    "full": "full",
    "semi": "left_semi",
    "anti": "left_anti",
}


@register("Join")
@dataclass(frozen=True)
class Join:
    """An equi-join on key columns that both sides have; the key appears once in the output."""

    config: contract.JoinTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        if self.config.right is None:
            raise ConfigurationError("a Join needs right", field="right")
        right = context.read_source(self.config.right)
        _require_join_keys(frame, self.config.on, side="left")
        _require_join_keys(right, self.config.on, side="right")
        if self.config.broadcast:
            right = F.broadcast(right)
        with _spark_errors("on"):
            return _analysed(frame.join(right, on=list(self.config.on), how=_JOIN_HOW[self.config.join_type]))


@register("Aggregation")
@dataclass(frozen=True)
class Aggregation:
    """One row per group; with no groupBy, one row for all input."""

    config: contract.AggregationTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        with _spark_errors("aggregations"):
            columns = [aggregate_column(item) for item in self.config.aggregations]
            return _analysed(frame.groupBy(*self.config.group_by).agg(*columns))


@dataclass(frozen=True)
class AnalyticWindow:
    """Columns computed over a partition of rows, each row kept (partitionBy, orderBy, functions)."""

    config: contract.WindowTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        ordered = Window.partitionBy(*self.config.partition_by).orderBy(
            *(order_column(item) for item in self.config.order_by)
        )
        # Aggregates are running totals when rows have an order, else over the whole partition.
        if self.config.order_by:
            framed = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
        else:
            framed = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        with _spark_errors("functions"):
            columns = [
                window_function_column(function, ordered, framed).alias(function.output)
                for function in self.config.functions
            ]
            return _analysed(frame.select("*", *columns))


#: The struct column of F.window while grouping; flattened to window_start, window_end after.
_TIME_WINDOW = "__etl_time_window"


@dataclass(frozen=True)
class TimeWindow:
    """Aggregations per event-time window (tumbling, or sliding with slideDuration) and group.

    Output columns: window_start, window_end, the groupBy columns, then the aggregates.
    """

    config: contract.WindowTransform

    def apply(self, frame: DataFrame, context: TransformContext) -> DataFrame:
        if self.config.time_column is None or self.config.window_duration is None:
            raise ConfigurationError("a time window needs timeColumn and windowDuration", field="timeColumn")
        time_column = _find_column(frame, self.config.time_column)
        if time_column is None:
            raise ConfigurationError(
                f"{_names([self.config.time_column])} is not a column (columns: {_names(frame.columns)})",
                field="timeColumn",
            )
        frame = event_time(frame, time_column)
        if self.config.watermark is not None:
            # A no-op in batch; in streaming it bounds the state kept for late events.
            frame = frame.withWatermark(time_column, self.config.watermark)
        window = F.window(
            named_column(time_column), self.config.window_duration, self.config.slide_duration
        ).alias(_TIME_WINDOW)
        with _spark_errors("aggregations"):
            grouped = frame.groupBy(window, *self.config.group_by).agg(
                *(aggregate_column(item) for item in self.config.aggregations)
            )
            return _analysed(
                grouped.select(
                    F.col(f"{_TIME_WINDOW}.start").alias("window_start"),
                    F.col(f"{_TIME_WINDOW}.end").alias("window_end"),
                    *(named_column(name) for name in grouped.columns[1:]),
                )
            )


@register("Window")
def window(config: contract.WindowTransform) -> Transform:
    """A Window entry is a time window when it has timeColumn, else analytic functions."""
    if config.time_column is not None:
        return TimeWindow(config)
    return AnalyticWindow(config)


# --- expressions (pure) -------------------------------------------------------------------------

_AGGREGATE_FUNCTIONS: dict[str, Callable[[Column], Column]] = {
    "sum": F.sum,
    "count": F.count,
    "count_distinct": F.count_distinct,
    "avg": F.avg,
    "min": F.min,
    "max": F.max,
    # Nulls are skipped: "the first amount" means the first one there is.
    "first": lambda column: F.first(column, ignorenulls=True),
    "last": lambda column: F.last(column, ignorenulls=True),
    "collect_list": F.collect_list,
}

_RANKING_FUNCTIONS: dict[str, Callable[[], Column]] = {
    "row_number": F.row_number,
    "rank": F.rank,
    "dense_rank": F.dense_rank,
    "percent_rank": F.percent_rank,
    "cume_dist": F.cume_dist,
}


def removed_rows(condition: str) -> Column:
    """How many rows a Filter drops: those for which `condition` is false or null."""
    return F.count_if(~F.coalesce(F.expr(condition), F.lit(False)))


def aggregate_expression(function: str, column: str | None) -> Column:
    """`function` of `column` as a Spark aggregate; count of "*" (or of no column) counts rows."""
    if column is None or column == "*":
        if function != "count":
            raise ConfigurationError(f'{function} needs a column; "*" only counts rows')
        return F.count(F.lit(1))
    return _AGGREGATE_FUNCTIONS[function](F.col(column))


def aggregate_column(aggregate: contract.Aggregate) -> Column:
    """One aggregate, named by its `as` or `<function>_<column>`."""
    return aggregate_expression(aggregate.function, aggregate.column).alias(aggregate.output_name)


def order_column(order: contract.OrderColumn) -> Column:
    column = F.col(order.column)
    return column.desc() if order.descending else column.asc()


def window_function_column(
    function: contract.WindowFunction, ordered: WindowSpec, framed: WindowSpec
) -> Column:
    """One window function: ranking and offset functions over `ordered` (Spark fixes their
    frame), aggregates over `framed`."""
    name = function.function
    if name in _RANKING_FUNCTIONS:
        return _RANKING_FUNCTIONS[name]().over(ordered)
    if name == "ntile":
        if function.offset is None:
            raise ConfigurationError("ntile needs offset (the number of buckets)", field="functions")
        return F.ntile(function.offset).over(ordered)
    if name in ("lag", "lead"):
        if function.column is None:
            raise ConfigurationError(f"{name} needs column", field="functions")
        shift = F.lag if name == "lag" else F.lead
        return shift(F.col(function.column), function.offset or 1).over(ordered)
    return aggregate_expression(name, function.column).over(framed)


def event_time(frame: DataFrame, time_column: str) -> DataFrame:
    """The frame with `time_column` as a timestamp: strings and dates are cast, as windows and
    watermarks need a timestamp. A string that is not a time fails the run under ANSI mode;
    catching such rows is row validation's job."""
    data_type = frame.schema[time_column].dataType
    if isinstance(data_type, StringType | DateType):
        return frame.withColumn(time_column, named_column(time_column).cast("timestamp"))
    return frame


def spark_message(error: Exception) -> str:
    """The first non-blank line of a Spark error: its class and text, without the plan."""
    return first_line(error)


# --- helpers -------------------------------------------------------------------------------


def _analysed(frame: DataFrame) -> DataFrame:
    """Have Spark analyse the plan now, so a bad column or expression fails at its stage."""
    _ = frame.schema
    return frame


@contextmanager
def _spark_errors(field: str) -> Iterator[None]:
    """Spark's analysis errors inside the block are ConfigurationErrors about `field`."""
    try:
        yield
    except SPARK_CONFIGURATION_ERRORS as error:
        raise ConfigurationError(spark_message(error), field=field) from error


def _at_stage(error: EtlError, stage: str) -> EtlError:
    """The same error, of the same class, with the stage named."""
    message = str(error)
    if error.field and message.startswith(f"{error.field}: "):
        message = message[len(error.field) + 2 :]
    return type(error)(message, stage=stage, field=error.field)


def _find_column(frame: DataFrame, name: str) -> str | None:
    """The top-level column `name` refers to, matched as Spark matches names (case-insensitively
    unless spark.sql.caseSensitive is set); None when there is none."""
    if name in frame.columns:
        return name
    if (frame.sparkSession.conf.get("spark.sql.caseSensitive") or "false").lower() == "true":
        return None
    return next((column for column in frame.columns if column.lower() == name.lower()), None)


def _require_join_keys(frame: DataFrame, keys: Sequence[str], *, side: str) -> None:
    missing = [key for key in keys if _find_column(frame, key) is None]
    if missing:
        raise ConfigurationError(
            f"key column {_names(missing)} is missing on the {side} side "
            f"({side} columns: {_names(frame.columns)})",
            field="on",
        )


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
