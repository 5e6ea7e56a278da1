"""A spec's `s3` block as per-bucket S3A settings, and the store's failures as messages: pure
functions, no Spark."""

from __future__ import annotations

from typing import Any

import pytest

from etl_job.connectors.files.s3 import (
    SIMPLE_CREDENTIALS,
    TEMPORARY_CREDENTIALS,
    S3Keys,
    bucket_of,
    connection_settings,
    describe_failure,
    fail_fast_settings,
    lasting,
    read_keys,
)
from etl_job.contract import CredentialsMissing, S3Connection, SecretKeyRef
from etl_job.contract.credentials import secret_env_name

ACCESS = SecretKeyRef(name="store-keys", key="access")
SECRET = SecretKeyRef(name="store-keys", key="secret")
TOKEN = SecretKeyRef(name="store-keys", key="token")


def connection(**fields: Any) -> S3Connection:
    return S3Connection.model_validate(fields)


def keyed(**fields: Any) -> S3Connection:
    return connection(
        accessKeyRef=ACCESS.model_dump(by_alias=True), secretKeyRef=SECRET.model_dump(by_alias=True), **fields
    )


@pytest.mark.parametrize(
    ("path", "bucket"),
    [
        ("s3a://raw/events/", "raw"),
        ("s3a://raw", "raw"),
        ("S3A://my.dotted-bucket/x.csv", "my.dotted-bucket"),
        ("file:///data/in/", None),
        ("/data/in/", None),
        ("hdfs://namenode/in/", None),
        ("s3a:///no-bucket/", None),
    ],
)
def test_bucket_of_an_s3a_path(path: str, bucket: str | None) -> None:
    assert bucket_of(path) == bucket


def test_endpoint_region_path_style_and_keys_for_one_bucket_only() -> None:
    settings = connection_settings(
        "raw",
        keyed(endpoint="http://minio.storage:9000", region="eu-west-1", pathStyleAccess=True),
        S3Keys("AKID", "s3cr3t"),
    )
    assert settings == {
        "fs.s3a.bucket.raw.endpoint": "http://minio.storage:9000",
        "fs.s3a.bucket.raw.endpoint.region": "eu-west-1",
        "fs.s3a.bucket.raw.path.style.access": "true",
        "fs.s3a.bucket.raw.connection.ssl.enabled": "false",
        "fs.s3a.bucket.raw.aws.credentials.provider": SIMPLE_CREDENTIALS,
        "fs.s3a.bucket.raw.access.key": "AKID",
        "fs.s3a.bucket.raw.secret.key": "s3cr3t",
        "fs.s3a.bucket.raw.session.token": None,
    }


def test_a_session_token_takes_the_temporary_credentials_provider() -> None:
    settings = connection_settings("raw", keyed(region="eu-west-1"), S3Keys("AKID", "s3cr3t", "tok"))
    assert settings["fs.s3a.bucket.raw.aws.credentials.provider"] == TEMPORARY_CREDENTIALS
    assert settings["fs.s3a.bucket.raw.session.token"] == "tok"


def test_without_key_references_no_credential_is_set_and_old_ones_are_unset() -> None:
    settings = connection_settings("raw", connection(region="eu-west-1"), None)
    assert settings == {
        "fs.s3a.bucket.raw.endpoint": None,
        "fs.s3a.bucket.raw.endpoint.region": "eu-west-1",
        "fs.s3a.bucket.raw.path.style.access": None,
        "fs.s3a.bucket.raw.connection.ssl.enabled": None,
        "fs.s3a.bucket.raw.aws.credentials.provider": None,
        "fs.s3a.bucket.raw.access.key": None,
        "fs.s3a.bucket.raw.secret.key": None,
        "fs.s3a.bucket.raw.session.token": None,
    }


@pytest.mark.parametrize(
    ("endpoint", "region", "expected"),
    [
        ("http://minio:9000", None, "us-east-1"),  # S3-compatible servers answer to us-east-1
        ("minio.storage:9000", None, "us-east-1"),
        ("https://s3.eu-west-1.amazonaws.com", None, None),  # S3A finds AWS regions itself
        (None, None, None),
        ("http://minio:9000", "eu-central-1", "eu-central-1"),
    ],
)
def test_region_default(endpoint: str | None, region: str | None, expected: str | None) -> None:
    fields = {key: value for key, value in {"endpoint": endpoint, "region": region}.items() if value}
    assert connection_settings("b", connection(**fields), None)["fs.s3a.bucket.b.endpoint.region"] == expected


def test_an_https_endpoint_keeps_tls_on() -> None:
    settings = connection_settings("b", connection(endpoint="https://store.example:443"), None)
    assert settings["fs.s3a.bucket.b.connection.ssl.enabled"] == "true"


def test_fail_fast_bounds_are_per_bucket() -> None:
    assert fail_fast_settings("raw") == {
        "fs.s3a.bucket.raw.attempts.maximum": "2",
        "fs.s3a.bucket.raw.retry.limit": "2",
        "fs.s3a.bucket.raw.connection.establish.timeout": "5s",
    }


def test_keys_come_from_the_secret_env_vars_and_never_show_in_repr() -> None:
    env = {secret_env_name(ACCESS): "AKID", secret_env_name(SECRET): "s3cr3t", secret_env_name(TOKEN): "tok"}
    keys = read_keys(keyed(sessionTokenRef=TOKEN.model_dump(by_alias=True)), env, stage="extract", field="s3")
    assert keys == S3Keys("AKID", "s3cr3t", "tok")
    assert "s3cr3t" not in repr(keys) and "tok" not in repr(keys)
    assert read_keys(connection(), env, stage="extract", field="s3") is None


def test_a_missing_secret_names_the_field() -> None:
    with pytest.raises(CredentialsMissing, match=r"load: s3\.secretKeyRef: Secret store-keys key secret"):
        read_keys(keyed(), {secret_env_name(ACCESS): "AKID"}, stage="load", field="s3")


MISSING = "UnknownStoreException: `s3a://raw/x': getFileStatus on s3a://raw/x: NoSuchBucket"
DENIED = "java.nio.file.AccessDeniedException: s3a://raw/x: getFileStatus on s3a://raw/x: Forbidden"
UNKNOWN_HOST = (
    "java.net.UnknownHostException: getFileStatus on s3a://raw/x: SdkClientException\n"
    "Caused by: java.net.UnknownHostException: store.nowhere.invalid"
)
REFUSED = (
    "java.net.ConnectException: getFileStatus on s3a://raw/x:"
    " Connect to 127.0.0.1:1 failed: Connection refused"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MISSING, "bucket raw does not exist at http://minio:9000"),
        (
            DENIED,
            "access to bucket raw at http://minio:9000 was denied for the access key in Secret "
            "store-keys key access: wrong secret key or no permission",
        ),
        (
            UNKNOWN_HOST,
            "endpoint http://minio:9000 of bucket raw is unknown: host minio does not resolve",
        ),
        (REFUSED, "endpoint http://minio:9000 of bucket raw does not accept connections"),
        ("[PATH_NOT_FOUND] Path does not exist: s3a://raw/x", None),
    ],
)
def test_failures_name_the_bucket_and_the_cause(text: str, expected: str | None) -> None:
    assert describe_failure(text, "raw", keyed(endpoint="http://minio:9000")) == expected


def test_without_an_s3_block_the_failure_names_the_default_endpoint_and_credentials() -> None:
    assert describe_failure(MISSING, "raw", None) == "bucket raw does not exist at the default S3 endpoint"
    assert describe_failure(UNKNOWN_HOST, "raw", None) == (
        "the default S3 endpoint of bucket raw is unknown: host store.nowhere.invalid does not resolve"
    )
    assert "default credentials" in (describe_failure(DENIED, "raw", None) or "")


def test_a_failure_of_another_bucket_is_not_this_buckets() -> None:
    assert describe_failure(DENIED, "raw-archive", None) is None
    assert describe_failure(DENIED.replace("s3a://raw/", "s3a://ra/"), "raw", None) is None


@pytest.mark.parametrize(
    ("text", "permanent"),
    [
        ("org.apache.hadoop.fs.s3a.UnknownStoreException: s3a://gone/x", True),
        ("AccessDeniedException: s3a://b/x: getFileStatus on s3a://b/x: 403", True),
        ("SdkClientException: Unable to load region from any of the providers", True),
        ("java.net.UnknownHostException: minio.storage", False),
        ("java.net.ConnectException: Connection refused", False),
    ],
)
def test_a_missing_bucket_or_refused_keys_are_permanent_a_network_fault_is_not(
    text: str, permanent: bool
) -> None:
    assert lasting(text) is permanent
