"""One KRaft-mode Kafka broker (combined broker and controller) from the Maven Central jars.

Besides its PLAINTEXT listener the broker has a SASL_PLAINTEXT one, on its own port, that takes
one user by PLAIN and by SCRAM-SHA-256, so clients can be tested with credentials."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import uuid
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from tests.infra.process import (
    HarnessError,
    ServerProcess,
    free_port,
    make_workdir,
    run_checked,
    timed,
)
from tests.infra.versions import BUILD_SCRIPTS, cache_dir, ensure_built, versions

COMPONENT = "kafka"


#: The one SASL user of the harness broker (the password is drawn per start).
SASL_USER = "etl"


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap_servers: str
    process: ServerProcess
    #: host:port of the SASL_PLAINTEXT listener (mechanisms PLAIN and SCRAM-SHA-256).
    sasl_bootstrap: str = ""
    sasl_user: str = SASL_USER
    sasl_password: str = ""

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap_servers})

    def create_topic(self, name: str, partitions: int = 1) -> None:
        admin = self.admin()  # held until the future resolves: a collected client cancels it
        futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
        futures[name].result(timeout=60)


def start_kafka(timeout: float = 90, host: str = "127.0.0.1") -> KafkaBroker:
    """A single KRaft broker whose client listeners are on `host` (the controller stays on loopback)."""
    ensure_built(COMPONENT, BUILD_SCRIPTS / "fetch-kafka.sh")
    java = shutil.which("java")
    if java is None:
        raise HarnessError(f"{COMPONENT}: java not found on PATH")
    libs = cache_dir() / f"kafka-{versions()['KAFKA_VERSION']}" / "libs"
    workdir = make_workdir(COMPONENT)
    port, controller_port, sasl_port = free_port(), free_port(), free_port()
    sasl_password = secrets.token_hex(12)
    config = workdir / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl_port},"
                f"CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                "SASL_PLAINTEXT:SASL_PLAINTEXT",
                "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
                # PLAIN users live in the listener's JAAS entry; SCRAM users in the cluster
                # metadata, written by the storage format below.
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{SASL_USER}="{sasl_password}";',
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"log.dirs={workdir / 'logs'}",
                "num.partitions=1",
                # Topics exist only when a test creates them, so a missing topic is a real error.
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
    )
    classpath = f"{libs}/*"
    jvm = [java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true", "-cp", classpath]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    with timed(COMPONENT, "format"):
        run_checked(
            COMPONENT,
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                # One argument with "=": a URL-safe id may start with "-", which the storage tool
                # would take for an option (about one start in 32).
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                "--add-scram",
                f"SCRAM-SHA-256=[name={SASL_USER},password={sasl_password}]",
            ],
            timeout=timeout,
        )
    process = ServerProcess(
        COMPONENT,
        [*jvm, "kafka.Kafka", str(config)],
        log_path=workdir / "kafka.log",
        env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx512m"},
    )
    broker = KafkaBroker(
        f"{host}:{port}",
        process,
        sasl_bootstrap=f"{host}:{sasl_port}",
        sasl_password=sasl_password,
    )
    with timed(COMPONENT, "start"):
        process.start()
        process.wait_until(lambda: _has_broker(broker), what="serving metadata", timeout=timeout)
    return broker


def _has_broker(broker: KafkaBroker) -> bool:
    metadata = broker.admin().list_topics(timeout=2)
    return bool(metadata.brokers)
