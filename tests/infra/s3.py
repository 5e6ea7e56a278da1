"""A real S3 API server (MinIO, built from the Go module proxy) on loopback, in a temp dir."""

from __future__ import annotations

import os
import secrets
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from tests.infra.process import ServerProcess, free_port, make_workdir, timed
from tests.infra.versions import BUILD_SCRIPTS, cache_dir, ensure_built, versions

COMPONENT = "s3"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    process: ServerProcess

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def hadoop_conf(self) -> dict[str, str]:
        """The S3A settings that point Spark at this server."""
        return {
            "fs.s3a.endpoint": self.endpoint,
            "fs.s3a.endpoint.region": self.region,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": "false",
            "fs.s3a.access.key": self.access_key,
            "fs.s3a.secret.key": self.secret_key,
            "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }


def start_s3(timeout: float = 60, host: str = "127.0.0.1") -> S3Server:
    ensure_built(COMPONENT, BUILD_SCRIPTS / "build-minio.sh")
    binary = cache_dir() / f"minio-{versions()['MINIO_VERSION']}" / "bin" / "minio"
    workdir = make_workdir(COMPONENT)
    port, console_port = free_port(), free_port()
    access_key, secret_key = "etl-test-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_REGION": "us-east-1",
    }
    process = ServerProcess(
        COMPONENT,
        [
            str(binary),
            "server",
            str(workdir / "data"),
            "--address",
            f"{host}:{port}",
            "--console-address",
            f"127.0.0.1:{console_port}",
            "--quiet",
        ],
        log_path=workdir / "minio.log",
        env=env,
    )
    server = S3Server(f"http://{host}:{port}", access_key, secret_key, "us-east-1", process)
    with timed(COMPONENT, "start"):
        process.start()
        process.wait_until(lambda: _ready(server), what="answering /minio/health/ready", timeout=timeout)
    return server


def _ready(server: S3Server) -> bool:
    with urllib.request.urlopen(f"{server.endpoint}/minio/health/ready", timeout=2) as response:
        return bool(response.status == 200)
