"""A fresh MariaDB (MySQL-compatible) instance from Debian's packages, in a temp dir on its port."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass

import pymysql

from tests.infra.process import (
    HarnessError,
    ServerProcess,
    free_port,
    make_workdir,
    run_checked,
    service_user,
    timed,
)

COMPONENT = "mariadb"


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    database: str
    user: str
    password: str
    process: ServerProcess

    @property
    def jdbc_url(self) -> str:
        # The jdbc:mysql scheme makes Spark pick its MySQL dialect (backtick quoting); the
        # MariaDB driver takes that scheme only when told to.
        return f"jdbc:mysql://{self.host}:{self.port}/{self.database}?permitMysqlScheme"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database or self.database,
            connect_timeout=5,
            autocommit=True,
        )


def start_mariadb(timeout: float = 60, host: str = "127.0.0.1") -> MySQLServer:
    """mariadb-install-db, start mariadbd on `host`, create database `etl` and user `etl`."""
    install_db, server_bin = (
        shutil.which("mariadb-install-db"),
        shutil.which("mariadbd", path="/usr/sbin:/usr/bin"),
    )
    if not install_db or not server_bin:
        raise HarnessError(f"{COMPONENT}: mariadbd not found; install Debian's mariadb-server package")
    user = service_user("mysql")
    workdir = make_workdir(COMPONENT, owner=user)
    data, socket_path = workdir / "data", workdir / "mysqld.sock"
    user_args = [f"--user={user}"] if user else []
    with timed(COMPONENT, "install-db"):
        run_checked(
            COMPONENT,
            [
                install_db,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user_args,
            ],
            timeout=timeout,
        )
    port = free_port()
    process = ServerProcess(
        COMPONENT,
        [
            server_bin,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            f"--bind-address={host}",
            f"--socket={socket_path}",
            f"--pid-file={workdir / 'mysqld.pid'}",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--local-infile=1",
            "--max-connections=200",
            *user_args,
        ],
        log_path=workdir / "mariadb.log",
    )
    with timed(COMPONENT, "start"):
        process.start()
        process.wait_until(
            lambda: _root(socket_path).close() is None, what="accepting connections", timeout=timeout
        )
    password = secrets.token_urlsafe(16)
    root = _root(socket_path)
    with root.cursor() as cur:
        cur.execute("CREATE DATABASE etl")
        cur.execute("CREATE USER 'etl'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'etl'@'%'")
    root.close()
    return MySQLServer(host, port, "etl", "etl", password, process)


def _root(socket_path: object) -> pymysql.connections.Connection:
    return pymysql.connect(unix_socket=str(socket_path), user="root", connect_timeout=5, autocommit=True)
