"""The database connectors' SQL text and settings, exactly, per dialect: quoting, types, the
upsert's statements, incremental predicates and read bounds."""

from __future__ import annotations

import pytest

from etl_job.connectors.jdbc.sql import (
    MAX_NAME_LENGTH,
    MAX_SORTED_RUNS,
    MYSQL,
    POSTGRESQL,
    FieldFormat,
    UnsupportedType,
    bounds_query,
    filtered_relation,
    incremental_predicate,
    max_query,
    partitionable,
    read_bounds,
    reserved_option,
    source_relation,
    staging_names,
    unique_key_matches,
    unsupported_columns,
)

BIGINT, NUMERIC, VARCHAR, DATE, TIMESTAMP = -5, 2, 12, 91, 93


# --- names and literals ------------------------------------------------------------------------


def test_identifiers_are_quoted_with_embedded_quotes_doubled() -> None:
    assert POSTGRESQL.quote_identifier('we"ird') == '"we""ird"'
    assert POSTGRESQL.quote_identifier("Order") == '"Order"'
    assert MYSQL.quote_identifier("we`ird") == "`we``ird`"


def test_a_table_name_is_quoted_part_by_part() -> None:
    assert POSTGRESQL.quote_table("analytics.user_summary") == '"analytics"."user_summary"'
    assert MYSQL.quote_table("user") == "`user`"


def test_string_literals_escape_quotes_and_mysql_backslashes() -> None:
    assert POSTGRESQL.string_literal("it's \\ here") == "'it''s \\ here'"
    assert MYSQL.string_literal("it's \\ here") == "'it''s \\\\ here'"


def test_marks_of_number_columns_stay_unquoted_and_must_be_numbers() -> None:
    assert POSTGRESQL.mark_literal("9007199254740993", numeric=True) == "9007199254740993"
    assert MYSQL.mark_literal("12.50", numeric=True) == "12.50"
    assert POSTGRESQL.mark_literal("2024-01-01 10:00:00+00", numeric=False) == "'2024-01-01 10:00:00+00'"
    with pytest.raises(ValueError, match="not a number"):
        POSTGRESQL.mark_literal("1; DROP TABLE users", numeric=True)


# --- connections ---------------------------------------------------------------------------------


def test_jdbc_urls_per_dialect() -> None:
    assert POSTGRESQL.jdbc_url("pg", 5432, "analytics") == "jdbc:postgresql://pg:5432/analytics"
    assert MYSQL.jdbc_url("db", 3306, "shop") == "jdbc:mysql://db:3306/shop?permitMysqlScheme"
    assert POSTGRESQL.jdbc_url("::1", 5432, "my db") == "jdbc:postgresql://[::1]:5432/my%20db"
    assert MYSQL.driver_class == "org.mariadb.jdbc.Driver"


def test_credentials_and_spark_options_cannot_come_in_as_connection_options() -> None:
    assert reserved_option({"sslmode": "require", "Password": "x"}) == "Password"
    assert reserved_option({"dbtable": "x"}) == "dbtable"
    assert reserved_option({"sslmode": "require", "ApplicationName": "etl"}) is None


def test_jdbc_properties_the_python_clients_understand_are_translated() -> None:
    assert POSTGRESQL.client_options(
        {"sslmode": "verify-full", "ApplicationName": "etl", "currentSchema": "mart", "tcpKeepAlive": "true"}
    ) == {
        "connect_timeout": 10,
        "client_encoding": "UTF8",
        "sslmode": "verify-full",
        "application_name": "etl",
        "options": "-c search_path=mart",
    }
    assert MYSQL.client_options({"connectTimeout": "2500"}) == {"connect_timeout": 3, "charset": "utf8mb4"}
    assert MYSQL.client_options({"sslMode": "verify-full", "serverSslCert": "/etc/ca.pem"})["ssl"] == {
        "ca": "/etc/ca.pem"
    }
    assert MYSQL.client_options({"sslMode": "trust"})["ssl"] == {"check_hostname": False}


# --- tables --------------------------------------------------------------------------------------

OUTPUT = [("id", "bigint"), ("name", "string"), ("amount", "decimal(10,2)"), ("seen", "timestamp")]


def test_a_new_postgres_table_takes_the_outputs_types_and_key() -> None:
    assert POSTGRESQL.create_table("users", OUTPUT, ["id"]) == (
        'CREATE TABLE "users" ("id" BIGINT NOT NULL, "name" TEXT, "amount" NUMERIC(10,2), '
        '"seen" TIMESTAMP WITH TIME ZONE, PRIMARY KEY ("id"))'
    )


def test_a_new_mysql_table_bounds_its_string_keys() -> None:
    assert MYSQL.create_table(
        "users", [("name", "string"), ("note", "string"), ("on", "boolean")], ["name"]
    ) == (
        "CREATE TABLE `users` (`name` VARCHAR(255) NOT NULL, `note` LONGTEXT, `on` BOOLEAN, "
        "PRIMARY KEY (`name`)) DEFAULT CHARACTER SET utf8mb4"
    )


def test_a_table_without_key_has_no_primary_key_clause() -> None:
    assert POSTGRESQL.create_table("t", [("d", "date"), ("b", "binary")], []) == (
        'CREATE TABLE "t" ("d" DATE, "b" BYTEA)'
    )


@pytest.mark.parametrize("spark_type", ["array<int>", "map<string,int>", "struct<a:int>", "void"])
def test_nested_types_are_named_as_unsupported(spark_type: str) -> None:
    with pytest.raises(UnsupportedType):
        POSTGRESQL.column_type(spark_type, key=False)
    assert unsupported_columns(MYSQL, [("id", "int"), ("tags", spark_type)]) == [("tags", spark_type)]


# --- upsert -------------------------------------------------------------------------------------


def test_postgres_upsert_statements() -> None:
    assert POSTGRESQL.create_staging("s.stage", "s.users", ["id", "name"], ["id"]) == (
        'CREATE UNLOGGED TABLE "s"."stage" AS SELECT "id", "name", CAST(NULL AS BIGINT) AS "etl_staging_row" '
        'FROM "s"."users" WITH NO DATA'
    )
    assert POSTGRESQL.bulk_load("stage", [("id", "bigint"), ("name", "string")]) == (
        'COPY "stage" ("id", "name") FROM STDIN WITH (FORMAT csv)'
    )
    assert POSTGRESQL.merge("users", "stage", ["id", "name", "n"], ["id"], runs=2) == (
        'INSERT INTO "users" ("id", "name", "n") SELECT "id", "name", "n" FROM "stage" '
        'ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "n" = EXCLUDED."n"'
    )


def test_postgres_sorts_many_staged_runs_into_key_order_before_merging() -> None:
    assert 'FROM "stage" ORDER BY "a", "b" ON CONFLICT' in POSTGRESQL.merge(
        "t", "stage", ["a", "b", "c"], ["a", "b"], runs=MAX_SORTED_RUNS + 1
    )


def test_postgres_upsert_of_key_columns_only_leaves_existing_rows() -> None:
    assert POSTGRESQL.merge("tags", "stage", ["a", "b"], ["a", "b"]).endswith(
        'ON CONFLICT ("a", "b") DO NOTHING'
    )


def test_postgres_15_merges_with_a_join_on_analyzed_staging() -> None:
    statements = POSTGRESQL.merge_statements("s.users", "s.stage", ["id", "name"], ["id"], server_version=15)
    assert statements == [
        "SET LOCAL work_mem = '64MB'",
        'ANALYZE "s"."stage"',
        'MERGE INTO "s"."users" AS etl_target USING "s"."stage" AS etl_staged '
        'ON etl_target."id" = etl_staged."id" '
        'WHEN MATCHED THEN UPDATE SET "name" = etl_staged."name" '
        'WHEN NOT MATCHED THEN INSERT ("id", "name") VALUES (etl_staged."id", etl_staged."name")',
    ]


def test_postgres_merge_of_many_runs_reads_staging_in_key_order() -> None:
    merge = POSTGRESQL.merge_into("t", "stage", ["a", "b", "c"], ["a", "b"], runs=MAX_SORTED_RUNS + 1)
    assert 'USING (SELECT * FROM "stage" ORDER BY "a", "b") AS etl_staged ' in merge
    assert 'ON etl_target."a" = etl_staged."a" AND etl_target."b" = etl_staged."b"' in merge


def test_postgres_merge_of_key_columns_only_inserts_new_keys() -> None:
    merge = POSTGRESQL.merge_into("tags", "stage", ["a"], ["a"])
    assert "WHEN MATCHED" not in merge
    assert merge.endswith('WHEN NOT MATCHED THEN INSERT ("a") VALUES (etl_staged."a")')


def test_postgres_before_15_upserts_with_on_conflict() -> None:
    assert POSTGRESQL.merge_statements("users", "stage", ["id", "name"], ["id"], server_version=14) == [
        POSTGRESQL.merge("users", "stage", ["id", "name"], ["id"])
    ]


def test_mysql_upsert_statements() -> None:
    assert MYSQL.create_staging("stage", "users", ["id", "name"], ["id"]) == (
        "CREATE TABLE `stage` (`etl_staging_row` BIGINT, PRIMARY KEY (`id`)) ENGINE=InnoDB "
        "AS SELECT `id`, `name` FROM `users` LIMIT 0"
    )
    assert MYSQL.merge("users", "stage", ["id", "name"], ["id"]) == (
        "INSERT INTO `users` (`id`, `name`) SELECT s.`id`, s.`name` FROM `stage` AS s "
        "ON DUPLICATE KEY UPDATE `name` = s.`name`"
    )
    assert MYSQL.merge("tags", "stage", ["a"], ["a"]).endswith("ON DUPLICATE KEY UPDATE `a` = `a`")


def test_mysql_load_data_reads_escaped_text_and_unhexes_bytes() -> None:
    assert MYSQL.bulk_load("stage", [("id", "int"), ("blob", "binary")]) == (
        "LOAD DATA LOCAL INFILE %s INTO TABLE `stage` CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' "
        "LINES TERMINATED BY '\\n' (`id`, @hex1) SET `blob` = UNHEX(@hex1)"
    )


# --- every write mode through staging --------------------------------------------------------------


def test_append_and_overwrite_stage_without_a_key_and_write_in_one_transaction() -> None:
    assert MYSQL.create_staging("stage", "t", ["id"], []) == (
        "CREATE TABLE `stage` (`etl_staging_row` BIGINT) ENGINE=InnoDB AS SELECT `id` FROM `t` LIMIT 0"
    )
    append = 'INSERT INTO "t" ("id", "name") SELECT "id", "name" FROM "stage"'
    assert POSTGRESQL.write_statements("append", "t", "stage", ["id", "name"], ["id"]) == [append]
    assert POSTGRESQL.write_statements("overwrite", "t", "stage", ["id", "name"], []) == [
        'TRUNCATE TABLE "t"',
        append,
    ]
    # TRUNCATE would commit the transaction in MySQL.
    assert MYSQL.write_statements("overwrite", "t", "stage", ["id"], [])[0] == "DELETE FROM `t`"
    assert POSTGRESQL.write_statements("upsert", "t", "stage", ["id", "name"], ["id"], server_version=15) == (
        POSTGRESQL.merge_statements("t", "stage", ["id", "name"], ["id"], server_version=15)
    )


def test_a_range_of_staged_rows_is_written_alone() -> None:
    rows = (8589934592, 8589934600)
    where = 'WHERE "etl_staging_row" >= 8589934592 AND "etl_staging_row" < 8589934600'
    assert POSTGRESQL.range_statement("append", "t", "stage", ["id"], [], rows) == (
        f'INSERT INTO "t" ("id") SELECT "id" FROM "stage" {where}'
    )
    assert POSTGRESQL.range_statement("upsert", "t", "stage", ["id", "n"], ["id"], rows) == (
        f'INSERT INTO "t" ("id", "n") SELECT "id", "n" FROM "stage" {where} '
        'ON CONFLICT ("id") DO UPDATE SET "n" = EXCLUDED."n"'
    )
    assert MYSQL.range_statement("upsert", "t", "stage", ["id", "n"], ["id"], (0, 5)) == (
        "INSERT INTO `t` (`id`, `n`) SELECT s.`id`, s.`n` FROM `stage` AS s "
        "WHERE s.`etl_staging_row` >= 0 AND s.`etl_staging_row` < 5 ON DUPLICATE KEY UPDATE `n` = s.`n`"
    )


def test_writing_by_ranges_starts_as_the_whole_write_does() -> None:
    assert POSTGRESQL.range_statements("overwrite", "t", "stage") == ['TRUNCATE TABLE "t"']
    assert MYSQL.range_statements("overwrite", "t", "stage") == ["DELETE FROM `t`"]
    assert POSTGRESQL.range_statements("upsert", "t", "stage", server_version=15) == [
        "SET LOCAL work_mem = '64MB'",
        'ANALYZE "stage"',
    ]
    assert POSTGRESQL.range_statements("append", "t", "stage", server_version=15) == []


def test_staged_rows_are_indexed_and_found_per_partition() -> None:
    assert POSTGRESQL.index_rows("s.stage") == 'CREATE INDEX ON "s"."stage" ("etl_staging_row")'
    assert MYSQL.index_rows("stage") == "ALTER TABLE `stage` ADD INDEX (`etl_staging_row`)"
    assert MYSQL.row_extents("stage") == (
        "SELECT MIN(`etl_staging_row`), MAX(`etl_staging_row`) FROM `stage` "
        "GROUP BY `etl_staging_row` >> 33 ORDER BY 1"
    )


def test_each_partition_is_recorded_once_beside_staging() -> None:
    assert POSTGRESQL.create_loaded_partitions("p") == 'CREATE UNLOGGED TABLE "p" (part INTEGER PRIMARY KEY)'
    assert MYSQL.mark_partition_loaded("p") == "INSERT INTO `p` (part) VALUES (%s)"


def test_the_first_duplicate_key_is_found_by_one_query() -> None:
    assert POSTGRESQL.duplicate_keys("stage", ["a", "b"]) == (
        'SELECT "a", "b" FROM "stage" GROUP BY "a", "b" HAVING COUNT(*) > 1 LIMIT 1'
    )


def test_unique_key_queries_name_the_table() -> None:
    sql, parameters = POSTGRESQL.unique_keys("mart.users")
    assert "indisunique" in sql and parameters == ['"mart"."users"']
    sql, parameters = MYSQL.unique_keys("users")
    assert "TABLE_SCHEMA = DATABASE()" in sql and parameters == ["users"]
    assert MYSQL.unique_keys("shop.users")[1] == ["shop", "users"]


def test_the_key_must_be_exactly_one_unique_index() -> None:
    indexes = [("pk", "id"), ("uq", "email"), ("uq2", "a"), ("uq2", "b")]
    assert unique_key_matches(indexes, ["id"])
    assert unique_key_matches(indexes, ["b", "a"])
    assert not unique_key_matches(indexes, ["id", "email"])
    assert not unique_key_matches([], ["id"])


def test_staging_names_are_unique_short_and_beside_the_target() -> None:
    staging, parts = staging_names("mart.User Summary", "user-summary-run-42", "a1b2c3d4")
    assert staging == "mart.etl_stage_user_summary_user_summary_run_42_a1b2c3d4"
    assert parts == staging + "_parts"
    long_staging, long_parts = staging_names("t" * 200, "r" * 200, "a1b2c3d4")
    assert len(long_parts) <= MAX_NAME_LENGTH and long_staging.endswith("_a1b2c3d4")


def test_field_formats_per_dialect() -> None:
    assert POSTGRESQL.field_format("string") == FieldFormat.TEXT
    assert POSTGRESQL.field_format("boolean") == FieldFormat.PLAIN
    assert MYSQL.field_format("boolean") == FieldFormat.BOOLEAN_NUMBER
    assert POSTGRESQL.field_format("timestamp") == FieldFormat.TIMESTAMP_WITH_OFFSET
    assert MYSQL.field_format("timestamp") == FieldFormat.TIMESTAMP_LOCAL
    assert MYSQL.field_format("timestamp_ntz") == FieldFormat.TIMESTAMP_LOCAL
    assert POSTGRESQL.field_format("binary") == FieldFormat.HEX
    assert POSTGRESQL.field_format("decimal(38,0)") == FieldFormat.PLAIN


# --- reading -----------------------------------------------------------------------------------


def test_a_query_is_read_as_a_derived_table() -> None:
    assert source_relation(POSTGRESQL, None, "SELECT * FROM a JOIN b USING (id);\n") == (
        "(SELECT * FROM a JOIN b USING (id)) etl_source"
    )
    assert source_relation(MYSQL, "orders", None) == "`orders`"


def test_the_new_mark_is_the_largest_value_past_the_old_one() -> None:
    assert max_query(POSTGRESQL, '"t"', "updated_at", None) == 'SELECT MAX("updated_at") FROM "t"'
    assert max_query(MYSQL, "`t`", "id", "41") == "SELECT MAX(`id`) FROM `t` WHERE `id` > 41"


def test_incremental_reads_between_the_marks() -> None:
    assert incremental_predicate(POSTGRESQL, "v", "'2024-01-01'", "'2024-02-01'") == (
        "\"v\" > '2024-01-01' AND \"v\" <= '2024-02-01'"
    )
    # The first run also takes rows without a value, which no later run would read.
    assert incremental_predicate(MYSQL, "v", None, "7") == "`v` <= 7 OR `v` IS NULL"
    assert incremental_predicate(MYSQL, "v", None, None) == "`v` IS NULL"
    # No new rows: nothing is read, the mark stays.
    assert incremental_predicate(POSTGRESQL, "v", "7", None) == "1 = 0"
    assert filtered_relation('"t"', "1 = 0") == '(SELECT * FROM "t" WHERE 1 = 0) etl_incremental'


def test_bounds_are_found_and_widened_to_whole_numbers() -> None:
    assert bounds_query(POSTGRESQL, '"t"', "id") == 'SELECT MIN("id"), MAX("id") FROM "t"'
    assert read_bounds(None, None, "1.50", "99.01", NUMERIC) == ("1", "100")
    assert read_bounds(None, None, "-3", "7", BIGINT) == ("-3", "7")
    assert read_bounds("0", None, "5", "9", BIGINT) == ("0", "9")
    assert read_bounds(None, None, "2024-01-01", "2024-03-01", DATE) == ("2024-01-01", "2024-03-01")
    assert read_bounds(None, None, None, None, BIGINT) is None
    with pytest.raises(ValueError, match="not a number"):
        read_bounds("low", None, "1", "2", BIGINT)


def test_reads_split_on_numbers_dates_and_timestamps_only() -> None:
    assert partitionable(BIGINT) and partitionable(NUMERIC) and partitionable(TIMESTAMP)
    assert not partitionable(VARCHAR)
