"""The S3 source, sink and dead letters on real S3-compatible servers, through the connection a
spec's `s3` block gives: every file format read and written partitioned, dynamic and static
partition overwrite, temporary credentials, two stores in one run, and the failures a person
must be able to act on (missing bucket, wrong secret, unknown endpoint) named clearly, in
seconds, without the secret.

How the tests know the spec's settings are the ones used, not the session's: the shared Spark
session's global S3A settings point at the harness's store (`s3`) with its admin keys, as a
deployment's spark.hadoop.fs.s3a.* would. A second store (`other_store`: its own server, port
and keys) is named only in the spec's s3 blocks, so reading and writing there works only through
the per-bucket endpoint, region and keys. On the harness's store, a wrong secret in the block
must be refused although the global keys would be let in, so the per-bucket keys win. Temporary
credentials come from the store's own STS (AssumeRole): the server refuses a temporary key
without its token, so a run that reads with them used TemporaryAWSCredentialsProvider and the
token from the Secret.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from pyspark.sql import SparkSession

from etl_job.contract import EtlError, RunMetrics, SecretKeyRef, SinkRejected, SourceUnavailable
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.manifest import parse_manifest
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from tests.infra.process import free_port
from tests.infra.s3 import S3Server, start_s3

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = SchemaRegistry([REPO / "examples" / "schemas"])
PIPELINE = "s3-test"
COLUMNS = ("event_id", "user_id", "country", "amount")
ROWS = [(1, "u001", "DE", 10.5), (2, "u002", "FR", 0.0), (3, "u001", "DE", -3.0)]
NO_RETRY = {"retry": {"strategy": "none"}}


@dataclass(frozen=True)
class Login:
    """An s3 block and the env that holds its Secret values, as the operator would inject them."""

    block: dict[str, Any]
    env: dict[str, str]


def login(
    server: S3Server,
    secret_name: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    endpoint: str | None = None,
    with_region: bool = True,
) -> Login:
    refs = {
        "accessKeyRef": (SecretKeyRef(name=secret_name, key="access-key"), access_key or server.access_key),
        "secretKeyRef": (SecretKeyRef(name=secret_name, key="secret-key"), secret_key or server.secret_key),
    }
    if session_token is not None:
        refs["sessionTokenRef"] = (SecretKeyRef(name=secret_name, key="session-token"), session_token)
    block: dict[str, Any] = {"endpoint": endpoint or server.endpoint, "pathStyleAccess": True}
    if with_region:
        block["region"] = server.region
    block.update({field: ref.model_dump(by_alias=True) for field, (ref, _) in refs.items()})
    return Login(block, {secret_env_name(ref): value for ref, value in refs.values()})


@pytest.fixture(scope="module")
def other_store() -> Iterator[S3Server]:
    """A second S3 server that only the spec's s3 blocks name."""
    server = start_s3()
    yield server
    server.process.stop()


@pytest.fixture(scope="module", autouse=True)
def _session_points_at_the_harness_store(spark: SparkSession, s3: S3Server) -> None:
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3.hadoop_conf().items():
        hadoop_conf.set(key, value)


def new_bucket(server: S3Server) -> str:
    name = f"t-{secrets.token_hex(6)}"
    server.create_bucket(name)
    return name


def run(spark: SparkSession, tmp_path: Path, spec: dict[str, Any], env: dict[str, str]) -> RunMetrics:
    pipeline = parse_manifest({"metadata": {"name": PIPELINE}, "spec": spec})
    context = RunContext(pipeline=PIPELINE, spark=spark, base_dir=tmp_path, env=env)
    return run_pipeline(pipeline, context, SCHEMAS)


def write_csv(folder: Path, rows: list[tuple[Any, ...]], header: tuple[str, ...] = COLUMNS) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(value) for value in row) for row in rows]
    (folder / "part.csv").write_text("\n".join(lines) + "\n")
    return str(folder)


def upload(server: S3Server, bucket: str, prefix: str, folder: Path) -> None:
    client = server.client()
    for file in sorted(folder.rglob("*")):
        if file.is_file() and not file.name.startswith((".", "_")):
            client.upload_file(str(file), bucket, prefix + file.relative_to(folder).as_posix())


def download(server: S3Server, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Every object under the prefix into the folder; their keys, relative to the prefix."""
    client = server.client()
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    for key in keys:
        target = folder / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    return sorted(key[len(prefix) :] for key in keys)


def partition_folders(keys: list[str]) -> list[str]:
    return sorted({key.split("/")[0] for key in keys if "=" in key.split("/")[0]})


def read_rows(spark: SparkSession, folder: Path, file_format: str) -> list[tuple[Any, ...]]:
    reader = spark.read.format(file_format)
    if file_format == "csv":
        reader = reader.option("header", "true")
    return sorted(tuple(row) for row in reader.load(str(folder)).select(*COLUMNS).collect())


@pytest.mark.parametrize("file_format", ["csv", "json", "parquet", "avro"])
def test_each_format_is_read_and_written_partitioned_with_the_spec_connection(
    spark: SparkSession, tmp_path: Path, other_store: S3Server, file_format: str
) -> None:
    bucket = new_bucket(other_store)
    options = {"header": "true"} if file_format == "csv" else {}
    local_input = tmp_path / "input"
    spark.createDataFrame(ROWS, "event_id int, user_id string, country string, amount double").write.format(
        file_format
    ).options(**options).save(str(local_input))
    upload(other_store, bucket, "in/", local_input)
    store = login(other_store, "other-store")

    metrics = run(
        spark,
        tmp_path,
        {
            "extract": {
                "sourceType": "S3",
                "path": f"s3a://{bucket}/in/",
                "format": file_format,
                "options": options,
                "s3": store.block,
            },
            "load": {
                "sinkType": "S3",
                "path": f"s3a://{bucket}/out/",
                "format": file_format,
                "options": options,
                "partitionBy": ["country"],
                "s3": store.block,
            },
        },
        store.env,
    )

    assert metrics.records_extracted == metrics.records_loaded == 3
    keys = download(other_store, bucket, "out/", tmp_path / "out")
    assert partition_folders(keys) == ["country=DE", "country=FR"]
    expected = ROWS if file_format != "csv" else [tuple(str(value) for value in row) for row in ROWS]
    assert read_rows(spark, tmp_path / "out", file_format) == sorted(expected)


def test_temporary_credentials_and_two_stores_in_one_run(
    spark: SparkSession, tmp_path: Path, s3: S3Server, bucket: str, other_store: S3Server
) -> None:
    sts = boto3.client(
        "sts",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
    )
    temporary = sts.assume_role(RoleArn="arn:aws:iam::000000000000:role/etl", RoleSessionName="etl-test")[
        "Credentials"
    ]
    source = login(
        s3,
        "harness-session",
        access_key=temporary["AccessKeyId"],
        secret_key=temporary["SecretAccessKey"],
        session_token=temporary["SessionToken"],
    )
    target = login(other_store, "other-store")
    target_bucket = new_bucket(other_store)
    upload(s3, bucket, "in/", Path(write_csv(tmp_path / "input", ROWS)))

    run(
        spark,
        tmp_path,
        {
            "extract": {
                "sourceType": "S3",
                "path": f"s3a://{bucket}/in/",
                "format": "csv",
                "options": {"header": "true"},
                "s3": source.block,
            },
            "load": {
                "sinkType": "S3",
                "path": f"s3a://{target_bucket}/out/",
                "format": "json",
                "s3": target.block,
            },
        },
        {**source.env, **target.env},
    )

    download(other_store, target_bucket, "out/", tmp_path / "out")
    assert read_rows(spark, tmp_path / "out", "json") == sorted(
        tuple(str(value) for value in row) for row in ROWS
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # dynamic: only the partition this run writes (FR) is replaced; DE stays
        ("dynamic", [("1", "u001", "DE", "10.5"), ("3", "u001", "DE", "-3.0"), ("4", "u004", "FR", "7.25")]),
        # static: the whole path is replaced by this run's rows
        ("static", [("4", "u004", "FR", "7.25")]),
    ],
)
def test_overwrite_replaces_partitions_or_the_whole_path(
    spark: SparkSession, tmp_path: Path, other_store: S3Server, mode: str, expected: list[tuple[str, ...]]
) -> None:
    bucket = new_bucket(other_store)
    store = login(other_store, "other-store")
    load = {
        "sinkType": "S3",
        "path": f"s3a://{bucket}/out/",
        "format": "parquet",
        "writeMode": "overwrite",
        "partitionBy": ["country"],
        "partitionOverwriteMode": mode,
        "s3": store.block,
    }
    for name, rows in (("first", ROWS), ("second", [(4, "u004", "FR", 7.25)])):
        extract = {"sourceType": "S3", "path": write_csv(tmp_path / name, rows), "format": "csv"}
        run(spark, tmp_path, {"extract": {**extract, "options": {"header": "true"}}, "load": load}, store.env)

    keys = download(other_store, bucket, "out/", tmp_path / "out")
    assert partition_folders(keys) == sorted({f"country={row[2]}" for row in expected})
    assert read_rows(spark, tmp_path / "out", "parquet") == expected


def test_dead_letters_go_to_s3a_through_the_spec_connection(
    spark: SparkSession, tmp_path: Path, other_store: S3Server
) -> None:
    bucket = new_bucket(other_store)
    # No region: a custom endpoint gets the one S3-compatible servers answer to.
    store = login(other_store, "dead-letter-store", with_region=False)
    header = ("event_id", "user_id", "country", "event_type", "amount", "event_time")
    rows = [
        (1, "u001", "DE", "purchase", "10.50", "2026-11-01T10:00:00Z"),
        (2, "u002", "FR", "purchase", "not-a-number", "2026-11-01T11:00:00Z"),
    ]
    metrics = run(
        spark,
        tmp_path,
        {
            "extract": {
                "sourceType": "S3",
                "path": write_csv(tmp_path / "input", rows, header),
                "format": "csv",
                "options": {"header": "true"},
                "schemaName": "user-event",
            },
            "load": {"sinkType": "S3", "path": str(tmp_path / "loaded"), "format": "parquet"},
            "errorHandling": {
                "tolerance": "all",
                "deadLetter": {
                    "type": "s3",
                    "path": f"s3a://{bucket}/dlq/",
                    "format": "json",
                    "s3": store.block,
                },
            },
        },
        store.env,
    )

    assert (metrics.records_loaded, metrics.records_failed) == (1, 1)
    keys = download(other_store, bucket, "dlq/", tmp_path / "dlq")
    assert partition_folders(keys) == [f"date={datetime.now(UTC).date().isoformat()}"]
    letters = [
        json.loads(line)
        for file in sorted((tmp_path / "dlq").rglob("*.json"))
        for line in file.read_text().splitlines()
    ]
    assert [(letter["pipelineId"], letter["stage"], letter["originalSchema"]) for letter in letters] == [
        (PIPELINE, "extract", "user-event")
    ]
    assert "not-a-number" in letters[0]["originalRecord"]
    assert "amount" in letters[0]["errorMessage"]


def assert_secret_kept(failure: EtlError, spark: SparkSession, output: str, *values: str) -> None:
    for value in values:
        assert value not in str(failure)
        assert value not in output
        assert all(value not in setting for _, setting in spark.sparkContext.getConf().getAll())


def test_a_missing_bucket_names_the_bucket_and_the_endpoint(
    spark: SparkSession, tmp_path: Path, other_store: S3Server
) -> None:
    store = login(other_store, "other-store")
    missing = f"t-missing-{secrets.token_hex(4)}"
    expected = f"bucket {missing} does not exist at {other_store.endpoint}"
    local_input = write_csv(tmp_path / "input", ROWS)

    with pytest.raises(SourceUnavailable) as read_failure:
        run(
            spark,
            tmp_path,
            {
                "extract": {
                    "sourceType": "S3",
                    "path": f"s3a://{missing}/in/",
                    "format": "csv",
                    "s3": store.block,
                },
                "load": {"sinkType": "S3", "path": str(tmp_path / "out")},
            },
            store.env,
        )
    with pytest.raises(SinkRejected) as write_failure:
        run(
            spark,
            tmp_path,
            {
                "extract": {"sourceType": "S3", "path": local_input, "format": "csv"},
                "load": {"sinkType": "S3", "path": f"s3a://{missing}/out/", "s3": store.block},
                "errorHandling": NO_RETRY,
            },
            store.env,
        )

    assert str(read_failure.value) == f"extract: path: {expected}"
    assert str(write_failure.value) == f"load: path: {expected}"
    assert read_failure.value.exit_code == write_failure.value.exit_code == 4


def test_a_wrong_secret_is_refused_naming_the_secret_reference_not_the_value(
    spark: SparkSession, tmp_path: Path, s3: S3Server, bucket: str, capfd: pytest.CaptureFixture[str]
) -> None:
    s3.client().put_object(Bucket=bucket, Key="in/part.csv", Body=b"id\n1\n")
    wrong = "wrong-" + secrets.token_urlsafe(16)
    # The session's global keys would be let in: the block's own keys must be the ones sent.
    store = login(s3, "harness-keys", secret_key=wrong)

    with pytest.raises(SourceUnavailable) as failure:
        run(
            spark,
            tmp_path,
            {
                "extract": {
                    "sourceType": "S3",
                    "path": f"s3a://{bucket}/in/",
                    "format": "csv",
                    "s3": store.block,
                },
                "load": {"sinkType": "S3", "path": str(tmp_path / "out")},
            },
            store.env,
        )

    assert str(failure.value) == (
        f"extract: path: access to bucket {bucket} at {s3.endpoint} was denied for the access key in "
        "Secret harness-keys key access-key: wrong secret key or no permission"
    )
    assert failure.value.exit_code == 4
    captured = capfd.readouterr()
    assert_secret_kept(failure.value, spark, captured.out + captured.err, wrong, s3.secret_key)


@pytest.mark.parametrize("endpoint", ["unknown-host", "closed-port"])
def test_a_wrong_endpoint_fails_in_seconds(
    spark: SparkSession,
    tmp_path: Path,
    other_store: S3Server,
    capfd: pytest.CaptureFixture[str],
    endpoint: str,
) -> None:
    # S3A's own retries took minutes to give up on a closed port; the per-bucket bounds, seconds.
    url = (
        "http://no-such-host.invalid:9000"
        if endpoint == "unknown-host"
        else f"http://127.0.0.1:{free_port()}"
    )
    store = login(other_store, "other-store", endpoint=url)
    bucket = f"t-{secrets.token_hex(6)}"
    started = time.monotonic()

    with pytest.raises(SinkRejected) as failure:
        run(
            spark,
            tmp_path,
            {
                "extract": {"sourceType": "S3", "path": write_csv(tmp_path / "input", ROWS), "format": "csv"},
                "load": {"sinkType": "S3", "path": f"s3a://{bucket}/out/", "s3": store.block},
                "errorHandling": NO_RETRY,
            },
            store.env,
        )

    assert time.monotonic() - started < 20
    cause = (
        "is unknown: host no-such-host.invalid does not resolve"
        if endpoint == "unknown-host"
        else "does not accept connections"
    )
    assert str(failure.value) == f"load: path: endpoint {url} of bucket {bucket} {cause}"
    assert failure.value.exit_code == 4
    captured = capfd.readouterr()
    assert_secret_kept(failure.value, spark, captured.out + captured.err, other_store.secret_key)
