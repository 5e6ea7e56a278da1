"""The upsert's bulk load: the output as load text built by Spark expressions (no Python per
value), streamed by each executor into the staging table with COPY (PostgreSQL) or LOAD DATA
LOCAL INFILE (MySQL), one transaction per partition, so load speed grows with the executors.

A partition is loaded once: its number goes into a small table in the same transaction, so a
retried or speculative task that finds it there loads nothing.

A value staging refuses (too long, out of range) fails the partition; with `tolerate` the lines
are kept in a local file as they stream past, and the refused ones are found by loading ranges
of them inside savepoints (refusals.find_refused), the others loaded. Each line starts with its
row's id (sql.ROW_ID), by which the driver finds the row again."""

from __future__ import annotations

import array
import functools
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl_job.connectors.jdbc.errors import BULK_BAD_DATA, BULK_REJECTED, REFUSAL_CLASSES, error_type
from etl_job.connectors.jdbc.refusals import find_refused
from etl_job.connectors.jdbc.sql import Dialect, FieldFormat
from etl_job.runtime.columns import named_column

#: Bytes handed to COPY per read, and written per LOAD DATA file.
COPY_READ_SIZE = 1 << 20
LOAD_FILE_SIZE = 64 << 20

#: MySQL error codes that mean a value or a key of the data, not the server, is at fault.
MYSQL_DATA_ERRORS = frozenset({1048, 1062, 1263, 1264, 1265, 1292, 1366, 1406, 1411})
DUPLICATE_ENTRY = 1062
#: MySQL codes of a NULL refused by a NOT NULL column: constraints (SQLSTATE class 23), where the
#: other data errors are values (22).
MYSQL_NULL_ERRORS = frozenset({1048, 1263})
_AT_ROW = re.compile(r" at row \d+$")
_COPY_COLUMN = re.compile(r", column ([^:]+):")

#: A row staging refused: its id (sql.ROW_ID), the error's class and code, and the message.
StagedRefusal = tuple[int, str, str]


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
    #: Load the lines staging takes and report the others, instead of failing the partition.
    tolerate: bool = False
    #: Only find the first line staging refuses; load nothing (rolled back) and mark nothing.
    dry_run: bool = False


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


def bulk_load(text_frame: Any, target: BulkTarget) -> tuple[int, list[StagedRefusal]]:
    """Load every partition of the load text into staging, in parallel; the rows loaded, and
    the rows staging refused (with `target.tolerate`; else the first fails the load)."""
    loads = line_bytes(text_frame).mapPartitions(functools.partial(load_partition, target)).collect()
    return sum(rows for rows, _ in loads), [refused for _, found in loads for refused in found]


def first_refused(text_frame: Any, target: BulkTarget, partition: int) -> StagedRefusal | None:
    """The first line of `partition` that staging refuses, found by a dry run of that partition
    alone (nothing is kept): the row to name when a partition failed with bad data."""
    from dataclasses import replace

    dry_run = replace(target, tolerate=True, dry_run=True)
    lines = line_bytes(text_frame)
    loads = lines.context.runJob(lines, functools.partial(load_partition, dry_run), [partition])
    return next((found[0] for _, found in loads if found), None)


def failed_partition(message: str) -> tuple[int | None, str]:
    """The partition named in a bad-data message of an executor, and the message without it."""
    match = re.match(r"^\(partition (\d+)\) (.*)$", message)
    return (int(match.group(1)), match.group(2)) if match else (None, message)


# --- executor side ------------------------------------------------------------------------------


class BulkLoadFailed(RuntimeError):
    """Raised on an executor; its message starts with a marker the driver looks for."""


def load_partition(target: BulkTarget, lines: Iterator[bytes]) -> Iterator[tuple[int, list[StagedRefusal]]]:
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    loader = _load_postgres if target.dialect == "PostgreSQL" else _load_mysql
    yield loader(target, partition, lines)


def _load_postgres(
    target: BulkTarget, partition: int, lines: Iterator[bytes]
) -> tuple[int, list[StagedRefusal]]:
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
    spool = _Spool() if target.tolerate else None
    try:
        with connection.cursor() as cursor:
            if not target.dry_run:
                try:
                    cursor.execute(target.mark_statement, (partition,))
                except errors.UniqueViolation:
                    connection.rollback()
                    return 0, []  # another attempt of this task loaded the partition
            stream = _LineStream(lines, spool)
            refused: list[StagedRefusal] = []
            if spool is None:
                cursor.copy_expert(target.load_statement, stream, size=COPY_READ_SIZE)
                rows = int(cursor.rowcount)
            else:
                rows, refused = _copy_tolerating(cursor, target, stream, spool)
        if target.dry_run:
            connection.rollback()
        else:
            connection.commit()
        return rows, refused
    except psycopg2.Error as failed:
        connection.rollback()
        data = _refused_value(failed)
        context = getattr(failed.diag, "context", None)
        where = f" ({_first_line(context)})" if data and context else ""
        marker = f"{BULK_BAD_DATA} (partition {partition})" if data else BULK_REJECTED
        raise BulkLoadFailed(f"{marker} {_first_line(str(failed))}{where}") from None
    finally:
        connection.close()
        if spool is not None:
            spool.close()


def _refused_value(failed: Any) -> bool:
    return (getattr(failed, "pgcode", None) or "")[:2] in REFUSAL_CLASSES


def _copy_tolerating(
    cursor: Any, target: BulkTarget, stream: _LineStream, spool: _Spool
) -> tuple[int, list[StagedRefusal]]:
    """COPY the partition; when staging refuses a line, load it again by ranges of its lines
    (kept in `spool`), each inside a savepoint, leaving out the lines refused alone."""
    import psycopg2

    def attempt(source: Any) -> tuple[str, str] | None:
        cursor.execute("SAVEPOINT etl_lines")
        try:
            cursor.copy_expert(target.load_statement, source, size=COPY_READ_SIZE)
        except psycopg2.Error as failed:
            if not _refused_value(failed):
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT etl_lines")
            cursor.execute("RELEASE SAVEPOINT etl_lines")
            return _postgres_refusal(failed)
        cursor.execute("RELEASE SAVEPOINT etl_lines")
        return None

    whole = attempt(stream)
    stream.drain()
    offsets = spool.offsets
    if whole is None:
        return len(offsets) - 1, []
    found = find_refused(
        len(offsets) - 1,
        lambda lo, hi: attempt(spool.reader(offsets[lo], offsets[hi])),
        whole=whole,
        first_only=target.dry_run,
    )
    refused = [(spool.row_id(position), kind, message) for position, (kind, message) in found]
    return len(offsets) - 1 - len(refused), refused


def _postgres_refusal(failed: Any) -> tuple[str, str]:
    """psycopg2's class and the SQLSTATE, and the message with the column when COPY names it."""
    message = failed.diag.message_primary or _first_line(str(failed))
    column = _COPY_COLUMN.search(failed.diag.context or "")
    where = f" (column {column.group(1)})" if column else ""
    return f"{type(failed).__name__}/{failed.pgcode}", f"{message}{where}"


def _load_mysql(
    target: BulkTarget, partition: int, lines: Iterator[bytes]
) -> tuple[int, list[StagedRefusal]]:
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
            if not target.dry_run:
                try:
                    cursor.execute(target.mark_statement, (partition,))
                except pymysql.err.IntegrityError:
                    connection.rollback()
                    return 0, []  # another attempt of this task loaded the partition
            rows, refused = 0, list[StagedRefusal]()
            # LOAD DATA reads a file: the partition goes through a few bounded files in turn.
            for chunk in _chunks(lines, LOAD_FILE_SIZE):
                if target.tolerate:
                    cursor.execute("SAVEPOINT etl_lines")
                loaded, warning = _load_file(connection, cursor, target, path, chunk)
                if warning is None:
                    rows += loaded
                    if target.tolerate:
                        cursor.execute("RELEASE SAVEPOINT etl_lines")
                    continue
                if not (target.tolerate and _tolerable(warning[0])):
                    raise _mysql_load_failure(warning, partition)
                cursor.execute("ROLLBACK TO SAVEPOINT etl_lines")
                cursor.execute("RELEASE SAVEPOINT etl_lines")
                found = _bisect_chunk(connection, cursor, target, path, chunk, warning, partition)
                rows += len(chunk) - len(found)
                refused.extend(found)
                if target.dry_run and refused:
                    break
        if target.dry_run:
            connection.rollback()
        else:
            connection.commit()
        return rows, refused
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


def _load_file(
    connection: Any, cursor: Any, target: BulkTarget, path: str, lines: Sequence[bytes]
) -> tuple[int, tuple[int, str] | None]:
    """LOAD DATA of `lines`; the rows loaded, and the first warning (code, message), if any.
    LOCAL turns bad values and repeated keys into warnings and goes on: any warning means a
    row was altered or skipped."""
    with open(path, "wb") as out:
        out.writelines(lines)
    loaded = int(cursor.execute(target.load_statement, (path,)))
    if not cursor.warning_count:
        return loaded, None
    _level, code, message = connection.show_warnings()[0]
    return loaded, (int(code), str(message))


def _tolerable(code: int) -> bool:
    """A value or a NULL refused; a key staged twice is the output's fault, never set aside."""
    return code in MYSQL_DATA_ERRORS and code != DUPLICATE_ENTRY


def _mysql_load_failure(warning: tuple[int, str], partition: int) -> BulkLoadFailed:
    code, message = warning
    if code == DUPLICATE_ENTRY:
        message = f"a primaryKey value appears more than once in the output: {message}"
    marker = f"{BULK_BAD_DATA} (partition {partition})" if code in MYSQL_DATA_ERRORS else BULK_REJECTED
    return BulkLoadFailed(f"{marker} {message}")


def _bisect_chunk(
    connection: Any,
    cursor: Any,
    target: BulkTarget,
    path: str,
    chunk: Sequence[bytes],
    warning: tuple[int, str],
    partition: int,
) -> list[StagedRefusal]:
    """Load the chunk by ranges of lines inside savepoints, leaving out those refused alone."""

    def attempt(lo: int, hi: int) -> tuple[int, str] | None:
        cursor.execute("SAVEPOINT etl_lines")
        _loaded, found = _load_file(connection, cursor, target, path, chunk[lo:hi])
        if found is not None:
            cursor.execute("ROLLBACK TO SAVEPOINT etl_lines")
            if not _tolerable(found[0]):
                raise _mysql_load_failure(found, partition)
        cursor.execute("RELEASE SAVEPOINT etl_lines")
        return found

    found = find_refused(len(chunk), attempt, whole=warning, first_only=target.dry_run)
    return [_mysql_refusal(chunk[position], code, message) for position, (code, message) in found]


def _mysql_refusal(line: bytes, code: int, message: str) -> StagedRefusal:
    # The class PyMySQL raises for the same error in a statement (no SQLSTATE in a warning).
    state = "23000" if code in MYSQL_NULL_ERRORS else "22000"
    return _row_id(line), error_type("MySQL", state, code), _AT_ROW.sub("", message)


def _row_id(line: bytes) -> int:
    """The row id each load line starts with (sql.ROW_ID)."""
    return int(line[: line.index(b",")])


class _Spool:
    """A partition's lines kept in a local file as they stream to the database, to be loaded
    again by ranges of lines when staging refuses one. Lines are the rows of the iterator, not
    of the file: a quoted value may hold a newline."""

    def __init__(self) -> None:
        folder = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0] or None
        handle, self.path = tempfile.mkstemp(prefix="etl-spool-", suffix=".txt", dir=folder)
        self.file = os.fdopen(handle, "w+b")
        #: Where each line starts, and the end of the last: n + 1 numbers for n lines.
        self.offsets = array.array("q", [0])

    def write(self, lines: Sequence[bytes], data: bytes) -> None:
        """Keep `lines`, whose bytes joined are `data`."""
        position = self.offsets[-1]
        for line in lines:
            position += len(line)
            self.offsets.append(position)
        self.file.write(data)

    def reader(self, start: int, end: int) -> _RangeReader:
        self.file.flush()
        return _RangeReader(self.file, start, end)

    def row_id(self, position: int) -> int:
        self.file.flush()
        self.file.seek(self.offsets[position])
        return _row_id(self.file.read(self.offsets[position + 1] - self.offsets[position]))

    def close(self) -> None:
        self.file.close()
        os.unlink(self.path)


class _RangeReader:
    """The file-like object COPY reads for the bytes start..end of a spool."""

    def __init__(self, file: Any, start: int, end: int) -> None:
        self._file, self._position, self._end = file, start, end

    def read(self, size: int = -1) -> bytes:
        wanted = self._end - self._position if size < 0 else min(size, self._end - self._position)
        if wanted <= 0:
            return b""
        self._file.seek(self._position)
        data: bytes = self._file.read(wanted)
        self._position += len(data)
        return data


class _LineStream:
    """The file-like object COPY reads: whole lines, about `size` bytes a read; each read is
    copied into `spool` when there is one."""

    def __init__(self, lines: Iterator[bytes], spool: _Spool | None = None) -> None:
        self._lines = lines
        self._spool = spool

    def read(self, size: int = -1) -> bytes:
        chunk, total = [], 0
        for line in self._lines:
            chunk.append(line)
            total += len(line)
            if 0 <= size <= total:
                break
        data = b"".join(chunk)
        if self._spool is not None:
            self._spool.write(chunk, data)
        return data

    def drain(self) -> None:
        """Read what COPY left unread, into the spool."""
        while self.read(COPY_READ_SIZE):
            pass


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
