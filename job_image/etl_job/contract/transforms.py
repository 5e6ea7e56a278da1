"""The `transforms` blocks: one model per `transformType`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from etl_job.contract.base import ColumnName, Duration, SpecModel, cel, cel_rules
from etl_job.contract.extract import Source


class FilterTransform(SpecModel):
    """Keep the rows for which a Spark SQL condition holds."""

    transform_type: Literal["Filter"]
    condition: str = Field(min_length=1, description='A Spark SQL boolean expression: "amount > 0".')


class SelectTransform(SpecModel):
    """Keep, compute and rename columns."""

    transform_type: Literal["Select"]
    columns: list[str] = Field(
        default_factory=list, description="Columns or Spark SQL expressions to keep, in order."
    )
    rename: dict[str, str] = Field(default_factory=dict, description="old name: new name.")

    @model_validator(mode="after")
    def _something_to_do(self) -> SelectTransform:
        if not self.columns and not self.rename:
            raise ValueError("give columns, rename or both")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.columns) && size(self.columns) > 0) ||"
                " (has(self.rename) && size(self.rename) > 0)",
                "give columns, rename or both",
            ),
        )
    )


class SqlTransform(SpecModel):
    """A Spark SQL query over the rows so far, which it sees as the view `input`."""

    transform_type: Literal["SQL"]
    query: str = Field(min_length=1, description="SELECT ... FROM input ...")


class JoinType(StrEnum):
    inner = "inner"
    left = "left"
    right = "right"
    full = "full"
    semi = "semi"
    anti = "anti"


class JoinTransform(SpecModel):
    """Join the rows with a second source on equal key columns."""

    transform_type: Literal["Join"]
    right: Source | None = Field(default=None, description="The other side: any extract block.")
    on: list[ColumnName] = Field(default_factory=list, description="Key columns present on both sides.")
    join_type: JoinType = Field(default=JoinType.inner, description="Kind of join.")
    broadcast: bool = Field(default=False, description="Broadcast the right side (a small dimension).")
    refresh_interval: Duration | None = Field(
        default=None,
        description="Streaming: read the right side once, keep it, and read it again when this long "
        "has passed (a dimension that changes now and then). Unset: read it for every micro-batch.",
    )
    # YAML 1.1 parsers (kubectl's among them) read an unquoted `on:` key as the boolean true, so
    # the object arrives with a "true" key. It is accepted as `on`; the field exists so the CRD
    # lets it through, and is always empty after parsing.
    on_as_yaml_boolean: list[ColumnName] | None = Field(
        default=None,
        alias="true",
        exclude=True,
        description='`on`, as YAML 1.1 reads an unquoted "on:" key. Prefer "on".',
    )

    @model_validator(mode="before")
    @classmethod
    def _unquoted_on_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "on" in data:
            return data
        for key in list(data):
            if key is True or key == "true":
                rest = {k: v for k, v in data.items() if k is not key}
                return {**rest, "on": data[key]}
        return data

    @model_validator(mode="after")
    def _needs_right_and_on(self) -> JoinTransform:
        if self.right is None:
            raise ValueError("a Join needs right")
        if not self.on:
            raise ValueError("a Join needs on")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.right)", "a Join needs right", ".right"),
            # An unquoted `on:` key arrives as "true" (see on_as_yaml_boolean); CEL spells it __true__.
            cel(
                "(has(self.on) && size(self.on) > 0) || (has(self.__true__) && size(self.__true__) > 0)",
                "a Join needs on",
                ".on",
            ),
        )
    )


AggregateFunction = Literal[
    "sum", "count", "count_distinct", "avg", "min", "max", "first", "last", "collect_list"
]


class Aggregate(SpecModel):
    """One output column of an aggregation."""

    column: ColumnName = Field(description='Input column; "*" with count counts rows.')
    function: AggregateFunction
    output: ColumnName | None = Field(
        default=None, alias="as", description="Output column name; default <function>_<column>."
    )

    @property
    def output_name(self) -> str:
        if self.output:
            return self.output
        column = "rows" if self.column == "*" else self.column
        return f"{self.function}_{column}"


def _aggregates_from_map_form(value: Any) -> Any:
    """Accept `{amount: sum}` beside the list form; the output column is then `sum_amount`."""
    if isinstance(value, dict):
        return [{"column": column, "function": function} for column, function in value.items()]
    return value


class AggregationTransform(SpecModel):
    """Group rows and aggregate each group."""

    transform_type: Literal["Aggregation"]
    group_by: list[ColumnName] = Field(default_factory=list, description="Grouping columns.")
    aggregations: list[Aggregate] = Field(
        min_length=1,
        description="List of {column, function, as}; the map form {amount: sum} is accepted too.",
        json_schema_extra={"x-etl-map-form": True},
    )

    _map_form = field_validator("aggregations", mode="before")(_aggregates_from_map_form)


WindowFunctionName = Literal[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "first",
    "last",
]


#: Window functions whose result depends on the order of the rows in the partition.
NEEDS_ORDER = frozenset(
    {"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead"}
)
NEEDS_ORDER_MESSAGE = "ranking and offset window functions need orderBy"
#: Columns one Window transform may compute, and transforms one pipeline may have.
MAX_WINDOW_FUNCTIONS = 64
MAX_TRANSFORMS = 100


def _cel_list(names: frozenset[str]) -> str:
    return "[" + ", ".join(f"'{name}'" for name in sorted(names)) + "]"


class OrderColumn(SpecModel):
    column: ColumnName
    descending: bool = False


class WindowFunction(SpecModel):
    """One column computed over a window of rows."""

    function: WindowFunctionName
    column: ColumnName | None = Field(default=None, description="Input column (not for ranking functions).")
    output: ColumnName = Field(alias="as", description="Output column name.")
    offset: int | None = Field(
        default=None, ge=1, description="For lag/lead: rows back or ahead; ntile: buckets."
    )

    @model_validator(mode="after")
    def _column_when_needed(self) -> WindowFunction:
        needs_column = self.function not in {
            "row_number",
            "rank",
            "dense_rank",
            "percent_rank",
            "cume_dist",
            "ntile",
            "count",
        }
        if needs_column and self.column is None:
            raise ValueError(f"window function {self.function} needs column")
        if self.function == "ntile" and self.offset is None:
            raise ValueError("window function ntile needs offset (the number of buckets)")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.function in ['row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist',"
                " 'ntile', 'count'] || has(self.column)",
                "this window function needs column",
                ".column",
            ),
            cel("self.function != 'ntile' || has(self.offset)", "ntile needs offset", ".offset"),
        )
    )


class WindowTransform(SpecModel):
    """Either analytic functions over partitions (partitionBy, orderBy, functions) or
    aggregations over time windows (timeColumn, windowDuration, groupBy, aggregations)."""

    transform_type: Literal["Window"]
    partition_by: list[ColumnName] = Field(default_factory=list)
    order_by: list[OrderColumn] = Field(default_factory=list)
    # Bounded so the API server can bound the cost of the CEL rule that looks into each one.
    functions: list[WindowFunction] = Field(default_factory=list, max_length=MAX_WINDOW_FUNCTIONS)
    time_column: ColumnName | None = Field(default=None, description="Event-time column of time windows.")
    window_duration: Duration | None = None
    slide_duration: Duration | None = Field(
        default=None, description="Sliding windows; tumbling when absent."
    )
    watermark: Duration | None = Field(default=None, description="How late an event may arrive (streaming).")
    group_by: list[ColumnName] = Field(
        default_factory=list, description="Extra grouping columns of time windows."
    )
    aggregations: list[Aggregate] = Field(default_factory=list, json_schema_extra={"x-etl-map-form": True})

    _map_form = field_validator("aggregations", mode="before")(_aggregates_from_map_form)

    @model_validator(mode="after")
    def _one_kind(self) -> WindowTransform:
        analytic, timed = bool(self.functions), self.time_column is not None
        if analytic == timed:
            raise ValueError("give functions (analytic window) or timeColumn (time window), not both")
        if analytic and not self.order_by and any(f.function in NEEDS_ORDER for f in self.functions):
            raise ValueError(NEEDS_ORDER_MESSAGE)
        if timed and (self.window_duration is None or not self.aggregations):
            raise ValueError("a time window needs windowDuration and aggregations")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.functions) && size(self.functions) > 0) != has(self.timeColumn)",
                "give functions (analytic window) or timeColumn (time window), not both",
            ),
            # `aggregations` takes a list or a map, so its CRD node has no type and CEL cannot see
            # it: the API server checks windowDuration, pydantic checks both.
            cel(
                "!has(self.functions) || (has(self.orderBy) && size(self.orderBy) > 0) || "
                f"!self.functions.exists(f, f.function in {_cel_list(NEEDS_ORDER)})",
                NEEDS_ORDER_MESSAGE,
                ".orderBy",
            ),
            cel(
                "!has(self.timeColumn) || has(self.windowDuration)",
                "a time window needs windowDuration and aggregations",
                ".windowDuration",
            ),
        )
    )


Transform = Annotated[
    FilterTransform | SelectTransform | SqlTransform | JoinTransform | AggregationTransform | WindowTransform,
    Field(discriminator="transform_type"),
]
