"""A credential's value goes to the connection that needs it and nowhere else: not to a log line,
the metrics, the termination message, an error, or the data written. The job runs as in a driver
pod, `etl run` in its own process with the Secret values in env, and everything it printed or
wrote is searched for a distinctive password."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.contract import SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server
from tests.infra.spark import connector_jars

pytestmark = pytest.mark.integration

DB_PASSWORD = SecretKeyRef(name="leak-db", key="password")
S3_ACCESS = SecretKeyRef(name="leak-s3", key="access-key")
S3_SECRET = SecretKeyRef(name="leak-s3", key="secret-key")


def _manifest(postgres: PostgresServer, s3: S3Server, bucket: str, user: str, table: str) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": "leak-check"},
        "spec": {
            "extract": {
                "sourceType": "PostgreSQL",
                "connection": {
                    "host": postgres.host, "port": postgres.port, "database": postgres.database, "user": user,
                },
                "credentialsRef": {"name": DB_PASSWORD.name, "key": DB_PASSWORD.key},
                "table": table,
            },
            "transforms": [{"transformType": "Filter", "condition": "amount > 0"}],
            "load": {
                "sinkType": "S3", "path": f"s3a://{bucket}/out/", "format": "json",
                "s3": {
                    "endpoint": s3.endpoint, "region": s3.region, "pathStyleAccess": True,
                    "accessKeyRef": {"name": S3_ACCESS.name, "key": S3_ACCESS.key},
                    "secretKeyRef": {"name": S3_SECRET.name, "key": S3_SECRET.key},
                },
            },
            "logging": {"level": "DEBUG"},
        },
    }  # fmt: skip


def _run(manifest: Path, env: dict[str, str], termination_log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl_job.cli", "run", str(manifest), "--master", "local[1]",
         "--termination-log", str(termination_log), "--show", "5"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_password_appears_in_no_log_metric_error_or_output(
    postgres: PostgresServer, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    password = f"Canary-{secrets.token_hex(8)}-pw"
    user, table = f"leak_{secrets.token_hex(3)}", f"leak_{secrets.token_hex(3)}"
    admin = postgres.connect()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {user} LOGIN PASSWORD %s", (password,))
        cursor.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION)")
        cursor.execute(f"INSERT INTO {table} VALUES (1, 10.0), (2, -1.0), (3, 7.5)")
        cursor.execute(f"GRANT SELECT ON {table} TO {user}")
    admin.commit()
    admin.close()
    manifest = tmp_path / "pipeline.yaml"
    manifest.write_text(yaml.safe_dump(_manifest(postgres, s3, bucket, user, table)))
    env = {
        **os.environ,
        "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
        secret_env_name(S3_ACCESS): s3.access_key,
        secret_env_name(S3_SECRET): s3.secret_key,
    }

    succeeded_log, failed_log = tmp_path / "succeeded.json", tmp_path / "failed.json"
    succeeded = _run(manifest, {**env, secret_env_name(DB_PASSWORD): password}, succeeded_log)
    assert succeeded.returncode == 0, succeeded.stderr[-4000:]
    assert json.loads(succeeded_log.read_text())["recordsLoaded"] == 2
    # The same pipeline with a wrong password (which contains the right one): a clear error
    # naming the connection, and still neither password anywhere.
    failed = _run(manifest, {**env, secret_env_name(DB_PASSWORD): password + "-wrong"}, failed_log)
    assert failed.returncode == 4, failed.stderr[-4000:]
    error = " ".join(json.loads(failed_log.read_text())["errors"])
    assert f"{postgres.host}:{postgres.port}/{postgres.database}" in error
    assert "password" in error.lower() or "authentication" in error.lower()

    client = s3.client()
    written = [
        client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode(errors="replace")
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]
    assert written, "the run wrote nothing to search"
    places = {
        "stdout of the run": succeeded.stdout,
        "stderr of the run": succeeded.stderr,
        "termination message of the run": succeeded_log.read_text(),
        "stdout of the failed run": failed.stdout,
        "stderr of the failed run": failed.stderr,
        "termination message of the failed run": failed_log.read_text(),
        "files written": "\n".join(written),
    }
    for place, text in places.items():
        assert password not in text, f"the password is in the {place}"
        assert s3.secret_key not in text, f"the S3 secret key is in the {place}"
