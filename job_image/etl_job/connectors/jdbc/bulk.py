"""The upsert's bulk load: the output as load text built by Spark expressions (no Python per
value), streamed by each executor into the staging table with COPY (PostgreSQL) or LOAD DATA
LOCAL INFILE (MySQL), one transaction per partition, so load speed grows with the executors.

A partition is loaded once: its number goes into a small table in the same transaction, so a
retried or speculative task that finds it there loads nothing."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl_job.connectors.jdbc.errors import BULK_BAD_DATA, BULK_REJECTED
from etl_job.connectors.jdbc.sql import Dialect, FieldFormat
from etl_job.runtime.columns import named_column

#: Bytes handed to COPY per read, and written per LOAD DATA file.
COPY_READ_SIZE = 1 << 20
LOAD_FILE_SIZE = 64 << 20

#: MySQL error codes that mean a value or a key of the data, not the server, is at fault.
MYSQL_DATA_ERRORS = frozenset({1048, 1062, 1263, 1264, 1265, 1292, 1366, 1406, 1411})
DUPLICATE_ENTRY = 1062


@dataclass(frozen=True)
class BulkTarget:
    """Everything an executor needs to load its partition. It travels inside the Spark task;
    the password is left out of its repr so that no log line can show it."""

    dialect: str
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    client_options: dict[str, Any] = field(default_factory=dict)
    #: COPY ... FROM STDIN, or LOAD DATA LOCAL INFILE %s ...
    load_statement: str = ""
    #: INSERT of the partition number into the loaded-partitions table.
    mark_statement: str = ""


# --- the load text (driver side: Spark expressions) ------------------------------------------


def load_text(
    frame: Any, dialect: Dialect, columns: Sequence[tuple[str, str]], sort_by: Sequence[str] = ()
) -> Any:
    """`frame` as one binary column: a line of load text per row (UTF-8, ending in a newline),
    with the columns in the order of `columns` (name, Spark type). Binary, not string: the
    bytes then reach Python as they are, not decoded to Java strings and encoded again.
    `sort_by`: columns each partition is sorted on first."""
    from pyspark.sql import functions as F

    if sort_by:
        frame = frame.sortWithinPartitions(*[named_column(name) for name in sort_by])
    parts: list[Any] = []
    for index, (name, spark_type) in enumerate(columns):
        if index:
            parts.append(F.lit(","))
        parts.append(_field(named_column(name), dialect, dialect.field_format(spark_type)))
    parts.append(F.lit("\n"))
    return frame.select(F.concat(*parts).cast("binary").alias("line"))


def _field(column: Any, dialect: Dialect, fmt: FieldFormat) -> Any:
    """One value as load text; NULL as the loader's NULL (an empty unquoted field for COPY's
    CSV, \\N for LOAD DATA), so that an empty string stays an empty string."""
    from pyspark.sql import functions as F

    mysql = dialect.name == "MySQL"
    if fmt == FieldFormat.TEXT:
        text = column.cast("string")
        if mysql:  # backslash is LOAD DATA's escape character
            text = F.replace(F.replace(text, F.lit("\\"), F.lit("\\\\")), F.lit('"'), F.lit('\\"'))
        else:  # CSV doubles the quote
            text = F.replace(text, F.lit('"'), F.lit('""'))
        value = F.concat(F.lit('"'), text, F.lit('"'))
    elif fmt == FieldFormat.BOOLEAN_NUMBER:
        value = column.cast("int").cast("string")
    elif fmt == FieldFormat.TIMESTAMP_WITH_OFFSET:
        value = F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSSXXX")
    elif fmt == FieldFormat.TIMESTAMP_LOCAL:
        value = F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSS")
    elif fmt == FieldFormat.HEX:
        value = F.hex(column) if mysql else F.concat(F.lit("\\x"), F.hex(column))
    else:
        value = column.cast("string")
    return F.when(column.isNull(), F.lit("\\N" if mysql else "")).otherwise(value)


def line_bytes(text_frame: Any) -> Any:
    """The load text as an RDD of lines (bytes), read the way DataFrame.toJSON reads its
    strings: length-prefixed bytes, no Row objects, which would cost more than the load."""
    from pyspark.rdd import RDD
    from pyspark.serializers import UTF8Deserializer

    spark = text_frame.sparkSession
    lines = getattr(text_frame._jdf, "as")(spark._jvm.org.apache.spark.sql.Encoders.BINARY())
    # Byte arrays go to Python with the same framing as strings; use_unicode=False keeps them bytes.
    deserializer = UTF8Deserializer(use_unicode=False)  # type: ignore[no-untyped-call]
    return RDD(lines.toJavaRDD(), spark.sparkContext, deserializer)


def bulk_load(text_frame: Any, target: BulkTarget) -> int:
    """Load every partition of the load text into staging, in parallel; the rows loaded."""
    loaded = line_bytes(text_frame).mapPartitions(functools.partial(load_partition, target)).collect()
    return int(sum(loaded))


# --- executor side ------------------------------------------------------------------------------


class BulkLoadFailed(RuntimeError):
    """Raised on an executor; its message starts with a marker the driver looks for."""


def load_partition(target: BulkTarget, lines: Iterator[bytes]) -> Iterator[int]:
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    loader = _load_postgres if target.dialect == "PostgreSQL" else _load_mysql
    yield loader(target, partition, lines)


def _load_postgres(target: BulkTarget, partition: int, lines: Iterator[bytes]) -> int:
    import psycopg2
    from psycopg2 import errors

    try:
        connection = psycopg2.connect(
            host=target.host,
            port=target.port,
            dbname=target.database,
            user=target.user,
            password=target.password,
            **target.client_options,
        )
    except psycopg2.Error as failed:
        raise BulkLoadFailed(f"{BULK_REJECTED} {_first_line(str(failed))}") from None
    try:
        with connection.cursor() as cursor:
            try:
                cursor.execute(target.mark_statement, (partition,))
            except errors.UniqueViolation:
                connection.rollback()
                return 0  # another attempt of this task loaded the partition
            cursor.copy_expert(target.load_statement, _LineStream(lines), size=COPY_READ_SIZE)
            rows = int(cursor.rowcount)
        connection.commit()
        return rows
    except psycopg2.Error as failed:
        connection.rollback()
        data = (failed.pgcode or "")[:2] in ("22", "23")
        context = getattr(failed.diag, "context", None)
        where = f" ({_first_line(context)})" if data and context else ""
        marker = BULK_BAD_DATA if data else BULK_REJECTED
        raise BulkLoadFailed(f"{marker} {_first_line(str(failed))}{where}") from None
    finally:
        connection.close()


def _load_mysql(target: BulkTarget, partition: int, lines: Iterator[bytes]) -> int:
    import pymysql

    try:
        connection = pymysql.connect(
            host=target.host,
            port=target.port,
            database=target.database,
            user=target.user,
            password=target.password,
            local_infile=True,
            autocommit=False,
            **target.client_options,
        )
    except pymysql.MySQLError as failed:
        raise BulkLoadFailed(f"{BULK_REJECTED} {_mysql_message(failed)}") from None
    folder = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0] or None
    handle, path = tempfile.mkstemp(prefix="etl-load-", suffix=".txt", dir=folder)
    os.close(handle)
    try:
        with connection.cursor() as cursor:
            try:
                cursor.execute(target.mark_statement, (partition,))
            except pymysql.err.IntegrityError:
                connection.rollback()
                return 0  # another attempt of this task loaded the partition
            rows = 0
            # LOAD DATA reads a file: the partition goes through a few bounded files in turn.
            for chunk in _chunks(lines, LOAD_FILE_SIZE):
                with open(path, "wb") as out:
                    out.writelines(chunk)
                rows += int(cursor.execute(target.load_statement, (path,)))
                if cursor.warning_count:
                    # LOCAL turns bad values and repeated keys into warnings and goes on:
                    # any warning means a row was altered or skipped.
                    _level, code, message = connection.show_warnings()[0]
                    marker = BULK_BAD_DATA if code in MYSQL_DATA_ERRORS else BULK_REJECTED
                    if code == DUPLICATE_ENTRY:
                        message = f"a primaryKey value appears more than once in the output: {message}"
                    raise BulkLoadFailed(f"{marker} {message} (partition {partition})")
        connection.commit()
        return rows
    except pymysql.MySQLError as failed:
        connection.rollback()
        code = failed.args[0] if failed.args else None
        marker = BULK_BAD_DATA if code in MYSQL_DATA_ERRORS else BULK_REJECTED
        raise BulkLoadFailed(f"{marker} {_mysql_message(failed)}") from None
    except BulkLoadFailed:
        connection.rollback()
        raise
    finally:
        connection.close()
        os.unlink(path)


class _LineStream:
    """The file-like object COPY reads: whole lines, about `size` bytes a read."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> bytes:
        chunk, total = [], 0
        for line in self._lines:
            chunk.append(line)
            total += len(line)
            if 0 <= size <= total:
                break
        return b"".join(chunk)


def _chunks(lines: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    total = 0
    for line in lines:
        chunk.append(line)
        total += len(line)
        if total >= size:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def _mysql_message(failed: Exception) -> str:
    args: tuple[Any, ...] = failed.args
    if len(args) >= 2:
        return str(args[1])
    return _first_line(str(failed))
