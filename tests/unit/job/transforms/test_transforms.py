"""Each transform on a tiny DataFrame with exact expected rows, and each configuration mistake as a
ConfigurationError naming the stage and the column."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl_job import contract
from etl_job.contract import ConfigurationError, SourceUnavailable
from etl_job.runtime.metrics import RowCounter
from etl_job.transforms.stage import (
    Filter,
    TransformContext,
    apply_transforms,
    register,
    registered_transform_types,
)

TRANSFORM = TypeAdapter[contract.Transform](contract.Transform)

ORDERS_SCHEMA = "order_id int, customer_id string, amount int, status string"
ORDERS = [
    (1, "c1", 10, "paid"),
    (2, "c1", 20, "paid"),
    (3, "c2", 5, "refunded"),
    (4, "c3", None, "paid"),
    (5, "c2", 15, "paid"),
]


def parse(document: dict[str, Any]) -> contract.Transform:
    """A transform as the manifest spells it, through the contract."""
    return TRANSFORM.validate_python(document)


def no_sources(block: contract.Source) -> DataFrame:
    raise AssertionError(f"no source should be read, not {block}")


def run(
    frame: DataFrame,
    *documents: dict[str, Any],
    read_source: Callable[[contract.Source], DataFrame] = no_sources,
    filter_counters: dict[str, RowCounter] | None = None,
) -> DataFrame:
    def count_filter(stage: str) -> RowCounter:
        assert filter_counters is not None
        return filter_counters.setdefault(stage, RowCounter(stage))

    context = TransformContext(
        spark=frame.sparkSession,
        read_source=read_source,
        pipeline="test",
        filter_counter=count_filter if filter_counters is not None else None,
    )
    return apply_transforms(frame, [parse(document) for document in documents], context)


def rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    return sorted((tuple(row) for row in frame.collect()), key=repr)


def same_rows(expected: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(expected, key=repr)


def assert_frame(frame: DataFrame, columns: Sequence[str], expected: Iterable[tuple[Any, ...]]) -> None:
    assert frame.columns == list(columns)
    assert rows(frame) == same_rows(expected)


def configuration_error(frame: DataFrame, *documents: dict[str, Any], **options: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        run(frame, *documents, **options).collect()
    return caught.value


@pytest.fixture
def orders(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ORDERS, ORDERS_SCHEMA)


# --- registry --------------------------------------------------------------------------------


def test_every_transform_type_of_the_contract_has_a_transform() -> None:
    (union, *_) = typing.get_args(contract.Transform)
    declared = {
        type_name
        for model in typing.get_args(union)
        for type_name in typing.get_args(model.model_fields["transform_type"].annotation)
    }
    assert declared == {"Filter", "Select", "SQL", "Join", "Aggregation", "Window"}
    assert registered_transform_types() == declared


def test_a_transform_type_is_registered_once() -> None:
    with pytest.raises(ValueError, match="Filter"):
        register("Filter")(Filter)


def test_transforms_apply_in_order(orders: DataFrame) -> None:
    result = run(
        orders,
        {"transformType": "Filter", "condition": "status = 'paid'"},
        {"transformType": "Select", "columns": ["customer_id", "amount"]},
        {"transformType": "Aggregation", "groupBy": ["customer_id"], "aggregations": {"amount": "sum"}},
    )
    assert_frame(result, ["customer_id", "sum_amount"], [("c1", 30), ("c2", 15), ("c3", None)])


# --- Filter ----------------------------------------------------------------------------------


def test_filter_keeps_rows_where_the_condition_holds(orders: DataFrame) -> None:
    result = run(orders, {"transformType": "Filter", "condition": "amount > 8 AND status = 'paid'"})
    assert_frame(result, orders.columns, [ORDERS[0], ORDERS[1], ORDERS[4]])


def test_filter_counts_removed_rows_including_null_conditions(orders: DataFrame) -> None:
    counters: dict[str, RowCounter] = {}
    result = run(orders, {"transformType": "Filter", "condition": "amount > 8"}, filter_counters=counters)
    assert rows(result) == same_rows([ORDERS[0], ORDERS[1], ORDERS[4]])
    assert counters["transforms[0] (Filter)"].values() == {"rows": 5, "removed": 2}


def test_every_filter_stage_is_counted(orders: DataFrame) -> None:
    counters: dict[str, RowCounter] = {}
    result = run(
        orders,
        {"transformType": "Filter", "condition": "status = 'paid'"},
        {"transformType": "Filter", "condition": "amount > 10"},
        filter_counters=counters,
    )
    assert rows(result) == same_rows([ORDERS[1], ORDERS[4]])
    assert counters["transforms[0] (Filter)"].values() == {"rows": 5, "removed": 1}
    assert counters["transforms[1] (Filter)"].values() == {"rows": 4, "removed": 2}


# --- Select ----------------------------------------------------------------------------------


def test_select_computes_expressions_then_renames(orders: DataFrame) -> None:
    result = run(
        orders,
        {
            "transformType": "Select",
            "columns": ["order_id", "amount * 2 AS doubled", "upper(status) AS status"],
            "rename": {"order_id": "id"},
        },
    )
    assert_frame(
        result,
        ["id", "doubled", "status"],
        [(1, 20, "PAID"), (2, 40, "PAID"), (3, 10, "REFUNDED"), (4, None, "PAID"), (5, 30, "PAID")],
    )


def test_select_with_rename_only_keeps_every_column(orders: DataFrame) -> None:
    result = run(orders, {"transformType": "Select", "rename": {"amount": "total", "status": "state"}})
    assert_frame(result, ["order_id", "customer_id", "total", "state"], ORDERS)


# --- SQL ------------------------------------------------------------------------------------


def test_sql_queries_the_rows_so_far_as_input(orders: DataFrame) -> None:
    result = run(
        orders,
        {
            "transformType": "SQL",
            "query": "SELECT customer_id, SUM(amount) AS total FROM input GROUP BY customer_id",
        },
    )
    assert_frame(result, ["customer_id", "total"], [("c1", 30), ("c2", 20), ("c3", None)])


def test_consecutive_sql_stages_each_see_their_own_input(spark: SparkSession, orders: DataFrame) -> None:
    result = run(
        orders,
        {"transformType": "SQL", "query": "SELECT order_id, amount FROM input WHERE amount IS NOT NULL"},
        {"transformType": "SQL", "query": "SELECT COUNT(*) AS orders, SUM(amount) AS total FROM input"},
    )
    assert not spark.catalog.tableExists("input")
    assert_frame(result, ["orders", "total"], [(4, 50)])


# --- Join ------------------------------------------------------------------------------------

CUSTOMERS_SOURCE = {"sourceType": "S3", "path": "s3a://dimensions/customers/", "format": "parquet"}


@pytest.fixture
def order_keys(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(1, "c1"), (2, "c1"), (3, "c2"), (4, "c3")], "order_id int, customer_id string"
    )


class Customers:
    """The engine's reader, as a Join sees it: here it returns rows held in memory."""

    def __init__(self, spark: SparkSession) -> None:
        self.frame = spark.createDataFrame(
            [("c1", "Ada"), ("c2", "Bob"), ("c4", "Dan")], "customer_id string, name string"
        )
        self.blocks: list[contract.Source] = []

    def __call__(self, block: contract.Source) -> DataFrame:
        self.blocks.append(block)
        return self.frame


INNER = [("c1", 1, "Ada"), ("c1", 2, "Ada"), ("c2", 3, "Bob")]


@pytest.mark.parametrize(
    ("join_type", "columns", "expected"),
    [
        ("inner", ["customer_id", "order_id", "name"], INNER),
        ("left", ["customer_id", "order_id", "name"], [*INNER, ("c3", 4, None)]),
        ("right", ["customer_id", "order_id", "name"], [*INNER, ("c4", None, "Dan")]),
        ("full", ["customer_id", "order_id", "name"], [*INNER, ("c3", 4, None), ("c4", None, "Dan")]),
        ("semi", ["customer_id", "order_id"], [("c1", 1), ("c1", 2), ("c2", 3)]),
        ("anti", ["customer_id", "order_id"], [("c3", 4)]),
    ],
)
def test_join_types(
    spark: SparkSession,
    order_keys: DataFrame,
    join_type: str,
    columns: list[str],
    expected: list[tuple[Any, ...]],
) -> None:
    customers = Customers(spark)
    result = run(
        order_keys,
        {"transformType": "Join", "right": CUSTOMERS_SOURCE, "on": ["customer_id"], "joinType": join_type},
        read_source=customers,
    )
    assert_frame(result, columns, expected)
    assert customers.blocks == [contract.S3Source(source_type="S3", path="s3a://dimensions/customers/")]


@pytest.mark.parametrize("broadcast", [True, False])
def test_join_broadcast_hint(
    spark: SparkSession, order_keys: DataFrame, broadcast: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(
        order_keys,
        {"transformType": "Join", "right": CUSTOMERS_SOURCE, "on": ["customer_id"], "broadcast": broadcast},
        read_source=Customers(spark),
    )
    result.explain(extended=True)
    assert ("strategy=broadcast" in capsys.readouterr().out) is broadcast
    assert rows(result) == same_rows(INNER)


def test_join_accepts_the_unquoted_on_key_of_yaml_1_1(spark: SparkSession, order_keys: DataFrame) -> None:
    result = run(
        order_keys,
        {"transformType": "Join", "right": CUSTOMERS_SOURCE, "true": ["customer_id"]},
        read_source=Customers(spark),
    )
    assert rows(result) == same_rows(INNER)


# --- Aggregation -------------------------------------------------------------------------

AMOUNTS = [("a", None), ("a", 10), ("a", 20), ("a", 10), ("a", 30), ("a", None), ("b", 5), ("b", None)]


@pytest.fixture
def amounts(spark: SparkSession) -> DataFrame:
    # One partition, so first and last see the rows in this order.
    return spark.createDataFrame(AMOUNTS, "key string, amount int").coalesce(1)


def test_aggregation_map_form(orders: DataFrame) -> None:
    result = run(
        orders,
        {
            "transformType": "Aggregation",
            "groupBy": ["customer_id"],
            "aggregations": {"amount": "sum", "order_id": "count"},
        },
    )
    assert_frame(
        result,
        ["customer_id", "sum_amount", "count_order_id"],
        [("c1", 30, 2), ("c2", 20, 2), ("c3", None, 1)],
    )


@pytest.mark.parametrize(
    ("function", "column", "output", "expected"),
    [
        ("sum", "amount", "sum_amount", {"a": 70, "b": 5}),
        ("count", "amount", "count_amount", {"a": 4, "b": 1}),
        ("count", "*", "count_rows", {"a": 6, "b": 2}),
        ("count_distinct", "amount", "count_distinct_amount", {"a": 3, "b": 1}),
        ("avg", "amount", "avg_amount", {"a": 17.5, "b": 5.0}),
        ("min", "amount", "min_amount", {"a": 10, "b": 5}),
        ("max", "amount", "max_amount", {"a": 30, "b": 5}),
        ("first", "amount", "first_amount", {"a": 10, "b": 5}),
        ("last", "amount", "last_amount", {"a": 30, "b": 5}),
    ],
)
def test_aggregate_functions(
    amounts: DataFrame, function: str, column: str, output: str, expected: dict[str, Any]
) -> None:
    result = run(
        amounts,
        {
            "transformType": "Aggregation",
            "groupBy": ["key"],
            "aggregations": [{"column": column, "function": function}],
        },
    )
    assert_frame(result, ["key", output], expected.items())


def test_collect_list_keeps_every_value(amounts: DataFrame) -> None:
    result = run(
        amounts,
        {"transformType": "Aggregation", "groupBy": ["key"], "aggregations": {"amount": "collect_list"}},
    )
    assert result.columns == ["key", "collect_list_amount"]
    assert sorted((key, sorted(values)) for key, values in result.collect()) == [
        ("a", [10, 10, 20, 30]),
        ("b", [5]),
    ]


def test_aggregate_as_names_the_column_and_no_group_by_gives_one_row(amounts: DataFrame) -> None:
    result = run(
        amounts,
        {
            "transformType": "Aggregation",
            "aggregations": [
                {"column": "amount", "function": "sum", "as": "total"},
                {"column": "*", "function": "count", "as": "records"},
            ],
        },
    )
    assert_frame(result, ["total", "records"], [(75, 8)])


def test_star_is_for_count_only(amounts: DataFrame) -> None:
    error = configuration_error(
        amounts, {"transformType": "Aggregation", "aggregations": [{"column": "*", "function": "sum"}]}
    )
    assert error.stage == "transforms[0] (Aggregation)"
    assert "sum needs a column" in str(error)


# --- Window: analytic ------------------------------------------------------------------------

SALES = [("a", 1, 10), ("a", 2, 20), ("a", 3, 20), ("a", 4, 40), ("a", 5, 50), ("b", 1, 5), ("b", 2, 7)]


@pytest.fixture
def sales(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(SALES, "region string, day int, amount int")


def window(
    *functions: dict[str, Any], order_by: Sequence[dict[str, Any]] = (), **more: Any
) -> dict[str, Any]:
    return {
        "transformType": "Window",
        "partitionBy": ["region"],
        "orderBy": list(order_by),
        "functions": list(functions),
        **more,
    }


def test_ranking_functions_share_ties(sales: DataFrame) -> None:
    result = run(
        sales,
        window(
            {"function": "rank", "as": "rank"},
            {"function": "dense_rank", "as": "dense_rank"},
            {"function": "percent_rank", "as": "percent_rank"},
            {"function": "cume_dist", "as": "cume_dist"},
            order_by=[{"column": "amount"}],
        ),
    )
    assert_frame(
        result,
        ["region", "day", "amount", "rank", "dense_rank", "percent_rank", "cume_dist"],
        [
            ("a", 1, 10, 1, 1, 0.0, 1 / 5),
            ("a", 2, 20, 2, 2, 0.25, 3 / 5),
            ("a", 3, 20, 2, 2, 0.25, 3 / 5),
            ("a", 4, 40, 4, 3, 0.75, 4 / 5),
            ("a", 5, 50, 5, 4, 1.0, 1.0),
            ("b", 1, 5, 1, 1, 0.0, 0.5),
            ("b", 2, 7, 2, 2, 1.0, 1.0),
        ],
    )


def test_row_number_ntile_lag_and_lead(sales: DataFrame) -> None:
    result = run(
        sales,
        window(
            {"function": "row_number", "as": "n"},
            {"function": "ntile", "offset": 2, "as": "half"},
            {"function": "lag", "column": "amount", "as": "previous"},
            {"function": "lead", "column": "amount", "offset": 2, "as": "after_next"},
            order_by=[{"column": "day"}],
        ),
    )
    assert_frame(
        result,
        ["region", "day", "amount", "n", "half", "previous", "after_next"],
        [
            ("a", 1, 10, 1, 1, None, 20),
            ("a", 2, 20, 2, 1, 10, 40),
            ("a", 3, 20, 3, 1, 20, 50),
            ("a", 4, 40, 4, 2, 20, None),
            ("a", 5, 50, 5, 2, 40, None),
            ("b", 1, 5, 1, 1, None, None),
            ("b", 2, 7, 2, 2, 5, None),
        ],
    )


def test_descending_order(sales: DataFrame) -> None:
    result = run(
        sales,
        window(
            {"function": "row_number", "as": "place"},
            order_by=[{"column": "amount", "descending": True}, {"column": "day"}],
        ),
        {"transformType": "Select", "columns": ["region", "day", "place"]},
    )
    assert_frame(
        result,
        ["region", "day", "place"],
        [("a", 5, 1), ("a", 4, 2), ("a", 2, 3), ("a", 3, 4), ("a", 1, 5), ("b", 2, 1), ("b", 1, 2)],
    )


def test_aggregates_with_an_order_are_running_and_skip_nulls(spark: SparkSession) -> None:
    readings = spark.createDataFrame(
        [("a", 1, None), ("a", 2, 10), ("a", 3, 30), ("a", 4, None), ("b", 1, 5)],
        "region string, day int, amount int",
    )
    result = run(
        readings,
        window(
            {"function": "sum", "column": "amount", "as": "sum"},
            {"function": "avg", "column": "amount", "as": "avg"},
            {"function": "min", "column": "amount", "as": "min"},
            {"function": "max", "column": "amount", "as": "max"},
            {"function": "count", "as": "rows"},
            {"function": "count", "column": "amount", "as": "amounts"},
            {"function": "first", "column": "amount", "as": "first"},
            {"function": "last", "column": "amount", "as": "last"},
            order_by=[{"column": "day"}],
        ),
        {"transformType": "Select", "rename": {"amount": "value"}},
    )
    assert_frame(
        result,
        ["region", "day", "value", "sum", "avg", "min", "max", "rows", "amounts", "first", "last"],
        [
            ("a", 1, None, None, None, None, None, 1, 0, None, None),
            ("a", 2, 10, 10, 10.0, 10, 10, 2, 1, 10, 10),
            ("a", 3, 30, 40, 20.0, 10, 30, 3, 2, 10, 30),
            ("a", 4, None, 40, 20.0, 10, 30, 4, 2, 10, 30),
            ("b", 1, 5, 5, 5.0, 5, 5, 1, 1, 5, 5),
        ],
    )


def test_aggregates_without_an_order_cover_the_whole_partition(sales: DataFrame) -> None:
    result = run(
        sales,
        window(
            {"function": "sum", "column": "amount", "as": "total"},
            {"function": "count", "as": "days"},
            {"function": "max", "column": "amount", "as": "best"},
        ),
        {"transformType": "Select", "columns": ["region", "day", "total", "days", "best"]},
    )
    a, b = (140, 5, 50), (12, 2, 7)
    assert_frame(
        result,
        ["region", "day", "total", "days", "best"],
        [("a", day, *a) for day in range(1, 6)] + [("b", day, *b) for day in (1, 2)],
    )


def test_without_partition_by_the_input_is_one_partition(sales: DataFrame) -> None:
    result = run(
        sales,
        window({"function": "sum", "column": "amount", "as": "total"}, partitionBy=[]),
        {"transformType": "Select", "columns": ["region", "day", "total"]},
    )
    assert rows(result) == same_rows((region, day, 152) for region, day, _ in SALES)


# --- Window: time -----------------------------------------------------------------------------

EVENTS = [
    ("2024-01-01 00:01:00", "u1", 1),
    ("2024-01-01 00:04:00", "u1", 2),
    ("2024-01-01 00:06:00", "u1", 3),
    ("2024-01-01 00:02:00", "u2", 10),
    ("2024-01-01 00:11:00", "u2", 20),
]


@pytest.fixture
def events(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(EVENTS, "event_time string, user string, amount int")


def time_window(**settings: Any) -> dict[str, Any]:
    return {"transformType": "Window", "timeColumn": "event_time", **settings}


def clock(frame: DataFrame) -> DataFrame:
    """Window bounds as HH:mm in the session's time zone, independent of the test process's."""
    return frame.withColumns({name: F.date_format(name, "HH:mm") for name in ("window_start", "window_end")})


def test_tumbling_windows_per_group_from_a_string_time_column(events: DataFrame) -> None:
    result = run(
        events,
        time_window(
            windowDuration="5 minutes",
            groupBy=["user"],
            aggregations=[{"column": "amount", "function": "sum"}, {"column": "*", "function": "count"}],
        ),
    )
    assert_frame(
        clock(result),
        ["window_start", "window_end", "user", "sum_amount", "count_rows"],
        [
            ("00:00", "00:05", "u1", 3, 2),
            ("00:05", "00:10", "u1", 3, 1),
            ("00:00", "00:05", "u2", 10, 1),
            ("00:10", "00:15", "u2", 20, 1),
        ],
    )


def test_sliding_windows(events: DataFrame) -> None:
    result = run(
        events,
        time_window(
            windowDuration="10 minutes",
            slideDuration="5 minutes",
            groupBy=["user"],
            aggregations={"amount": "sum"},
        ),
    )
    assert_frame(
        clock(result),
        ["window_start", "window_end", "user", "sum_amount"],
        [
            ("23:55", "00:05", "u1", 3),
            ("00:00", "00:10", "u1", 6),
            ("00:05", "00:15", "u1", 3),
            ("23:55", "00:05", "u2", 10),
            ("00:00", "00:10", "u2", 10),
            ("00:05", "00:15", "u2", 20),
            ("00:10", "00:20", "u2", 20),
        ],
    )


def test_timestamp_column_without_group_by(events: DataFrame) -> None:
    stamped = events.withColumn("event_time", F.to_timestamp("event_time"))
    result = run(stamped, time_window(windowDuration="10 minutes", aggregations={"amount": "max"}))
    assert_frame(
        clock(result),
        ["window_start", "window_end", "max_amount"],
        [("00:00", "00:10", 10), ("00:10", "00:20", 20)],
    )


def test_date_column_is_cast_too(spark: SparkSession) -> None:
    days = spark.createDataFrame(
        [("2024-01-01", 1), ("2024-01-01", 2), ("2024-01-02", 4)], "event_time string, amount int"
    ).withColumn("event_time", F.to_date("event_time"))
    result = run(days, time_window(windowDuration="1 day", aggregations={"amount": "sum"}))
    result = result.withColumns(
        {name: F.date_format(name, "MM-dd") for name in ("window_start", "window_end")}
    )
    assert_frame(
        result, ["window_start", "window_end", "sum_amount"], [("01-01", "01-02", 3), ("01-02", "01-03", 4)]
    )


def test_watermark_changes_no_batch_result(events: DataFrame) -> None:
    result = run(
        events,
        time_window(windowDuration="5 minutes", watermark="10 minutes", aggregations={"amount": "sum"}),
    )
    assert_frame(
        clock(result),
        ["window_start", "window_end", "sum_amount"],
        [("00:00", "00:05", 13), ("00:05", "00:10", 3), ("00:10", "00:15", 20)],
    )


def test_watermark_is_in_a_streaming_plan(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Batch analysis drops the watermark node, so the plan of a streaming read shows it.
    stream = spark.readStream.schema("event_time string, user string, amount int").json(str(tmp_path))
    result = run(
        stream,
        {"transformType": "Filter", "condition": "amount > 0"},
        time_window(windowDuration="5 minutes", watermark="10 minutes", aggregations={"amount": "sum"}),
        filter_counters={},
    )
    result.explain(extended=True)
    assert "EventTimeWatermark" in capsys.readouterr().out
    assert result.isStreaming
    assert result.columns == ["window_start", "window_end", "sum_amount"]


# --- configuration mistakes --------------------------------------------------------------------


def test_filter_on_a_missing_column(orders: DataFrame) -> None:
    error = configuration_error(
        orders,
        {"transformType": "Filter", "condition": "amount > 0"},
        {"transformType": "Filter", "condition": "discount > 0"},
    )
    assert (error.stage, error.field) == ("transforms[1] (Filter)", "condition")
    assert str(error).startswith("transforms[1] (Filter): condition: ")
    assert "`discount`" in str(error)
    assert "\n" not in str(error)


def test_sql_that_does_not_parse(orders: DataFrame) -> None:
    error = configuration_error(orders, {"transformType": "SQL", "query": "SELEC * FORM input"})
    assert (error.stage, error.field) == ("transforms[0] (SQL)", "query")
    assert "PARSE_SYNTAX_ERROR" in str(error)


def test_sql_on_a_missing_column(spark: SparkSession, orders: DataFrame) -> None:
    error = configuration_error(
        orders,
        {"transformType": "Select", "columns": ["order_id"]},
        {"transformType": "SQL", "query": "SELECT discount FROM input"},
    )
    assert (error.stage, error.field) == ("transforms[1] (SQL)", "query")
    assert "`discount`" in str(error)
    assert not spark.catalog.tableExists("input")


@pytest.mark.parametrize("side", ["left", "right"])
def test_join_key_missing_on_one_side(spark: SparkSession, order_keys: DataFrame, side: str) -> None:
    customers = Customers(spark)
    if side == "right":
        customers.frame = customers.frame.withColumnRenamed("customer_id", "id")
    else:
        order_keys = order_keys.withColumnRenamed("customer_id", "customer")
    error = configuration_error(
        order_keys,
        {"transformType": "Join", "right": CUSTOMERS_SOURCE, "on": ["customer_id"]},
        read_source=customers,
    )
    assert (error.stage, error.field) == ("transforms[0] (Join)", "on")
    assert f"key column `customer_id` is missing on the {side} side" in str(error)


def test_join_key_matches_like_spark_case_insensitively(spark: SparkSession, order_keys: DataFrame) -> None:
    customers = Customers(spark)
    customers.frame = customers.frame.withColumnRenamed("customer_id", "Customer_ID")
    result = run(
        order_keys,
        {"transformType": "Join", "right": CUSTOMERS_SOURCE, "on": ["customer_id"]},
        read_source=customers,
    )
    assert rows(result) == same_rows(INNER)


def test_errors_of_the_source_reader_get_the_stage(order_keys: DataFrame) -> None:
    def unreachable(block: contract.Source) -> DataFrame:
        raise SourceUnavailable("bucket dimensions does not exist", field="path")

    with pytest.raises(SourceUnavailable) as caught:
        run(
            order_keys,
            {"transformType": "Join", "right": CUSTOMERS_SOURCE, "on": ["customer_id"]},
            read_source=unreachable,
        )
    assert str(caught.value) == "transforms[0] (Join): path: bucket dimensions does not exist"
    assert caught.value.field == "path"


def test_rename_of_a_missing_column(orders: DataFrame) -> None:
    error = configuration_error(orders, {"transformType": "Select", "rename": {"amnt": "total"}})
    assert (error.stage, error.field) == ("transforms[0] (Select)", "rename")
    assert "cannot rename `amnt`" in str(error)


def test_select_of_a_missing_column(orders: DataFrame) -> None:
    error = configuration_error(orders, {"transformType": "Select", "columns": ["order_id", "discount * 2"]})
    assert (error.stage, error.field) == ("transforms[0] (Select)", "columns")
    assert "`discount`" in str(error)


def test_aggregation_of_a_missing_column(orders: DataFrame) -> None:
    error = configuration_error(
        orders,
        {"transformType": "Filter", "condition": "amount > 0"},
        {"transformType": "Aggregation", "groupBy": ["customer_id"], "aggregations": {"discount": "sum"}},
    )
    assert (error.stage, error.field) == ("transforms[1] (Aggregation)", "aggregations")
    assert "`discount`" in str(error)


def test_window_over_a_missing_column(sales: DataFrame) -> None:
    error = configuration_error(
        sales, window({"function": "rank", "as": "rank"}, order_by=[{"column": "revenue"}])
    )
    assert (error.stage, error.field) == ("transforms[0] (Window)", "functions")
    assert "`revenue`" in str(error)


def test_time_window_on_a_missing_time_column(events: DataFrame) -> None:
    error = configuration_error(
        events,
        {**time_window(windowDuration="5 minutes", aggregations={"amount": "sum"}), "timeColumn": "ts"},
    )
    assert (error.stage, error.field) == ("transforms[0] (Window)", "timeColumn")
    assert "`ts` is not a column" in str(error)
