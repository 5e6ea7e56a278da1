"""The job's own Spark SQL functions (job_image/jvm, built into etl-functions.jar), and the
plain Spark expressions that stand in for them where the jar is not on the classpath.

The job image has the jar in Spark's jars/; a local run has it when ETL_SPARK_JARS names it
(`job_image/build-functions.sh` prints its path). Either way the results are the same, only
the cost differs."""

from __future__ import annotations

import weakref
from typing import Any

#: Epoch microseconds of ISO-8601 UTC text in its usual form (yyyy-MM-ddTHH:mm:ss[.f]Z), else null.
ISO_UTC_MICROS = "etl_iso_utc_micros"
_ISO_UTC_MICROS_CLASS = "io.sparkops.etl.IsoUtcMicros"


def timestamp_from_text(text: Any) -> Any:
    """Spark's `try_cast` of a string column to a timestamp. Text in the usual ISO-8601 UTC
    form is read by ISO_UTC_MICROS when the active session has it, at about a third of the
    cast's cost (which looks the zone "Z" up through regular expressions on every value)."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    cast = text.try_cast("timestamp")
    spark = SparkSession.getActiveSession()
    if spark is None or not has_functions(spark):
        return cast
    micros = F.call_function(ISO_UTC_MICROS, text)
    return F.when(micros.isNotNull(), F.timestamp_micros(micros)).otherwise(cast)


#: Sessions known to lack the jar: trying to load a missing class costs a few tenths of a second.
_WITHOUT_JAR: weakref.WeakSet[Any] = weakref.WeakSet()


def has_functions(spark: Any) -> bool:
    """Whether the session has the job's functions: registered now if the jar is on the
    classpath and they are not yet."""
    from pyspark.sql import types as T

    if spark in _WITHOUT_JAR:
        return False
    if spark.catalog.functionExists(ISO_UTC_MICROS):
        return True
    try:
        spark.udf.registerJavaFunction(ISO_UTC_MICROS, _ISO_UTC_MICROS_CLASS, T.LongType())
    except Exception:  # noqa: BLE001 - Spark says "cannot load class" in several exception types
        _WITHOUT_JAR.add(spark)
        return False
    return True
