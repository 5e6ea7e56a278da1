"""A fresh PostgreSQL instance from Debian's packages: initdb in a temp dir, its own port."""

from __future__ import annotations

import glob
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.infra.process import (
    HarnessError,
    ServerProcess,
    free_port,
    make_workdir,
    run_checked,
    service_user,
    timed,
)

COMPONENT = "postgresql"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    database: str
    user: str
    password: str
    process: ServerProcess

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=database or self.database,
            user=self.user,
            password=self.password,
            connect_timeout=5,
        )


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise HarnessError(f"{COMPONENT}: initdb not found; install Debian's postgresql package")
    return Path(found[-1]).parent


def start_postgres(
    timeout: float = 60, host: str = "127.0.0.1", clients: str | None = None
) -> PostgresServer:
    """initdb with password authentication over TCP, start the server on `host`, create database
    `etl`. `clients` (a CIDR) may connect besides loopback: the real node's pods."""
    bin_dir = _bin_dir()
    user = service_user("postgres")  # PostgreSQL refuses to run as root
    workdir = make_workdir(COMPONENT, owner=user)
    data, log = workdir / "data", workdir / "postgres.log"
    password = secrets.token_urlsafe(16)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        shutil.chown(pwfile, user=user, group=user)
    with timed(COMPONENT, "initdb"):
        run_checked(
            COMPONENT,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            timeout=timeout,
            user=user,
        )
    pwfile.unlink()
    if clients:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {clients} scram-sha-256\n")
    port = free_port()
    process = ServerProcess(
        COMPONENT,
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            host,
            "-k",
            str(workdir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        log_path=log,
        user=user,
    )
    server = PostgresServer(host, port, "etl", "postgres", password, process)
    with timed(COMPONENT, "start"):
        process.start()
        process.wait_until(
            lambda: _accepts(server, "postgres"), what="accepting connections", timeout=timeout
        )
    conn = server.connect("postgres")
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE etl")
    conn.close()
    return server


def _accepts(server: PostgresServer, database: str) -> bool:
    server.connect(database).close()
    return True
