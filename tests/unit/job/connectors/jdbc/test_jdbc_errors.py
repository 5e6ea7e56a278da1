"""Database failures told in the driver's own words, from the shapes the drivers really produce."""

from __future__ import annotations

from etl_job.connectors.jdbc.errors import (
    BULK_BAD_DATA,
    Cause,
    causes_in_text,
    driver_message,
    hint,
    marked,
    permanent,
    redact,
)

SPARK_WRAPPED = """An error occurred while calling o74.load.
: org.apache.spark.SparkException: [JDBC_EXTERNAL_ENGINE_SYNTAX_ERROR] JDBC external engine syntax error.
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.jdbcGenericError(QueryExecutionErrors.scala:1)
Caused by: org.postgresql.util.PSQLException: ERROR: relation "missing" does not exist
  Position: 15
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2733)
\t... 16 more
"""

PYTHON_TASK = """Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times
org.apache.spark.api.python.PythonException: Traceback (most recent call last):
  File "/opt/etl/etl_job/jdbc_bulk.py", line 140, in _load_postgres
psycopg2.errors.UndefinedTable: relation "stage" does not exist
"""


def test_exception_lines_of_jvm_and_python_traces_are_found_in_order() -> None:
    assert [cause.simple_name for cause in causes_in_text(SPARK_WRAPPED)] == [
        "SparkException",
        "PSQLException",
    ]
    assert causes_in_text(PYTHON_TASK)[-1] == Cause(
        "psycopg2.errors.UndefinedTable", 'relation "stage" does not exist'
    )


def test_the_drivers_message_wins_over_sparks_wrapper() -> None:
    assert driver_message(causes_in_text(SPARK_WRAPPED), "?") == 'ERROR: relation "missing" does not exist'


def test_an_unknown_host_behind_a_vague_driver_message_is_added() -> None:
    causes = [
        Cause("py4j.protocol.Py4JJavaError", "An error occurred while calling o45.connect."),
        Cause("org.postgresql.util.PSQLException", "The connection attempt failed.", "08001"),
        Cause("java.net.UnknownHostException", "db.invalid"),
    ]
    assert driver_message(causes, "?") == (
        "The connection attempt failed. (UnknownHostException: db.invalid)"
    )


def test_the_mariadb_connection_number_is_dropped() -> None:
    causes = [
        Cause(
            "java.sql.SQLInvalidAuthorizationSpecException",
            "(conn=7) Access denied for user 'etl'@'127.0.0.1' (using password: YES)",
            "28000",
        )
    ]
    assert driver_message(causes, "?") == "Access denied for user 'etl'@'127.0.0.1' (using password: YES)"


def test_without_a_driver_the_root_cause_or_the_fallback_speaks() -> None:
    assert driver_message([Cause("java.io.IOException", "Broken pipe\nmore")], "?") == "Broken pipe"
    assert driver_message([], "the first line") == "the first line"


def test_a_marked_message_from_an_executor_is_found_again() -> None:
    text = (
        f"Job aborted\nBulkLoadFailed: {BULK_BAD_DATA} Duplicate entry '9' for key 'PRIMARY' (partition 1)\n"
    )
    assert marked(text, BULK_BAD_DATA) == "Duplicate entry '9' for key 'PRIMARY' (partition 1)"
    assert marked("no marker here", BULK_BAD_DATA) is None


def test_hints_point_at_what_to_check() -> None:
    assert "credentialsRef" in hint('FATAL: password authentication failed for user "etl"')
    assert "credentialsRef" in hint("Access denied for user 'etl'@'10.0.0.1' (using password: YES)")
    assert "connection.host" in hint("Socket fail to connect (UnknownHostException: x)")
    assert hint('relation "x" does not exist') == ""


def test_secrets_are_redacted() -> None:
    assert redact("user s3cret failed with s3cret", ["s3cret", ""]) == "user *** failed with ***"


def test_refused_credentials_and_missing_tables_are_permanent_an_unreachable_server_is_not() -> None:
    assert permanent([Cause("java.sql.SQLInvalidAuthorizationSpecException", "Access denied", "28000")])
    assert permanent(
        [Cause("org.postgresql.util.PSQLException", 'ERROR: relation "t" does not exist', "42P01")]
    )
    assert permanent(causes_in_text(SPARK_WRAPPED))
    assert not permanent([Cause("org.postgresql.util.PSQLException", "Connection refused.", "08001")])
    assert not permanent([Cause("java.net.UnknownHostException", "db.invalid")])
