"""The job's failure classes. Each maps to an exit code the operator tells apart, and each
message names the pipeline stage and the field or record at fault."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """What a person reads first of an error: its first non-blank line (Spark's carry the whole
    plan after it), else the error's class."""
    lines = (line.strip() for line in str(error).splitlines())
    return next((line for line in lines if line), type(error).__name__)


class EtlError(Exception):
    """Base of every failure the job reports on purpose."""

    #: Process exit code; the operator classifies runs by it.
    exit_code = 1
    #: Short machine-readable class, copied into metrics and the run's status.
    reason = "Failed"

    def __init__(
        self, message: str, *, stage: str | None = None, field: str | None = None, permanent: bool = False
    ) -> None:
        self.stage, self.field = stage, field
        #: Retrying cannot help (a missing bucket or table, refused credentials): the retry policy
        #: gives up at once and the run fails with the first error.
        self.permanent = permanent
        where = ": ".join(part for part in (stage, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ConfigurationError(EtlError):
    """The pipeline spec, a schema file or an expression is wrong. Retrying will not help."""

    exit_code = 2
    reason = "ConfigurationError"


class SchemaViolation(EtlError):
    """Data does not match the declared Avro schema (a column or a record)."""

    exit_code = 3
    reason = "SchemaViolation"


class DataError(EtlError):
    """A record could not be processed and no dead-letter queue takes it."""

    exit_code = 3
    reason = "DataError"


class SourceUnavailable(EtlError):
    """A source could not be reached or read: host, credentials, missing table, topic or path."""

    exit_code = 4
    reason = "SourceUnavailable"


class SinkRejected(EtlError):
    """A sink could not be reached or refused the write."""

    exit_code = 4
    reason = "SinkRejected"


class CredentialsMissing(EtlError):
    """An environment variable that should hold a Secret's value is not set."""

    exit_code = 2
    reason = "CredentialsMissing"
