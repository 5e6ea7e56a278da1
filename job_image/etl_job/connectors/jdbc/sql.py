"""The SQL text and connection settings of the PostgreSQL and MySQL connectors: pure functions
of names and types, no I/O, so each decision is a fast unit test.

Every identifier is quoted, so names are taken exactly as written (case, reserved words)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from enum import Enum
from urllib.parse import quote

#: JDBC type codes (java.sql.Types) of the number types: their values go into SQL unquoted.
NUMERIC_JDBC_TYPES = frozenset({-7, -6, -5, 2, 3, 4, 5, 6, 7, 8})
#: java.sql.Types DATE, TIMESTAMP and TIMESTAMP_WITH_TIMEZONE: Spark splits reads on these too.
TEMPORAL_JDBC_TYPES = frozenset({91, 93, 2014})

#: Options that the spec sets through its own fields; as connection properties they would
#: override those fields or leak into Spark's plan.
RESERVED_OPTIONS = frozenset({"user", "password", "url", "dbtable", "query", "driver"})

_NUMBER = re.compile(r"^[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
_DECIMAL_TYPE = re.compile(r"^decimal\((\d+),(\d+)\)$")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
#: PostgreSQL keeps 63 bytes of a name, MySQL 64.
MAX_NAME_LENGTH = 63
#: Up to this many key-sorted runs in staging (one per partition), the merge reads them as they
#: are; past it, the database sorts them into one.
MAX_SORTED_RUNS = 8
#: The first PostgreSQL with MERGE: a hash join of staging and target, where INSERT ... ON
#: CONFLICT tries each row as an insert first (a fifth less server CPU on half updates).
POSTGRES_MERGE_VERSION = 15
#: Memory for the merge's hash join (SET LOCAL: this transaction only); 64 MB holds the keys of
#: about a million target rows without spilling to disk.
MERGE_WORK_MEM = "64MB"
#: The staging table's own column: each row's number as Spark gave it (monotonically_increasing_id),
#: so that a range of staged rows can be written on its own, and a refused row named.
ROW_ID = "etl_staging_row"
#: Spark numbers the rows of partition p from p << 33 on, in order: the ids of a partition form
#: one range, and the ranges of the partitions follow each other.
PARTITION_SHIFT = 33

#: A range of staged rows by ROW_ID: first included, end excluded.
RowRange = tuple[int, int]


class FieldFormat(Enum):
    """How a column's values are written into the bulk-load text."""

    #: Text in quotes, escaped as the dialect's loader expects.
    TEXT = "text"
    #: Numbers and dates: Spark's string form, unquoted.
    PLAIN = "plain"
    #: true/false as 1/0 (MySQL has no boolean literal in LOAD DATA).
    BOOLEAN_NUMBER = "boolean-number"
    #: An instant with its UTC offset, exact whatever the database's time zone.
    TIMESTAMP_WITH_OFFSET = "timestamp-offset"
    #: Local date and time (in the Spark session's time zone for an instant).
    TIMESTAMP_LOCAL = "timestamp-local"
    #: Bytes as hex digits (PostgreSQL's \x form, or UNHEX for MySQL).
    HEX = "hex"


class UnsupportedType(ValueError):
    """A Spark type the database sinks cannot store as it is."""


@dataclass(frozen=True)
class Dialect:
    """What differs between PostgreSQL and MySQL (MariaDB): quoting, types, URLs, statements."""

    name: str
    driver_class: str
    identifier_quote: str

    # --- names and literals ------------------------------------------------------------------

    def quote_identifier(self, name: str) -> str:
        q = self.identifier_quote
        return q + name.replace(q, q + q) + q

    def quote_table(self, table: str) -> str:
        """`schema.table` (PostgreSQL) or `database.table` (MySQL), each part quoted."""
        return ".".join(self.quote_identifier(part) for part in table.split("."))

    def column_list(self, columns: Sequence[str]) -> str:
        return ", ".join(self.quote_identifier(column) for column in columns)

    def string_literal(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def mark_literal(self, mark: str, numeric: bool) -> str:
        """A high-water mark as SQL: numbers unquoted (exact comparison), anything else as a
        string the database converts to the column's type."""
        if numeric:
            if not _NUMBER.match(mark.strip()):
                raise ValueError(f"high-water mark {mark!r} is not a number, but the column is numeric")
            return mark.strip()
        return self.string_literal(mark)

    # --- connections -------------------------------------------------------------------------

    def jdbc_url(self, host: str, port: int, database: str) -> str:
        raise NotImplementedError

    def client_options(self, options: Mapping[str, str]) -> dict[str, object]:
        """Keyword arguments of the Python client (bulk loads) equivalent to the JDBC properties
        it understands; the others only apply to the JDBC connections."""
        raise NotImplementedError

    # --- tables ------------------------------------------------------------------------------

    def column_type(self, spark_type: str, key: bool) -> str:
        """The SQL type a new table gets for a Spark type (its simpleString)."""
        raise NotImplementedError

    def create_table(self, table: str, columns: Sequence[tuple[str, str]], primary_key: Sequence[str]) -> str:
        """CREATE TABLE for the output's columns (name, Spark type); key columns are NOT NULL."""
        keys = set(primary_key)
        parts = [
            f"{self.quote_identifier(name)} {self.column_type(spark_type, name in keys)}"
            + (" NOT NULL" if name in keys else "")
            for name, spark_type in columns
        ]
        if primary_key:
            parts.append(f"PRIMARY KEY ({self.column_list(primary_key)})")
        return f"CREATE TABLE {self.quote_table(table)} ({', '.join(parts)})"

    def probe(self, relation: str, columns: str = "*") -> str:
        """A query that returns no rows, only the relation's columns and their types."""
        return f"SELECT {columns} FROM {relation} WHERE 1 = 0"

    def drop_table(self, table: str) -> str:
        return f"DROP TABLE IF EXISTS {self.quote_table(table)}"

    # --- upsert ------------------------------------------------------------------------------

    def create_staging(
        self, staging: str, target: str, columns: Sequence[str], primary_key: Sequence[str]
    ) -> str:
        """An empty table with the target's types for the output's columns, and ROW_ID;
        keyed on `primary_key` where the dialect keys staging (an upsert's)."""
        raise NotImplementedError

    def create_loaded_partitions(self, table: str) -> str:
        """The table of partitions already loaded into staging: a retried or speculative task
        finds its partition there and loads nothing twice."""
        return f"CREATE TABLE {self.quote_table(table)} (part INTEGER PRIMARY KEY)"

    def mark_partition_loaded(self, table: str) -> str:
        """With the partition number as the one parameter (%s: the Python clients' style)."""
        return f"INSERT INTO {self.quote_table(table)} (part) VALUES (%s)"

    def bulk_load(self, staging: str, columns: Sequence[tuple[str, str]]) -> str:
        """The statement that loads the bulk-load text into staging (see FieldFormat)."""
        raise NotImplementedError

    def field_format(self, spark_type: str) -> FieldFormat:
        if spark_type in ("string",) or spark_type.startswith(("varchar(", "char(")):
            return FieldFormat.TEXT
        if spark_type == "binary":
            return FieldFormat.HEX
        if spark_type == "timestamp_ntz":
            return FieldFormat.TIMESTAMP_LOCAL
        if spark_type in ("tinyint", "smallint", "int", "bigint", "float", "double", "date", "boolean") or (
            _DECIMAL_TYPE.match(spark_type)
        ):
            return FieldFormat.PLAIN
        if spark_type == "timestamp":
            return FieldFormat.TIMESTAMP_WITH_OFFSET
        raise UnsupportedType(spark_type)

    def merge(
        self,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        rows: RowRange | None = None,
    ) -> str:
        """One statement that inserts the staged rows (those of `rows`) and updates those whose
        key exists. `runs`: how many key-sorted runs staging holds (one per loaded partition)."""
        raise NotImplementedError

    def merge_statements(
        self,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        server_version: int = 0,
    ) -> list[str]:
        """The statements of the merge's transaction, the merge itself last. `server_version`:
        the server's major version (0 when unknown)."""
        return [self.merge(target, staging, columns, primary_key, runs=runs)]

    def rows_where(self, rows: RowRange | None, alias: str = "") -> str:
        """A WHERE clause keeping the staged rows of `rows` (all of them for None)."""
        if rows is None:
            return ""
        column = f"{alias}{self.quote_identifier(ROW_ID)}"
        return f" WHERE {column} >= {int(rows[0])} AND {column} < {int(rows[1])}"

    def insert_select(
        self, target: str, staging: str, columns: Sequence[str], rows: RowRange | None = None
    ) -> str:
        """Append the staged rows (those of `rows`) to the target."""
        names = self.column_list(columns)
        return (
            f"INSERT INTO {self.quote_table(target)} ({names}) "
            f"SELECT {names} FROM {self.quote_table(staging)}{self.rows_where(rows)}"
        )

    def clear_table(self, table: str) -> str:
        """Remove every row, inside the write's transaction, keeping the table's definition."""
        return f"DELETE FROM {self.quote_table(table)}"

    def write_statements(
        self,
        mode: str,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        server_version: int = 0,
    ) -> list[str]:
        """The statements of the one transaction that writes staging into the target, for
        writeMode `mode` (append, overwrite, upsert)."""
        if mode == "upsert":
            return self.merge_statements(
                target, staging, columns, primary_key, runs=runs, server_version=server_version
            )
        append = self.insert_select(target, staging, columns)
        return [self.clear_table(target), append] if mode == "overwrite" else [append]

    def range_statements(self, mode: str, target: str, staging: str, server_version: int = 0) -> list[str]:
        """What the transaction runs first when it writes staging a range of rows at a time
        (range_statement), to find the rows the target refuses."""
        if mode == "overwrite":
            return [self.clear_table(target)]
        return []

    def range_statement(
        self,
        mode: str,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        rows: RowRange,
    ) -> str:
        """Write the staged rows of `rows` into the target, as the whole write would."""
        if mode == "upsert":
            return self.merge(target, staging, columns, primary_key, rows=rows)
        return self.insert_select(target, staging, columns, rows=rows)

    def row_extents(self, staging: str) -> str:
        """The first and last ROW_ID staged from each partition, in order."""
        row = self.quote_identifier(ROW_ID)
        return (
            f"SELECT MIN({row}), MAX({row}) FROM {self.quote_table(staging)} "
            f"GROUP BY {row} >> {PARTITION_SHIFT} ORDER BY 1"
        )

    def index_rows(self, staging: str) -> str:
        """An index on ROW_ID: each range written alone then reads its rows only."""
        raise NotImplementedError

    def duplicate_keys(self, staging: str, primary_key: Sequence[str]) -> str:
        """The first key that appears more than once in staging, if any."""
        keys = self.column_list(primary_key)
        return f"SELECT {keys} FROM {self.quote_table(staging)} GROUP BY {keys} HAVING COUNT(*) > 1 LIMIT 1"

    def unique_keys(self, table: str) -> tuple[str, list[str]]:
        """A query (and its string parameters, JDBC `?` style) listing (index, column) of the
        table's unique indexes, the primary key among them."""
        raise NotImplementedError


def _split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


class PostgresDialect(Dialect):
    def jdbc_url(self, host: str, port: int, database: str) -> str:
        return f"jdbc:postgresql://{url_host(host)}:{port}/{quote(database, safe='')}"

    def client_options(self, options: Mapping[str, str]) -> dict[str, object]:
        renamed = {
            "sslmode": "sslmode",
            "sslrootcert": "sslrootcert",
            "sslcert": "sslcert",
            "sslkey": "sslkey",
            "ApplicationName": "application_name",
            "connectTimeout": "connect_timeout",
            "options": "options",
        }
        result: dict[str, object] = {"connect_timeout": 10, "client_encoding": "UTF8"}
        result.update({renamed[key]: value for key, value in options.items() if key in renamed})
        if "currentSchema" in options:
            search_path = f"-c search_path={options['currentSchema']}"
            result["options"] = f"{result.get('options', '')} {search_path}".strip()
        return result

    def column_type(self, spark_type: str, key: bool) -> str:
        simple = {
            "tinyint": "SMALLINT",
            "smallint": "SMALLINT",
            "int": "INTEGER",
            "bigint": "BIGINT",
            "float": "REAL",
            "double": "DOUBLE PRECISION",
            "string": "TEXT",
            "boolean": "BOOLEAN",
            "date": "DATE",
            "timestamp": "TIMESTAMP WITH TIME ZONE",
            "timestamp_ntz": "TIMESTAMP",
            "binary": "BYTEA",
        }
        if spark_type in simple:
            return simple[spark_type]
        decimal = _DECIMAL_TYPE.match(spark_type)
        if decimal:
            return f"NUMERIC({decimal.group(1)},{decimal.group(2)})"
        if spark_type.startswith(("varchar(", "char(")):
            return spark_type.upper()
        raise UnsupportedType(spark_type)

    def create_staging(
        self, staging: str, target: str, columns: Sequence[str], primary_key: Sequence[str]
    ) -> str:
        # Unlogged: no write-ahead log for rows that live a few seconds; no index, so loading
        # costs no index upkeep, and a key loaded twice is found by the merge itself.
        return (
            f"CREATE UNLOGGED TABLE {self.quote_table(staging)} AS "
            f"SELECT {self.column_list(columns)}, CAST(NULL AS BIGINT) AS {self.quote_identifier(ROW_ID)} "
            f"FROM {self.quote_table(target)} WITH NO DATA"
        )

    def clear_table(self, table: str) -> str:
        # Transactional in PostgreSQL, and without a scan of the old rows.
        return f"TRUNCATE TABLE {self.quote_table(table)}"

    def range_statements(self, mode: str, target: str, staging: str, server_version: int = 0) -> list[str]:
        if mode == "upsert" and server_version >= POSTGRES_MERGE_VERSION:
            return [f"SET LOCAL work_mem = '{MERGE_WORK_MEM}'", f"ANALYZE {self.quote_table(staging)}"]
        return super().range_statements(mode, target, staging, server_version)

    def index_rows(self, staging: str) -> str:
        return f"CREATE INDEX ON {self.quote_table(staging)} ({self.quote_identifier(ROW_ID)})"

    def create_loaded_partitions(self, table: str) -> str:
        return f"CREATE UNLOGGED TABLE {self.quote_table(table)} (part INTEGER PRIMARY KEY)"

    def bulk_load(self, staging: str, columns: Sequence[tuple[str, str]]) -> str:
        names = self.column_list([name for name, _ in columns])
        return f"COPY {self.quote_table(staging)} ({names}) FROM STDIN WITH (FORMAT csv)"

    def merge(
        self,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        rows: RowRange | None = None,
    ) -> str:
        names = self.column_list(columns)
        keys = set(primary_key)
        updates = ", ".join(
            f"{self.quote_identifier(c)} = EXCLUDED.{self.quote_identifier(c)}"
            for c in columns
            if c not in keys
        )
        # No WHERE on the update: a key staged twice then always fails the statement ("cannot
        # affect row a second time") instead of the last copy winning by chance.
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        # Rows met in key order touch the key index in order: half the work of a random order.
        # A few sorted runs (one per partition) are nearly as good; many are sorted again here.
        order = f" ORDER BY {self.column_list(primary_key)}" if runs > MAX_SORTED_RUNS else ""
        return (
            f"INSERT INTO {self.quote_table(target)} ({names}) "
            f"SELECT {names} FROM {self.quote_table(staging)}{self.rows_where(rows)}{order} "
            f"ON CONFLICT ({self.column_list(primary_key)}) {action}"
        )

    def merge_statements(
        self,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        server_version: int = 0,
    ) -> list[str]:
        if server_version < POSTGRES_MERGE_VERSION:
            return [self.merge(target, staging, columns, primary_key, runs=runs)]
        # Staging's statistics let the planner pick the join: a hash join for a large load, the
        # target's key index for a few rows into a large table.
        return [
            f"SET LOCAL work_mem = '{MERGE_WORK_MEM}'",
            f"ANALYZE {self.quote_table(staging)}",
            self.merge_into(target, staging, columns, primary_key, runs=runs),
        ]

    def merge_into(
        self, target: str, staging: str, columns: Sequence[str], primary_key: Sequence[str], runs: int = 1
    ) -> str:
        """MERGE (PostgreSQL 15 and later). A key staged twice fails it: matched, "cannot affect
        row a second time"; new, a unique violation."""
        keys = set(primary_key)
        source = self.quote_table(staging)
        if runs > MAX_SORTED_RUNS:
            source = f"(SELECT * FROM {source} ORDER BY {self.column_list(primary_key)})"
        on = " AND ".join(
            f"etl_target.{self.quote_identifier(k)} = etl_staged.{self.quote_identifier(k)}"
            for k in primary_key
        )
        updates = ", ".join(
            f"{self.quote_identifier(c)} = etl_staged.{self.quote_identifier(c)}"
            for c in columns
            if c not in keys
        )
        matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
        values = ", ".join(f"etl_staged.{self.quote_identifier(c)}" for c in columns)
        return (
            f"MERGE INTO {self.quote_table(target)} AS etl_target USING {source} AS etl_staged ON {on}"
            f"{matched} WHEN NOT MATCHED THEN INSERT ({self.column_list(columns)}) VALUES ({values})"
        )

    def unique_keys(self, table: str) -> tuple[str, list[str]]:
        return (
            "SELECT i.indexrelid::text, a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = CAST(? AS regclass) AND i.indisunique AND i.indpred IS NULL",
            [self.quote_table(table)],
        )


class MySQLDialect(Dialect):
    def string_literal(self, text: str) -> str:
        # Backslash is an escape character in MySQL strings (unless NO_BACKSLASH_ESCAPES).
        return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

    def jdbc_url(self, host: str, port: int, database: str) -> str:
        # The jdbc:mysql scheme makes Spark pick its MySQL dialect (backtick quoting); the
        # MariaDB driver takes that scheme only when told to.
        return f"jdbc:mysql://{url_host(host)}:{port}/{quote(database, safe='')}?permitMysqlScheme"

    def client_options(self, options: Mapping[str, str]) -> dict[str, object]:
        result: dict[str, object] = {"connect_timeout": 10, "charset": "utf8mb4"}
        if "connectTimeout" in options:  # milliseconds in the MariaDB driver, seconds in PyMySQL
            result["connect_timeout"] = max(1, math.ceil(int(options["connectTimeout"]) / 1000))
        mode = options.get("sslMode", "disable")
        if mode != "disable":
            ssl: dict[str, object] = {}
            if options.get("serverSslCert"):
                ssl["ca"] = options["serverSslCert"]
            if mode in ("trust", "verify-ca"):
                ssl["check_hostname"] = False
            result["ssl"] = ssl
        return result

    def create_table(self, table: str, columns: Sequence[tuple[str, str]], primary_key: Sequence[str]) -> str:
        # Any Spark string must fit, whatever the server's default character set (often latin1).
        return f"{super().create_table(table, columns, primary_key)} DEFAULT CHARACTER SET utf8mb4"

    def column_type(self, spark_type: str, key: bool) -> str:
        # Keys need a bounded length to be indexed: TEXT and BLOB columns cannot be.
        simple = {
            "tinyint": "TINYINT",
            "smallint": "SMALLINT",
            "int": "INT",
            "bigint": "BIGINT",
            "float": "FLOAT",
            "double": "DOUBLE",
            "string": "VARCHAR(255)" if key else "LONGTEXT",
            "boolean": "BOOLEAN",
            "date": "DATE",
            "timestamp": "DATETIME(6)",
            "timestamp_ntz": "DATETIME(6)",
            "binary": "VARBINARY(255)" if key else "LONGBLOB",
        }
        if spark_type in simple:
            return simple[spark_type]
        decimal = _DECIMAL_TYPE.match(spark_type)
        if decimal:
            return f"DECIMAL({decimal.group(1)},{decimal.group(2)})"
        if spark_type.startswith(("varchar(", "char(")):
            return spark_type.upper()
        raise UnsupportedType(spark_type)

    def field_format(self, spark_type: str) -> FieldFormat:
        if spark_type == "boolean":
            return FieldFormat.BOOLEAN_NUMBER
        if spark_type == "timestamp":
            # DATETIME takes no offset: local time of the Spark session, as Spark's own
            # JDBC writer sends it.
            return FieldFormat.TIMESTAMP_LOCAL
        return super().field_format(spark_type)

    def create_staging(
        self, staging: str, target: str, columns: Sequence[str], primary_key: Sequence[str]
    ) -> str:
        # The key makes LOAD DATA report a key loaded twice (as a warning, which fails the load).
        key = f", PRIMARY KEY ({self.column_list(primary_key)})" if primary_key else ""
        return (
            f"CREATE TABLE {self.quote_table(staging)} ({self.quote_identifier(ROW_ID)} BIGINT{key}) "
            f"ENGINE=InnoDB AS SELECT {self.column_list(columns)} FROM {self.quote_table(target)} LIMIT 0"
        )

    def index_rows(self, staging: str) -> str:
        return f"ALTER TABLE {self.quote_table(staging)} ADD INDEX ({self.quote_identifier(ROW_ID)})"

    def bulk_load(self, staging: str, columns: Sequence[tuple[str, str]]) -> str:
        targets, assignments = [], []
        for index, (name, spark_type) in enumerate(columns):
            if self.field_format(spark_type) == FieldFormat.HEX:
                variable = f"@hex{index}"
                targets.append(variable)
                assignments.append(f"{self.quote_identifier(name)} = UNHEX({variable})")
            else:
                targets.append(self.quote_identifier(name))
        set_clause = f" SET {', '.join(assignments)}" if assignments else ""
        return (
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.quote_table(staging)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' "
            f"LINES TERMINATED BY '\\n' ({', '.join(targets)}){set_clause}"
        )

    def merge(
        self,
        target: str,
        staging: str,
        columns: Sequence[str],
        primary_key: Sequence[str],
        runs: int = 1,
        rows: RowRange | None = None,
    ) -> str:
        # Staging is keyed, so InnoDB reads it in key order whatever the runs.
        names = self.column_list(columns)
        staged = ", ".join(f"s.{self.quote_identifier(c)}" for c in columns)
        keys = set(primary_key)
        # Columns of the SELECT, not VALUES(), which MySQL 8 deprecates and MariaDB needs not.
        updates = [
            f"{self.quote_identifier(c)} = s.{self.quote_identifier(c)}" for c in columns if c not in keys
        ]
        if not updates:  # only key columns: an existing row stays as it is
            first = self.quote_identifier(primary_key[0])
            updates = [f"{first} = {first}"]
        return (
            f"INSERT INTO {self.quote_table(target)} ({names}) "
            f"SELECT {staged} FROM {self.quote_table(staging)} AS s{self.rows_where(rows, 's.')} "
            f"ON DUPLICATE KEY UPDATE {', '.join(updates)}"
        )

    def unique_keys(self, table: str) -> tuple[str, list[str]]:
        schema, name = _split_table(table)
        where_schema = "TABLE_SCHEMA = ?" if schema else "TABLE_SCHEMA = DATABASE()"
        return (
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            f"WHERE {where_schema} AND TABLE_NAME = ? AND NON_UNIQUE = 0",
            [schema, name] if schema else [name],
        )


POSTGRESQL = PostgresDialect("PostgreSQL", "org.postgresql.Driver", '"')
MYSQL = MySQLDialect("MySQL", "org.mariadb.jdbc.Driver", "`")
DIALECTS: dict[str, Dialect] = {"PostgreSQL": POSTGRESQL, "MySQL": MYSQL}


def url_host(host: str) -> str:
    """An IPv6 address goes in brackets in a URL."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def reserved_option(options: Mapping[str, str]) -> str | None:
    """The first connection option that the spec's own fields must set instead, if any."""
    return next((key for key in options if key.lower() in RESERVED_OPTIONS), None)


# --- reading -------------------------------------------------------------------------------


def source_relation(dialect: Dialect, table: str | None, query: str | None) -> str:
    """What a source reads, as a FROM item: the quoted table, or the query as a derived table."""
    if table is not None:
        return dialect.quote_table(table)
    if query is None:
        raise ValueError("give table or query")
    return f"({query.strip().rstrip(';').strip()}) etl_source"


def max_query(dialect: Dialect, relation: str, column: str, after: str | None) -> str:
    """The new high-water mark: the largest value past the old one (`after`, an SQL literal)."""
    quoted = dialect.quote_identifier(column)
    where = f" WHERE {quoted} > {after}" if after is not None else ""
    return f"SELECT MAX({quoted}) FROM {relation}{where}"


def incremental_predicate(dialect: Dialect, column: str, after: str | None, upto: str | None) -> str:
    """The rows between the old mark (exclusive) and the new one (inclusive), both SQL literals.

    Rows written while the run reads lie past the new mark and are read by the next run. A
    first run (no old mark) also reads the rows where the column is NULL, which no later run
    will; with no new rows nothing is read."""
    quoted = dialect.quote_identifier(column)
    if after is None:
        return f"{quoted} <= {upto} OR {quoted} IS NULL" if upto is not None else f"{quoted} IS NULL"
    if upto is None:
        return "1 = 0"
    return f"{quoted} > {after} AND {quoted} <= {upto}"


def filtered_relation(relation: str, predicate: str) -> str:
    return f"(SELECT * FROM {relation} WHERE {predicate}) etl_incremental"


def bounds_query(dialect: Dialect, relation: str, column: str) -> str:
    quoted = dialect.quote_identifier(column)
    return f"SELECT MIN({quoted}), MAX({quoted}) FROM {relation}"


def read_bounds(
    lower: str | None, upper: str | None, found_min: str | None, found_max: str | None, jdbc_type: int
) -> tuple[str, str] | None:
    """lowerBound and upperBound for Spark's partitioned read: the spec's, else the ones found,
    widened to whole numbers for a number column (Spark takes them as longs). None: the
    relation is empty, one partition will do."""
    lower = lower if lower is not None else found_min
    upper = upper if upper is not None else found_max
    if lower is None or upper is None:
        return None
    if jdbc_type in NUMERIC_JDBC_TYPES:
        return _whole(lower, ROUND_FLOOR), _whole(upper, ROUND_CEILING)
    return lower, upper


def _whole(value: str, rounding: str) -> str:
    try:
        return str(Decimal(value).to_integral_value(rounding=rounding))
    except InvalidOperation:
        raise ValueError(f"bound {value!r} is not a number") from None


def partitionable(jdbc_type: int) -> bool:
    """Spark splits a read on number, date and timestamp columns only."""
    return jdbc_type in NUMERIC_JDBC_TYPES or jdbc_type in TEMPORAL_JDBC_TYPES


# --- writing -------------------------------------------------------------------------------


def staging_names(table: str, run_id: str, token: str) -> tuple[str, str]:
    """Names of the staging table and its loaded-partitions table, beside the target (same
    schema), unique per run and attempt (`token` is random), within the databases' limits."""
    schema, name = _split_table(table)
    slug = _NOT_NAME.sub("_", f"{name}_{run_id}".lower()).strip("_")
    suffix = f"_{token}"
    room = MAX_NAME_LENGTH - len("etl_stage_") - len(suffix) - len("_parts")
    base = f"etl_stage_{slug[:room].rstrip('_')}{suffix}"
    prefix = f"{schema}." if schema else ""
    return f"{prefix}{base}", f"{prefix}{base}_parts"


def unique_key_matches(index_columns: Sequence[tuple[str, str]], primary_key: Sequence[str]) -> bool:
    """Whether one unique index covers exactly the primaryKey columns, as ON CONFLICT needs."""
    indexes: dict[str, set[str]] = {}
    for index, column in index_columns:
        indexes.setdefault(index, set()).add(column)
    return set(primary_key) in indexes.values()


def unsupported_columns(dialect: Dialect, columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Columns whose Spark type the sink cannot store (arrays, maps, structs, intervals)."""
    failing = []
    for name, spark_type in columns:
        try:
            dialect.column_type(spark_type, key=False)
            dialect.field_format(spark_type)
        except UnsupportedType:
            failing.append((name, spark_type))
    return failing
