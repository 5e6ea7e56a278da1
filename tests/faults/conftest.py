"""Servers of a fault test's own, which it stops, kills or pauses; and no run outliving its test.

The session's shared servers are never broken on purpose: other tests use them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.faults.runs import EtlRun
from tests.infra.kafka import KafkaBroker, start_kafka
from tests.infra.mariadb import MySQLServer, start_mariadb
from tests.infra.postgres import PostgresServer, start_postgres
from tests.infra.process import ServerProcess
from tests.infra.s3 import S3Server, start_s3


def _resume(process: ServerProcess) -> None:
    """A server a test paused (SIGSTOP) would not stop on SIGTERM: resume it first."""
    if process.running and process.pid is not None:
        os.killpg(process.pid, signal.SIGCONT)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    _resume(server.process)
    server.process.stop()


@pytest.fixture
def own_mysql() -> Iterator[MySQLServer]:
    server = start_mariadb()
    yield server
    _resume(server.process)
    server.process.stop()


@pytest.fixture
def own_kafka() -> Iterator[KafkaBroker]:
    broker = start_kafka()
    yield broker
    _resume(broker.process)
    broker.process.stop()


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    server = start_s3()
    yield server
    _resume(server.process)
    server.process.stop()


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    yield
    for run in EtlRun.started:
        run.kill()
    EtlRun.started.clear()
