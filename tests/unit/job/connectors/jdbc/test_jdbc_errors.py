"""Database failures told in the driver's own words, from the shapes the drivers really produce."""

from __future__ import annotations

from etl_job.connectors.jdbc.errors import (
    BULK_BAD_DATA,
    Cause,
    Refusal,
    causes_in_text,
    driver_message,
    error_type,
    hint,
    marked,
    permanent,
    redact,
    refusal,
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


def test_a_refused_row_is_a_value_or_a_constraint_named_as_the_python_clients_name_it() -> None:
    check = [
        Cause(
            "org.postgresql.util.PSQLException",
            'ERROR: new row for relation "t" violates check constraint "c"',
            "23514",
        )
    ]
    assert refusal(check, "PostgreSQL") == Refusal(
        "CheckViolation/23514", 'new row for relation "t" violates check constraint "c"'
    )
    too_long = [
        Cause("java.sql.SQLDataException", "(conn=5) Data too long for column 'name' at row 1", "22001", 1406)
    ]
    assert refusal(too_long, "MySQL") == Refusal("DataError/1406", "Data too long for column 'name' at row 1")
    # PyMySQL files MariaDB's CHECK failure under OperationalError; its SQLSTATE says constraint.
    check_failed = [
        Cause("java.sql.SQLIntegrityConstraintViolationException", "CONSTRAINT `c` failed", "23000", 4025)
    ]
    assert refusal(check_failed, "MySQL") == Refusal("IntegrityError/4025", "CONSTRAINT `c` failed")


def test_a_server_that_is_down_or_a_lock_that_timed_out_is_no_refused_row() -> None:
    assert (
        refusal([Cause("org.postgresql.util.PSQLException", "Connection refused", "08001")], "PostgreSQL")
        is None
    )
    assert (
        refusal([Cause("org.postgresql.util.PSQLException", "canceling statement", "55P03")], "PostgreSQL")
        is None
    )
    assert (
        refusal([Cause("java.sql.SQLTransientException", "Lock wait timeout", "HY000", 1205)], "MySQL")
        is None
    )
    assert refusal([Cause("java.io.IOException", "broken pipe")], "MySQL") is None


def test_error_types_name_the_class_and_the_code() -> None:
    assert error_type("PostgreSQL", "22001", None) == "StringDataRightTruncation/22001"
    assert error_type("PostgreSQL", "23503", None) == "ForeignKeyViolation/23503"
    assert error_type("MySQL", None, 1406) == "DataError/1406"
    assert error_type("MySQL", "23000", 1452) == "IntegrityError/1452"
