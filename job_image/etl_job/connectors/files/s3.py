"""S3 connections: a spec block's `s3` settings as per-bucket S3A settings of the Hadoop
configuration, and the store's failures as messages naming the bucket and the cause.

Settings go to the session's runtime Hadoop configuration, never to SparkConf: `spark.hadoop.*`
entries travel on command lines and into the Spark UI's environment page and event logs, while
the runtime configuration is filled in after start-up and stays inside the JVM.
They are set per bucket (`fs.s3a.bucket.<bucket>.*`), so two blocks may name two stores; one
bucket takes one connection per run (a later block naming it with other settings replaces them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from etl_job.contract import S3Connection
from etl_job.contract.credentials import secret_value

SIMPLE_CREDENTIALS = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
TEMPORARY_CREDENTIALS = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"

#: Per-bucket S3A options a connection decides. Those it leaves out are unset, so an earlier
#: connection's keys for the same bucket (in a JVM that runs more than one pipeline) never linger.
CONNECTION_OPTIONS = (
    "endpoint",
    "endpoint.region",
    "path.style.access",
    "connection.ssl.enabled",
    "aws.credentials.provider",
    "access.key",
    "secret.key",
    "session.token",
)

#: S3A's defaults retry a lot: 5 SDK attempts inside each of 8 S3A attempts, around every one of
#: the several calls a read or write makes; a refused connection took almost 5 minutes to fail.
#: Two of each fail a wrong endpoint in seconds while still riding out a dropped connection; the
#: run's own retry policy (errorHandling.retry) is the place for longer waits. Throttling keeps
#: S3A's own, longer retries: waiting is what helps there. Set only where the bucket has no value
#: yet, so a deployment can still choose per bucket (spark.hadoop.fs.s3a.bucket.<b>.*).
FAIL_FAST_OPTIONS = {
    "attempts.maximum": "2",
    "retry.limit": "2",
    # S3A's default is 30 s; an S3 endpoint that takes 5 s to accept a connection is not there.
    "connection.establish.timeout": "5s",
}

#: The region S3-compatible servers (MinIO, Ceph, ...) answer to when none is configured. The AWS
#: SDK will not sign a request without a region, and finds none for a custom endpoint.
COMPATIBLE_SERVER_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Keys:
    """Credentials read from Secrets; never printed (repr hides the values)."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def bucket_of(path: str) -> str | None:
    """The bucket an s3a:// path names, or None for any other filesystem."""
    parts = urlsplit(path)
    if parts.scheme.lower() != "s3a" or not parts.hostname:
        return None
    return parts.netloc.rpartition("@")[2]


def bucket_option(bucket: str, option: str) -> str:
    return f"fs.s3a.bucket.{bucket}.{option}"


def connection_settings(bucket: str, connection: S3Connection, keys: S3Keys | None) -> dict[str, str | None]:
    """Every per-bucket option of CONNECTION_OPTIONS for this connection: a value to set, or None
    to unset it (the deployment's fs.s3a.* settings then apply). Without keys the deployment's
    credential providers apply (by default S3A's chain: environment, then the pod's or node's role)."""
    values: dict[str, str | None] = dict.fromkeys(CONNECTION_OPTIONS)
    if connection.endpoint:
        values["endpoint"] = connection.endpoint
        scheme = urlsplit(connection.endpoint).scheme.lower()
        if scheme in ("http", "https"):
            # S3A takes the scheme from the URL; the flag agrees with it for code that reads it.
            values["connection.ssl.enabled"] = str(scheme == "https").lower()
    values["endpoint.region"] = connection.region or _default_region(connection.endpoint)
    if connection.path_style_access:
        values["path.style.access"] = "true"
    if keys is not None:
        values["access.key"] = keys.access_key
        values["secret.key"] = keys.secret_key
        values["session.token"] = keys.session_token
        provider = TEMPORARY_CREDENTIALS if keys.session_token is not None else SIMPLE_CREDENTIALS
        values["aws.credentials.provider"] = provider
    return {bucket_option(bucket, option): value for option, value in values.items()}


def fail_fast_settings(bucket: str) -> dict[str, str]:
    """The per-bucket retry and timeout bounds, set where the bucket has none."""
    return {bucket_option(bucket, option): value for option, value in FAIL_FAST_OPTIONS.items()}


def _default_region(endpoint: str | None) -> str | None:
    """None lets S3A find AWS's region itself; a custom endpoint gets the compatible servers' one."""
    if endpoint is None:
        return None
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return None
    return COMPATIBLE_SERVER_REGION


def read_keys(connection: S3Connection, env: Mapping[str, str], *, stage: str, field: str) -> S3Keys | None:
    """The connection's keys from the Secrets' env vars, or None for the default credentials."""
    if connection.access_key_ref is None or connection.secret_key_ref is None:
        return None
    token_ref = connection.session_token_ref
    return S3Keys(
        access_key=secret_value(connection.access_key_ref, env, stage=stage, field=f"{field}.accessKeyRef"),
        secret_key=secret_value(connection.secret_key_ref, env, stage=stage, field=f"{field}.secretKeyRef"),
        session_token=None
        if token_ref is None
        else secret_value(token_ref, env, stage=stage, field=f"{field}.sessionTokenRef"),
    )


def use_connection(
    spark: Any,
    path: str,
    connection: S3Connection | None,
    env: Mapping[str, str],
    *,
    stage: str,
    field: str = "s3",
) -> str | None:
    """Set a block's connection for the bucket its path names, before the block touches it.
    Returns the bucket (None for other filesystems). Without a connection nothing is set: the
    deployment's own S3A settings apply."""
    bucket = bucket_of(path)
    if bucket is None or connection is None:
        return bucket
    keys = read_keys(connection, env, stage=stage, field=field)
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    changed = False
    for key, value in connection_settings(bucket, connection, keys).items():
        if hadoop_conf.get(key) == value:
            continue
        changed = True
        if value is None:
            hadoop_conf.unset(key)
        else:
            hadoop_conf.set(key, value)
    for key, value in fail_fast_settings(bucket).items():
        hadoop_conf.setIfUnset(key, value)
    if changed:
        _forget_cached_filesystem(spark, bucket, hadoop_conf)
    return bucket


def _forget_cached_filesystem(spark: Any, bucket: str, hadoop_conf: Any) -> None:
    """Hadoop caches one FileSystem per bucket for the JVM's life, built from the settings of the
    first access, and reads per-bucket settings only then. Closing that one instance takes it out
    of the cache, so the next access builds one with the new settings. Narrower than disabling
    the cache (fs.s3a.impl.disable.cache is global and leaks an instance per call) or
    FileSystem.closeAll (every filesystem of the JVM). Settings change only between runs sharing
    a JVM, or when two blocks give one bucket different connections (the later one wins); blocks
    run one after the other, so no access is in flight. Executors (executors > 0) build their own
    from the configuration each task carries."""
    jvm = spark.sparkContext._jvm
    try:
        filesystem = jvm.org.apache.hadoop.fs.FileSystem.get(
            jvm.java.net.URI(f"s3a://{bucket}/"), hadoop_conf
        )
        filesystem.close()
    except Exception:  # noqa: BLE001 - one that cannot even be built was never cached
        return


# --- failures ------------------------------------------------------------------------------

_MISSING_BUCKET = ("UnknownStoreException", "NoSuchBucket")
_ACCESS_DENIED = ("AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Status Code: 403")
_UNKNOWN_HOST = ("UnknownHostException",)
_UNREACHABLE = ("ConnectException", "Connection refused", "ConnectTimeoutException", "connect timed out")
_NO_REGION = ("Unable to load region",)
_UNKNOWN_HOST_NAME = re.compile(r"UnknownHostException: ([A-Za-z0-9.\-]+)\s*$", re.MULTILINE)


def failure_text(error: BaseException) -> str:
    """All an error says, causes included (a Py4J error carries the JVM's stack trace)."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 10:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def describe_failure(text: str, bucket: str, connection: S3Connection | None) -> str | None:
    """A message naming the bucket and the cause, for the store's failures a person can act on;
    None for anything else. Only fixed words and spec values go in, never the store's text, which
    could quote a request. A failure of another bucket (a source read during a write) is not this
    bucket's, so the text must name this one."""
    if not re.search(f"s3a://{re.escape(bucket)}(?![A-Za-z0-9.-])", text):
        return None
    endpoint = connection.endpoint if connection and connection.endpoint else None
    where = endpoint or "the default S3 endpoint"
    named = f"endpoint {endpoint}" if endpoint else "the default S3 endpoint"
    if any(marker in text for marker in _MISSING_BUCKET):
        return f"bucket {bucket} does not exist at {where}"
    if any(marker in text for marker in _ACCESS_DENIED):
        return f"access to bucket {bucket} at {where} was denied for {_credentials_label(connection)}"
    if any(marker in text for marker in _UNKNOWN_HOST):
        host = _host(endpoint) if endpoint else _unknown_host_in(text)
        return f"{named} of bucket {bucket} is unknown: host {host} does not resolve"
    if any(marker in text for marker in _UNREACHABLE):
        return f"{named} of bucket {bucket} does not accept connections"
    if any(marker in text for marker in _NO_REGION):
        return f"no region for bucket {bucket} at {where}: set s3.region"
    return None


def lasting(text: str) -> bool:
    """A missing bucket, refused keys or a missing region: retrying the same request cannot help
    (an unknown or unreachable endpoint may be a passing network fault, and is retried)."""
    return any(marker in text for marker in (*_MISSING_BUCKET, *_ACCESS_DENIED, *_NO_REGION))


def _credentials_label(connection: S3Connection | None) -> str:
    if connection is None or connection.access_key_ref is None:
        return "the default credentials (no s3.accessKeyRef given): wrong keys or no permission"
    ref = connection.access_key_ref
    return f"the access key in Secret {ref.name} key {ref.key}: wrong secret key or no permission"


def _host(endpoint: str) -> str:
    return urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or endpoint


def _unknown_host_in(text: str) -> str:
    found = _UNKNOWN_HOST_NAME.search(text)
    return found.group(1) if found else "(unnamed)"
