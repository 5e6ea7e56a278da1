"""One JDBC connection on the driver, through Spark's JVM and the same driver jars and properties
Spark's reads and writes use, for the few statements the connectors run themselves: the
high-water mark and bounds of a read, the target table's definition, the upsert's merge."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from py4j.protocol import Py4JError  # type: ignore[import-untyped]

from etl_job.connectors.jdbc.errors import Cause, causes_in_text, driver_message, sql_state

#: Spark's registry of JDBC drivers: it loads them from the jars Spark was given, where
#: java.sql.DriverManager only sees the JVM's own classpath.
_DRIVER_REGISTRY = "org.apache.spark.sql.execution.datasources.jdbc.DriverRegistry"


class JdbcFailure(Exception):
    """A JDBC call failed; the message is the driver's own, without the JVM stack."""

    def __init__(self, causes: Sequence[Cause], fallback: str) -> None:
        self.causes = list(causes)
        super().__init__(driver_message(self.causes, fallback))

    @property
    def sql_state(self) -> str | None:
        return sql_state(self.causes)


@dataclass(frozen=True)
class Result:
    """Rows of a query as the database prints its values (getString), with the column names
    and JDBC type codes."""

    columns: list[str]
    types: list[int]
    rows: list[list[str | None]]

    def first(self) -> list[str | None]:
        return self.rows[0] if self.rows else [None] * len(self.types)


class JdbcClient:
    """`with JdbcClient(...) as client:` one connection, closed on the way out."""

    def __init__(self, spark: Any, url: str, driver_class: str, properties: Mapping[str, str]) -> None:
        self._spark, self._url, self._driver_class = spark, url, driver_class
        self._properties = dict(properties)
        self._connection: Any = None

    def __enter__(self) -> JdbcClient:
        jvm = self._spark._jvm
        try:
            registry = getattr(jvm, _DRIVER_REGISTRY)
            registry.register(self._driver_class)
            properties = jvm.java.util.Properties()
            for key, value in self._properties.items():
                properties.setProperty(key, value)
            connection = registry.get(self._driver_class).connect(self._url, properties)
        except Py4JError as failed:
            raise failure(failed) from None
        if connection is None:  # a driver returns null for a URL it does not take
            raise JdbcFailure([], f"the JDBC driver {self._driver_class} does not accept the URL")
        self._connection = connection
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # Closing a broken connection must not hide the first error.
        with suppress(Py4JError):
            self._connection.close()

    def query(self, sql: str, parameters: Sequence[str | None] = ()) -> Result:
        try:
            statement = self._connection.prepareStatement(sql)
            try:
                for position, value in enumerate(parameters, start=1):
                    statement.setString(position, value)
                results = statement.executeQuery()
                meta = results.getMetaData()
                count = meta.getColumnCount()
                columns = [str(meta.getColumnLabel(i)) for i in range(1, count + 1)]
                types = [int(meta.getColumnType(i)) for i in range(1, count + 1)]
                rows = []
                while results.next():
                    rows.append([results.getString(i) for i in range(1, count + 1)])
                return Result(columns, types, rows)
            finally:
                statement.close()
        except Py4JError as failed:
            raise failure(failed) from None

    def execute(self, sql: str) -> int:
        """Run one statement; the number of rows it changed."""
        try:
            statement = self._connection.createStatement()
            try:
                statement.execute(sql)
                return int(statement.getUpdateCount())
            finally:
                statement.close()
        except Py4JError as failed:
            raise failure(failed) from None

    def server_version(self) -> int:
        """The database server's major version, as its driver reports it."""
        try:
            return int(self._connection.getMetaData().getDatabaseMajorVersion())
        except Py4JError as failed:
            raise failure(failed) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements inside commit together, or not at all."""
        try:
            self._connection.setAutoCommit(False)
        except Py4JError as failed:
            raise failure(failed) from None
        try:
            yield
            self._connection.commit()
        except BaseException:
            with suppress(Py4JError):  # the statement's own error is the one to report
                self._connection.rollback()
            raise
        finally:
            with suppress(Py4JError):  # the connection is closed after use anyway
                self._connection.setAutoCommit(True)


def failure(error: BaseException) -> JdbcFailure:
    """A JdbcFailure carrying the causes of any error from Spark, py4j or a Spark task."""
    if isinstance(error, JdbcFailure):
        return error
    return JdbcFailure(causes_of(error), fallback=str(error).strip().splitlines()[0] if str(error) else "")


def causes_of(error: BaseException) -> list[Cause]:
    """The exception chain behind a Python-side error: the JVM's when there is one (walked with
    its SQL states), and any exception lines in the text (a Python task's traceback)."""
    throwable = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    chain = _java_chain(throwable) if throwable is not None else []
    seen = {(cause.class_name, cause.message) for cause in chain}
    return chain + [
        cause for cause in causes_in_text(str(error)) if (cause.class_name, cause.message) not in seen
    ]


def _java_chain(throwable: Any, limit: int = 12) -> list[Cause]:
    from py4j.java_gateway import is_instance_of  # type: ignore[import-untyped]
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    chain: list[Cause] = []
    try:
        while throwable is not None and len(chain) < limit:
            state, code = None, None
            if gateway is not None and is_instance_of(gateway, throwable, "java.sql.SQLException"):
                state, code = throwable.getSQLState(), int(throwable.getErrorCode()) or None
            chain.append(
                Cause(throwable.getClass().getName(), str(throwable.getMessage() or ""), state, code)
            )
            cause = throwable.getCause()
            throwable = None if cause is None or cause.equals(throwable) else cause
    except Exception:  # noqa: BLE001 - the JVM went away: what was read so far is what there is
        pass
    return chain
