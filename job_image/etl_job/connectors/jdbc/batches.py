"""Appending a streaming run's micro-batches to a database table exactly once: the batch's rows
and its row in the ledger table etl_stream_batches (pipeline, batch id) commit in one
transaction, so a batch Spark replays after a crash finds itself there and writes nothing."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from etl_job.connectors.jdbc.connector import database_of, prepare_table
from etl_job.connectors.jdbc.sql import staging_names
from etl_job.contract import ConfigurationError, EtlError, JdbcSink, SinkRejected
from etl_job.quality.guard import record_violation
from etl_job.runtime.context import RunContext

log = logging.getLogger("etl_job.connectors.jdbc")

#: The ledger of committed micro-batches, in the database's default schema.
LEDGER_TABLE = "etl_stream_batches"


def committed_before(block: JdbcSink, context: RunContext, batch_id: int) -> bool:
    """Whether the ledger holds this pipeline's batch: Spark replays a batch whose append was
    committed, and the run then skips it whole, reading none of its rows (a batch that is not
    written never completes its row counts)."""
    database = database_of(block.sink_type, block.connection, block.credentials_ref, context.env, "load")
    try:
        with database.client(context.spark) as client:
            if _in_ledger(client, database.dialect, context.pipeline, batch_id):
                log.info("batch %d was committed before; nothing appended", batch_id)
                return True
            return False
    except (EtlError, ConfigurationError):
        raise
    except Exception as failed:  # noqa: BLE001 - the driver's failures come in many classes
        message, lasting = database.failure(f"cannot read the batches appended to {block.table} in", failed)
        raise SinkRejected(message, stage="load", permanent=lasting) from None


def _in_ledger(client: Any, dialect: Any, pipeline: str, batch_id: int) -> bool:
    ledger = dialect.quote_table(LEDGER_TABLE)
    client.execute(
        f"CREATE TABLE IF NOT EXISTS {ledger} (pipeline VARCHAR(253) NOT NULL, "
        "batch_id BIGINT NOT NULL, committed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
        "PRIMARY KEY (pipeline, batch_id))"
    )
    name = pipeline.replace("'", "''")
    seen = client.query(f"SELECT 1 FROM {ledger} WHERE pipeline = '{name}' AND batch_id = {int(batch_id)}")
    return bool(seen.rows)


def append_batch(frame: Any, block: JdbcSink, context: RunContext, batch_id: int) -> bool:
    """Append the batch's rows unless the batch was committed before; True when it wrote them."""
    database = database_of(block.sink_type, block.connection, block.credentials_ref, context.env, "load")
    dialect = database.dialect
    output = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]
    pipeline = context.pipeline.replace("'", "''")
    ledger = dialect.quote_table(LEDGER_TABLE)
    try:
        with database.client(context.spark) as client:
            columns = prepare_table(client, database, block, output)
            if _in_ledger(client, dialect, context.pipeline, batch_id):
                log.info("batch %d was committed before; nothing appended", batch_id)
                return False
        staging, _ = staging_names(block.table, f"batch-{batch_id}", secrets.token_hex(4))
        writer = frame.write.format("jdbc").mode("overwrite")
        for key, value in database.spark_options().items():
            writer = writer.option(key, value)
        writer.option("dbtable", dialect.quote_table(staging)).save()
        target_columns = ", ".join(dialect.quote_identifier(name) for name in columns.table)
        staged_columns = ", ".join(dialect.quote_identifier(name) for name in columns.output)
        with database.client(context.spark) as client:
            try:
                with client.transaction():
                    client.execute(
                        f"INSERT INTO {ledger} (pipeline, batch_id) VALUES ('{pipeline}', {batch_id})"
                    )
                    client.execute(
                        f"INSERT INTO {dialect.quote_table(block.table)} ({target_columns}) "
                        f"SELECT {staged_columns} FROM {dialect.quote_table(staging)}"
                    )
            finally:
                client.execute(dialect.drop_table(staging))
        return True
    except (EtlError, ConfigurationError):
        raise
    except Exception as failed:
        if record_violation(failed) is not None:
            raise
        message, lasting = database.failure(
            f"cannot append batch {batch_id} to table {block.table} of", failed
        )
        raise SinkRejected(message, stage="load", permanent=lasting) from None
