"""What went wrong with a database, in the driver's own words: the JDBC driver's message out of a
JVM exception chain, or the Python client's out of a Spark task failure, without the stack.

Pure functions of exception text, so that each shape of failure is a unit test."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Put before the message of a bulk-load failure on an executor, to find it again in the
#: Spark error on the driver: a refusal of the database, or bad data in a row.
BULK_REJECTED = "[ETL_BULK_REJECTED]"
BULK_BAD_DATA = "[ETL_BULK_BAD_DATA]"

#: SQLSTATE of a missing table (PostgreSQL, then MySQL/MariaDB).
MISSING_TABLE_STATES = frozenset({"42P01", "42S02"})
#: SQLSTATE of a key that the upsert would touch twice (PostgreSQL's cardinality violation).
CARDINALITY_VIOLATION = "21000"
#: SQLSTATE of a unique violation: PostgreSQL's MERGE meeting a new key staged twice (or a row
#: that another unique index of the table refuses).
UNIQUE_VIOLATION = "23505"

_EXCEPTION_LINE = re.compile(r"^\s*(?:Caused by: |: )?((?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*): (.*)$")
_CONNECTION_ID = re.compile(r"^\(conn=\d+\)\s*")
_PACKAGES_OF_DRIVERS = ("java.sql.", "org.postgresql.", "org.mariadb.", "psycopg2.", "pymysql.")


@dataclass(frozen=True)
class Cause:
    """One exception of a chain, outermost first."""

    class_name: str
    message: str
    sql_state: str | None = None
    #: The database's own error number (MySQL's 1406), where the driver gives one.
    error_code: int | None = None

    @property
    def from_driver(self) -> bool:
        return self.class_name.startswith(_PACKAGES_OF_DRIVERS) or "SQL" in self.simple_name

    @property
    def simple_name(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]


def causes_in_text(text: str) -> list[Cause]:
    """The `package.Class: message` lines of a stack trace (JVM or Python), in order."""
    found = []
    for line in text.splitlines():
        match = _EXCEPTION_LINE.match(line)
        # The drivers' Python exceptions are named for the error (psycopg2.errors.UndefinedTable).
        if match and (
            match.group(1).endswith(("Exception", "Error", "Warning"))
            or match.group(1).startswith(_PACKAGES_OF_DRIVERS)
        ):
            found.append(Cause(match.group(1), match.group(2)))
    return found


def driver_message(causes: Sequence[Cause], fallback: str) -> str:
    """The database driver's message, with the root cause when it says more (an unknown host
    behind "The connection attempt failed."); `fallback` when no driver speaks."""
    driver = next((cause for cause in causes if cause.from_driver and cause.message.strip()), None)
    root = next((cause for cause in reversed(causes) if cause.message.strip()), None)
    if driver is None:
        return _clean(root.message) if root else fallback
    message = _clean(driver.message)
    # A cause below the driver (UnknownHostException, ConnectException) often says what its
    # message only hints at.
    if root is not None and not root.from_driver and root.simple_name not in message:
        message = f"{message} ({root.simple_name}: {_clean(root.message)})"
    return message


def sql_state(causes: Iterable[Cause]) -> str | None:
    return next((cause.sql_state for cause in causes if cause.sql_state), None)


#: SQLSTATE classes of a row the table refuses: a value (22, data exception) or a constraint (23).
REFUSAL_CLASSES = ("22", "23")


@dataclass(frozen=True)
class Refusal:
    """Why the database refused a row: the driver's error class and code, and its message."""

    #: "CheckViolation/23514" (PostgreSQL: psycopg2's class, SQLSTATE), "DataError/1406" (MySQL:
    #: PyMySQL's class, the server's error number): the same names whichever client met it.
    error_type: str
    message: str


def refusal(causes: Sequence[Cause], dialect: str) -> Refusal | None:
    """The refusal of a row behind a failed statement, or None when the failure is not about a
    row (a server that is down, a lock that timed out): those are retried, never set aside."""
    state = sql_state(causes)
    if state is None or state[:2] not in REFUSAL_CLASSES:
        return None
    code = next((cause.error_code for cause in causes if cause.error_code), None)
    message = driver_message(causes, "")
    return Refusal(error_type(dialect, state, code), _POSTGRES_SEVERITY.sub("", message))


def error_type(dialect: str, state: str | None, code: int | None) -> str:
    """The class and code a Python client of the database gives an error: psycopg2's class for a
    SQLSTATE, PyMySQL's for a MySQL error number."""
    if dialect == "PostgreSQL":
        from psycopg2 import errors

        try:
            name = errors.lookup(state).__name__
        except KeyError:
            name = "DatabaseError"
        return f"{name}/{state}"
    from pymysql import err

    # By SQLSTATE where there is one: PyMySQL files some constraint errors (MariaDB's CHECK,
    # 4025) under OperationalError, which reads as a server in trouble.
    by_state = {"22": "DataError", "23": "IntegrityError"}.get((state or "")[:2])
    found = err.error_map.get(code) if code is not None else None
    name = by_state or (found.__name__ if found is not None else "OperationalError")
    return f"{name}/{code if code is not None else state}"


_POSTGRES_SEVERITY = re.compile(r"^(?:ERROR|FATAL):\s+")


def permanent(causes: Iterable[Cause]) -> bool:
    """Whether retrying cannot help: refused credentials, a missing table or column, a denied
    privilege (SQLSTATE classes 28 and 42), as opposed to a server that is down or restarting."""
    for cause in causes:
        if cause.sql_state and cause.sql_state[:2] in ("28", "42"):
            return True
        lowered = cause.message.lower()
        if any(words in lowered for words in _PERMANENT_WORDS):
            return True
    return False


_PERMANENT_WORDS = (
    "password authentication failed",
    "access denied for user",
    "does not exist",
    "doesn't exist",
)


def _clean(message: str) -> str:
    """First line, without the MariaDB driver's connection number."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return _CONNECTION_ID.sub("", lines[0]) if lines else ""


def marked(text: str, marker: str) -> str | None:
    """The message put after `marker` on an executor, found in the text of a Spark failure."""
    start = text.find(marker)
    if start < 0:
        return None
    line = text[start + len(marker) :].strip().splitlines()
    return line[0].strip() if line else ""


def hint(message: str) -> str:
    """A pointer to what to check, for the failures people meet first."""
    lowered = message.lower()
    if "password authentication failed" in lowered or "access denied for user" in lowered:
        return " (check the user and the password in the Secret of credentialsRef)"
    if "unknownhost" in lowered or "name or service not known" in lowered or "unknown host" in lowered:
        return " (check connection.host)"
    if "refused" in lowered:
        return " (check connection.host and connection.port, and that the database is up)"
    return ""


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with any secret value replaced: a message must never carry one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
