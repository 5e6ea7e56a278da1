"""PostgreSQL and MySQL: the JDBC source (table or query, parallel and incremental reads) and the
sink (append, overwrite keeping the table, upsert), which loads a staging table in bulk and
writes it into the table in one transaction, finding the rows the table refuses.

SQL text comes from jdbc.sql (pure), driver-side statements go through jdbc.client, the bulk
load runs on the executors (jdbc.bulk). Every failure names the database, the table and the
driver's own message, and never a credential."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl_job.connectors import deadletter
from etl_job.connectors.jdbc.bulk import (
    BulkTarget,
    StagedRefusal,
    bulk_load,
    failed_partition,
    first_refused,
    load_text,
)
from etl_job.connectors.jdbc.client import JdbcClient, JdbcFailure, causes_of
from etl_job.connectors.jdbc.errors import (
    BULK_BAD_DATA,
    BULK_REJECTED,
    CARDINALITY_VIOLATION,
    MISSING_TABLE_STATES,
    UNIQUE_VIOLATION,
    Refusal,
    driver_message,
    hint,
    marked,
    permanent,
    redact,
    refusal,
)
from etl_job.connectors.jdbc.refusals import RowSpace, find_refused
from etl_job.connectors.jdbc.sql import (
    DIALECTS,
    NUMERIC_JDBC_TYPES,
    ROW_ID,
    Dialect,
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
from etl_job.connectors.registry import register_sink, register_source
from etl_job.contract import (
    ConfigurationError,
    Connection,
    DataError,
    EtlError,
    JdbcSink,
    JdbcSource,
    SecretKeyRef,
    SinkRejected,
    SourceUnavailable,
    WriteMode,
)
from etl_job.contract.credentials import secret_value
from etl_job.quality.guard import record_violation
from etl_job.quality.validate import row_label
from etl_job.runtime.columns import named_column
from etl_job.runtime.context import RunContext, SinkRefusals

log = logging.getLogger("etl_job.jdbc")


@dataclass(frozen=True)
class Database:
    """A database to connect to, as whom, with the password resolved (never in its repr)."""

    dialect: Dialect
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict)
    #: Values no message may show: the password, and the user when it came from a Secret.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def label(self) -> str:
        return f"{self.dialect.name} {self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        return self.dialect.jdbc_url(self.host, self.port, self.database)

    def properties(self) -> dict[str, str]:
        """JDBC connection properties; the password goes here, never into the URL."""
        return {**self.options, "user": self.user, "password": self.password}

    def spark_options(self) -> dict[str, str]:
        # Spark redacts the `password` option in plans and logs (spark.redaction.regex).
        return {"url": self.url, "driver": self.dialect.driver_class, **self.properties()}

    def client(self, spark: Any) -> JdbcClient:
        return JdbcClient(spark, self.url, self.dialect.driver_class, self.properties())

    def failure(self, action: str, error: BaseException) -> tuple[str, bool]:
        """`action` (such as "cannot read table t from") with the database and the driver's
        message, for an error from Spark, the JVM or a bulk-load task; and whether retrying
        cannot help."""
        causes = error.causes if isinstance(error, JdbcFailure) else causes_of(error)
        text = str(error)
        cause = marked(text, BULK_REJECTED) or driver_message(causes, _first_line(text))
        cause = redact(cause, self.secrets)
        return f"{action} {self.label}: {cause}{hint(cause)}", permanent(causes)


def database_of(
    source_type: str,
    connection: Connection,
    credentials_ref: SecretKeyRef,
    env: Mapping[str, str],
    stage: str,
) -> Database:
    reserved = reserved_option(connection.options)
    if reserved is not None:
        raise ConfigurationError(
            f"option {reserved} is set by the spec itself (host, database, user, credentialsRef, table)",
            stage=stage,
            field="connection.options",
        )
    password = secret_value(credentials_ref, env, stage=stage, field="credentialsRef")
    hidden = [password]
    if connection.user_ref is not None:
        user = secret_value(connection.user_ref, env, stage=stage, field="connection.userRef")
        hidden.append(user)
    else:
        user = connection.user or ""
    return Database(
        DIALECTS[source_type],
        connection.host,
        connection.port,
        connection.database,
        user,
        password,
        dict(connection.options),
        tuple(hidden),
    )


# --- source ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPlan:
    """What Spark reads: a FROM item, how to split it, and the mark the read goes up to."""

    relation: str
    bounds: tuple[str, str] | None = None
    high_water_mark: str | None = None


@register_source("PostgreSQL", "MySQL")
class JdbcSourceConnector:
    """A table or a query, read by Spark over JDBC: split on a column, and incremental."""

    def read(self, block: JdbcSource, context: RunContext) -> Any:
        database = database_of(
            block.source_type, block.connection, block.credentials_ref, context.env, "extract"
        )
        what = f"table {block.table}" if block.table is not None else "query"
        try:
            plan = plan_read(block, database, context)
            frame = _reader(block, database, plan, context.spark).load()
        except EtlError:
            raise
        except Exception as failed:  # noqa: BLE001 - Spark, py4j and the JVM raise many classes
            message, lasting = database.failure(f"cannot read {what} from", failed)
            raise SourceUnavailable(message, stage="extract", permanent=lasting) from None
        if block.incremental is not None:
            context.report.high_water_mark = plan.high_water_mark
            log.info("incremental read of %s up to %s", what, plan.high_water_mark)
        return frame


def plan_read(block: JdbcSource, database: Database, context: RunContext) -> ReadPlan:
    """Find the new high-water mark and the partition bounds, each with one query, when asked."""
    dialect = database.dialect
    relation = source_relation(dialect, block.table, block.query)
    if block.num_partitions and block.partition_column is None:
        log.warning(
            "extract: numPartitions needs partitionColumn to split the read; reading in one partition"
        )
    given = _given_bounds(block)
    if block.incremental is None and (block.partition_column is None or given is not None):
        return ReadPlan(relation, given if block.partition_column else None)
    mark = context.high_water_mark
    with database.client(context.spark) as client:
        if block.incremental is not None:
            relation, mark = _incremental(client, dialect, relation, block.incremental.column, mark)
        bounds = None
        if block.partition_column is not None:
            bounds = _bounds(client, dialect, relation, block)
    return ReadPlan(relation, bounds, mark)


def _incremental(
    client: JdbcClient, dialect: Dialect, relation: str, column: str, old_mark: str | None
) -> tuple[str, str | None]:
    """The rows past the old mark up to the largest value now, and that value: fixed before
    reading, so rows written during the run are left for the next one."""
    after = None
    if old_mark is not None:
        probe = client.query(dialect.probe(relation, dialect.quote_identifier(column)))
        try:
            after = dialect.mark_literal(old_mark, probe.types[0] in NUMERIC_JDBC_TYPES)
        except ValueError as wrong:
            raise ConfigurationError(str(wrong), stage="extract", field="incremental.column") from None
    found = client.query(max_query(dialect, relation, column, after))
    new_mark = found.first()[0]
    upto = (
        dialect.mark_literal(new_mark, found.types[0] in NUMERIC_JDBC_TYPES) if new_mark is not None else None
    )
    predicate = incremental_predicate(dialect, column, after, upto)
    return filtered_relation(relation, predicate), (new_mark if new_mark is not None else old_mark)


def _given_bounds(block: JdbcSource) -> tuple[str, str] | None:
    if block.lower_bound is not None and block.upper_bound is not None:
        return block.lower_bound, block.upper_bound
    return None


def _bounds(client: JdbcClient, dialect: Dialect, relation: str, block: JdbcSource) -> tuple[str, str] | None:
    column = block.partition_column or ""
    given = _given_bounds(block)
    if given is not None:
        return given
    found = client.query(bounds_query(dialect, relation, column))
    if not partitionable(found.types[0]):
        raise ConfigurationError(
            f"column {column} is not a number, date or timestamp column; Spark cannot split reads on it",
            stage="extract",
            field="partitionColumn",
        )
    low, high = found.first()
    try:
        return read_bounds(block.lower_bound, block.upper_bound, low, high, found.types[0])
    except ValueError as wrong:
        raise ConfigurationError(str(wrong), stage="extract", field="lowerBound") from None


def _reader(block: JdbcSource, database: Database, plan: ReadPlan, spark: Any) -> Any:
    reader = spark.read.format("jdbc")
    for key, value in database.spark_options().items():
        reader = reader.option(key, value)
    reader = reader.option("dbtable", plan.relation).option("fetchsize", str(block.fetch_size))
    if plan.bounds is not None and block.partition_column is not None:
        partitions = block.num_partitions or spark.sparkContext.defaultParallelism
        reader = (
            reader.option("partitionColumn", block.partition_column)
            .option("lowerBound", plan.bounds[0])
            .option("upperBound", plan.bounds[1])
            .option("numPartitions", str(partitions))
        )
    return reader


# --- sink ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetColumns:
    """The output's columns as the target table spells them, with their Spark types."""

    output: list[str]
    table: list[str]
    types: list[str]
    primary_key: list[str]


@register_sink("PostgreSQL", "MySQL")
class JdbcSinkConnector:
    """A table, created from the output's schema when missing. Every write mode stages the output
    in bulk, then writes staging into the table in one transaction (append: INSERT ... SELECT;
    overwrite: the table emptied first; upsert: the merge), so a run changes the table whole or
    not at all. A row the table refuses fails the run, named (tolerance none), or is left out and
    dead-lettered (tolerance all)."""

    def write(self, frame: Any, block: JdbcSink, context: RunContext) -> None:
        database = database_of(block.sink_type, block.connection, block.credentials_ref, context.env, "load")
        output = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]
        missing_keys = [key for key in block.primary_key if key.lower() not in {n.lower() for n, _ in output}]
        if missing_keys:
            raise ConfigurationError(
                f"primary key column {missing_keys[0]} is not in the output "
                f"(columns: {', '.join(name for name, _ in output)})",
                stage="load",
                field="primaryKey",
            )
        if any(name.lower() == ROW_ID for name, _ in output):
            raise ConfigurationError(
                f"column {ROW_ID} is the name the load gives its staged rows; rename it", stage="load"
            )
        try:
            with database.client(context.spark) as client:
                columns = prepare_table(client, database, block, output)
            write_through_staging(frame, block, database, columns, context)
        except EtlError:
            raise
        except Exception as failed:
            if record_violation(failed) is not None:
                raise  # a bad record met on the way: the pipeline reports it
            bad = marked(str(failed), BULK_BAD_DATA)
            if bad is not None:
                raise DataError(
                    f"table {block.table} of {database.label} refused a row: "
                    f"{redact(failed_partition(bad)[1], database.secrets)}",
                    stage="load",
                ) from None
            message, lasting = database.failure(f"cannot write table {block.table} of", failed)
            raise SinkRejected(message, stage="load", permanent=lasting) from None


def prepare_table(
    client: JdbcClient, database: Database, block: JdbcSink, output: Sequence[tuple[str, str]]
) -> TargetColumns:
    """Create the table when it is missing; check that it takes the output's columns, and has
    the unique key an upsert needs."""
    dialect = database.dialect
    try:
        existing = client.query(dialect.probe(dialect.quote_table(block.table))).columns
    except JdbcFailure as failed:
        if failed.sql_state not in MISSING_TABLE_STATES:
            raise
        existing = _create_table(client, database, block, output)
    by_lower = {name.lower(): name for name in existing}
    absent = [name for name, _ in output if name.lower() not in by_lower]
    if absent:
        raise ConfigurationError(
            f"column {absent[0]} of the output is not in table {block.table} of {database.label} "
            f"(columns: {', '.join(existing)})",
            stage="load",
        )
    # Names as the table spells them: the statements quote them, so case matters.
    columns = TargetColumns(
        output=[name for name, _ in output],
        table=[by_lower[name.lower()] for name, _ in output],
        types=[spark_type for _, spark_type in output],
        primary_key=[by_lower[key.lower()] for key in block.primary_key],
    )
    if block.write_mode == WriteMode.upsert:
        sql, parameters = dialect.unique_keys(block.table)
        indexes = [(row[0] or "", row[1] or "") for row in client.query(sql, parameters).rows]
        if not unique_key_matches(indexes, columns.primary_key):
            raise ConfigurationError(
                f"table {block.table} of {database.label} has no primary key or unique index on exactly "
                f"({', '.join(block.primary_key)}), which upsert needs",
                stage="load",
                field="primaryKey",
            )
    return columns


def _create_table(
    client: JdbcClient, database: Database, block: JdbcSink, output: Sequence[tuple[str, str]]
) -> list[str]:
    dialect = database.dialect
    unsupported = unsupported_columns(dialect, output)
    if unsupported:
        name, spark_type = unsupported[0]
        raise ConfigurationError(
            f"column {name} has type {spark_type}, which table {block.table} of {database.label} cannot "
            "store; turn it into a string first (a Select transform with to_json)",
            stage="load",
        )
    keys = {key.lower() for key in block.primary_key}
    primary_key = [name for name, _ in output if name.lower() in keys]
    client.execute(dialect.create_table(block.table, output, primary_key))
    log.info("created table %s of %s", block.table, database.label)
    return [name for name, _ in output]


@dataclass(frozen=True)
class StagedOutput:
    """The output of one load as it is staged: its rows, numbered (ROW_ID) and kept on the
    executors, so that a refused row is found again by its number, and their load text."""

    rows: Any
    text: Any


@dataclass(frozen=True)
class _Write:
    """One load's settings, for the steps that stage and write it."""

    block: JdbcSink
    database: Database
    columns: TargetColumns
    context: RunContext

    @property
    def mode(self) -> str:
        return str(self.block.write_mode)

    @property
    def tolerate(self) -> bool:
        """tolerance all: a refused row is left out and dead-lettered, the others written."""
        return self.context.tolerance == "all"


class _RowRefused(Exception):
    """A row the table refused, with tolerance none: the write's transaction rolls back."""

    def __init__(self, row_id: int, found: Refusal) -> None:
        super().__init__(found.message)
        self.row_id, self.refusal = row_id, found


def write_through_staging(
    frame: Any, block: JdbcSink, database: Database, columns: TargetColumns, context: RunContext
) -> None:
    """Stage the output in bulk, then write it into the table in one transaction: a retried load
    stages again and writes the same rows into the same table."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    dialect = database.dialect
    for name, spark_type in zip(columns.output, columns.types, strict=True):
        try:
            dialect.field_format(spark_type)
        except UnsupportedType:
            raise ConfigurationError(
                f"column {name} has type {spark_type}, which the load into table {block.table} of "
                f"{database.label} cannot write; turn it into a string first "
                "(a Select transform with to_json)",
                stage="load",
            ) from None
    if block.write_mode == WriteMode.upsert:
        # Each partition sorted by key: MySQL's keyed staging table loads in key order at less
        # than half the cost, and either merge then meets the target's key index in order.
        keys = [columns.output[columns.table.index(key)] for key in columns.primary_key]
        frame = frame.sortWithinPartitions(*[named_column(key) for key in keys])
    rows = frame.select(
        *[named_column(name) for name in columns.output], F.monotonically_increasing_id().alias(ROW_ID)
    )
    # Kept on the executors and counted first: that Dataset action is the pipeline's one pass
    # over the data (its row counts and bad-record checks, which the bulk load, an RDD job,
    # would not report), done before the database sees a row; the numbers then stay as they
    # were when the rows were staged, for naming refused rows.
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK_DESER)
    try:
        started = time.perf_counter()
        if rows.count() == 0 and block.write_mode != WriteMode.overwrite:
            log.info("nothing to write into table %s of %s", block.table, database.label)
            return
        seconds = {"count": time.perf_counter() - started}
        text_columns = [(ROW_ID, "bigint"), *zip(columns.output, columns.types, strict=True)]
        staged = StagedOutput(rows, load_text(rows, dialect, text_columns))
        with database.client(context.spark) as client:
            _stage_and_write(client, staged, _Write(block, database, columns, context), seconds)
    finally:
        rows.unpersist()


def _stage_and_write(
    client: JdbcClient, staged: StagedOutput, write: _Write, seconds: dict[str, float]
) -> None:
    """Load staging, then write it into the table; `seconds` gets the time each phase took
    (logged with the rows)."""
    block, database, columns = write.block, write.database, write.columns
    dialect = database.dialect
    staging, loaded_partitions = staging_names(block.table, write.context.run_id, secrets.token_hex(4))
    target = BulkTarget(
        dialect=dialect.name,
        host=database.host,
        port=database.port,
        database=database.database,
        user=database.user,
        password=database.password,
        client_options=dialect.client_options(database.options),
        load_statement=dialect.bulk_load(
            staging, [(ROW_ID, "bigint"), *zip(columns.table, columns.types, strict=True)]
        ),
        mark_statement=dialect.mark_partition_loaded(loaded_partitions),
        tolerate=write.tolerate,
    )
    upserting = block.write_mode == WriteMode.upsert
    _drop_left_behind(client, database)
    try:
        client.execute(
            dialect.create_staging(
                staging, block.table, columns.table, columns.primary_key if upserting else []
            )
        )
        client.execute(dialect.create_loaded_partitions(loaded_partitions))
        started = time.perf_counter()
        rows, refused_staging = _load_staging(staged, target, write)
        seconds["stage"] = time.perf_counter() - started
        started = time.perf_counter()
        try:
            changed, refused_writing = _write_staged(
                client, staging, staged.text.rdd.getNumPartitions(), write
            )
        except _RowRefused as first:
            raise _refused_row_error(staged, write, first.row_id, first.refusal) from None
        seconds["write" if not upserting else "merge"] = time.perf_counter() - started
        refused = {row_id: Refusal(kind, message) for row_id, kind, message in refused_staging}
        refused.update(refused_writing)
        if refused:
            write.context.report.sink_refusals = SinkRefusals(
                len(refused), _dead_letters(staged, refused, write)
            )
        log.info(
            "%s %d rows into table %s of %s (%d rows changed, %d refused); seconds: %s",
            {"append": "appended", "overwrite": "wrote", "upsert": "upserted"}[write.mode],
            rows - len(refused_writing),
            block.table,
            database.label,
            changed,
            len(refused),
            ", ".join(f"{phase} {value:.2f}" for phase, value in seconds.items()),
            extra={"upsert_seconds" if upserting else "write_seconds": dict(seconds)},
        )
    finally:
        for name in (staging, loaded_partitions):
            try:
                client.execute(dialect.drop_table(name))
            except JdbcFailure:  # the load's own error, if any, is the one to report
                _LEFT_BEHIND.setdefault(database.label, set()).add(name)
                log.warning(
                    "could not drop staging table %s of %s; the next load into it drops it, "
                    "else drop it by hand",
                    name,
                    database.label,
                )


#: Staging tables an attempt could not drop (the database went away mid-load), by database:
#: the next attempt, or the next batch of a stream, drops them once the database is back.
_LEFT_BEHIND: dict[str, set[str]] = {}


def _drop_left_behind(client: JdbcClient, database: Database) -> None:
    left = _LEFT_BEHIND.get(database.label, set())
    for name in sorted(left):
        try:
            client.execute(database.dialect.drop_table(name))
        except JdbcFailure:
            continue  # still there; the load itself reports what is wrong
        left.discard(name)
        log.info("dropped staging table %s of %s, left by an earlier attempt", name, database.label)


def _load_staging(staged: StagedOutput, target: BulkTarget, write: _Write) -> tuple[int, list[StagedRefusal]]:
    """Bulk-load staging; with tolerance none, a value staging refuses fails the run naming its
    row, found by a dry run of the partition that met it."""
    try:
        return bulk_load(staged.text, target)
    except Exception as failed:
        bad = marked(str(failed), BULK_BAD_DATA)
        if bad is None:
            raise
        partition, _message = failed_partition(bad)
        found = None
        if partition is not None:
            try:
                found = first_refused(staged.text, target, partition)
            except Exception:  # noqa: BLE001 - the first failure names the problem well enough
                log.warning("could not find the row that partition %d of the load refused", partition)
        if found is None:
            raise
        row_id, kind, message = found
        raise _refused_row_error(staged, write, row_id, Refusal(kind, message)) from None


def _write_staged(
    client: JdbcClient, staging: str, runs: int, write: _Write
) -> tuple[int, dict[int, Refusal]]:
    """Write staging into the table in one transaction; the rows changed, and the rows refused
    (tolerance all) by their ROW_ID. A refused row makes the write go again by ranges of rows."""
    block, columns = write.block, write.columns
    dialect = write.database.dialect
    version = client.server_version()
    statements = dialect.write_statements(
        write.mode,
        block.table,
        staging,
        columns.table,
        columns.primary_key,
        runs=runs,
        server_version=version,
    )
    try:
        try:
            return _in_one_transaction(client, statements), {}
        except JdbcFailure as failed:
            if block.write_mode != WriteMode.upsert:
                raise
            if failed.sql_state in (CARDINALITY_VIOLATION, UNIQUE_VIOLATION):
                duplicate = _duplicate_key(client, dialect, staging, columns, block, write.database)
                if duplicate is not None:
                    raise duplicate from None
            on_conflict = [dialect.merge(block.table, staging, columns.table, columns.primary_key, runs=runs)]
            if failed.sql_state != UNIQUE_VIOLATION or statements == on_conflict:
                raise
            # MERGE meets a key another writer added meanwhile as a unique violation, where
            # ON CONFLICT updates it; a row another unique index refuses fails this too.
            return _in_one_transaction(client, on_conflict), {}
    except JdbcFailure as failed:
        found = refusal(failed.causes, dialect.name)
        if found is None:
            raise
        if block.write_mode == WriteMode.upsert:
            # Written by ranges, a key staged twice would no longer fail the merge.
            duplicate = _duplicate_key(client, dialect, staging, columns, block, write.database)
            if duplicate is not None:
                raise duplicate from None
        return _write_by_ranges(client, staging, version, found, write)


def _write_by_ranges(
    client: JdbcClient, staging: str, version: int, whole: Refusal, write: _Write
) -> tuple[int, dict[int, Refusal]]:
    """The write again, in one transaction, by ranges of staged rows, each in a savepoint: the
    refused rows are found (refusals.find_refused) and left out, the others written. With
    tolerance none the first refused row raises _RowRefused, and nothing is written."""
    block, columns = write.block, write.columns
    dialect = write.database.dialect
    client.execute(dialect.index_rows(staging))
    space = RowSpace.of(client.query(dialect.row_extents(staging)).rows)
    changed = 0

    def attempt(lo: int, hi: int) -> Refusal | None:
        nonlocal changed
        statement = dialect.range_statement(
            write.mode, block.table, staging, columns.table, columns.primary_key, space.ids(lo, hi)
        )
        client.execute("SAVEPOINT etl_rows")
        try:
            count = client.execute(statement)
        except JdbcFailure as failed:
            found = refusal(failed.causes, dialect.name)
            if found is None:
                raise
            client.execute("ROLLBACK TO SAVEPOINT etl_rows")
            client.execute("RELEASE SAVEPOINT etl_rows")
            return found
        client.execute("RELEASE SAVEPOINT etl_rows")
        changed += count
        return None

    started = time.perf_counter()
    with client.transaction():
        for statement in dialect.range_statements(write.mode, block.table, staging, version):
            client.execute(statement)
        found = find_refused(space.size, attempt, whole=whole, first_only=not write.tolerate)
        if found and not write.tolerate:
            position, first = found[0]
            raise _RowRefused(space.id_at(position), first)
    log.info(
        "table %s of %s refused %d of %d staged rows, found in %.2f s",
        block.table,
        write.database.label,
        len(found),
        space.size,
        time.perf_counter() - started,
    )
    return changed, {space.id_at(position): why for position, why in found}


def _refused_row_error(staged: StagedOutput, write: _Write, row_id: int, found: Refusal) -> DataError:
    """The error naming a refused row by its key (primaryKey, else its first columns)."""
    from pyspark.sql import functions as F

    block, database = write.block, write.database
    label = (
        staged.rows.where(F.col(ROW_ID) == row_id)
        .select(row_label(write.columns.output, block.primary_key))
        .first()
    )
    named = label[0] if label is not None else "a row"
    return DataError(
        f"table {block.table} of {database.label} refused {named}: {found.error_type}: "
        f"{redact(found.message, database.secrets)}",
        stage="load",
    )


def _dead_letters(staged: StagedOutput, refused: Mapping[int, Refusal], write: _Write) -> Any:
    """The refused rows' dead letters (stage load), read from the staged rows while they are
    kept, and held on the driver: the rows are let go when the load ends."""
    from pyspark.sql import functions as F

    block, context = write.block, write.context
    spark = context.spark
    reasons = spark.createDataFrame(
        [
            (row_id, why.error_type, redact(why.message, write.database.secrets))
            for row_id, why in refused.items()
        ],
        f"{ROW_ID} bigint, errorType string, errorMessage string",
    )
    output = write.columns.output
    rows = staged.rows.join(F.broadcast(reasons), ROW_ID).select(
        F.to_json(F.struct(*[named_column(name) for name in output]), {"ignoreNullFields": "false"}).alias(
            "originalRecord"
        ),
        row_label(output, block.primary_key).alias("recordKey"),
        F.lit(None).cast("string").alias("field"),
        F.col("errorType"),
        F.col("errorMessage"),
    )
    batch = context.batch_id if context.batch_id is not None else context.run_id
    letters = deadletter.letters(
        rows,
        pipeline=context.pipeline,
        stage="load",
        schema_name=block.schema_name,
        context={
            "sink": write.database.label,
            "table": block.table,
            "writeMode": write.mode,
            "batch": str(batch),
        },
    )
    return spark.createDataFrame(letters.collect(), letters.schema)


def _in_one_transaction(client: JdbcClient, statements: Sequence[str]) -> int:
    """Run the statements in one transaction; the rows the last one changed."""
    changed = 0
    with client.transaction():
        for statement in statements:
            changed = client.execute(statement)
    return changed


def _duplicate_key(
    client: JdbcClient,
    dialect: Dialect,
    staging: str,
    columns: TargetColumns,
    block: JdbcSink,
    database: Database,
) -> DataError | None:
    """The error naming a key staged twice; None when every key is staged once."""
    result = client.query(dialect.duplicate_keys(staging, columns.primary_key))
    if not result.rows:
        return None
    found = result.rows[0]
    key = ", ".join(f"{name}={value}" for name, value in zip(block.primary_key, found, strict=True))
    return DataError(
        f"key ({key}) appears more than once in the rows to upsert into table {block.table} of "
        f"{database.label}; upsert needs one row per primaryKey",
        stage="load",
        field="primaryKey",
    )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
