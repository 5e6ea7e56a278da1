"""Kafka and S3 are real servers: a produce/consume round trip and a put/get round trip."""

from __future__ import annotations

import secrets

import boto3
import pytest
from botocore.exceptions import ClientError
from confluent_kafka import Consumer, KafkaError, Producer

from tests.infra.kafka import KafkaBroker
from tests.infra.s3 import S3Server

pytestmark = pytest.mark.integration


def test_kafka_produce_consume_round_trip(kafka: KafkaBroker) -> None:
    topic = f"smoke-{secrets.token_hex(4)}"
    kafka.create_topic(topic, partitions=2)
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    for i in range(5):
        producer.produce(topic, key=f"k{i}", value=f"event-{i}")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    received: set[str] = set()
    for _ in range(60):
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            received.add(bytes(message.value() or b"").decode())
        if len(received) == 5:
            break
    consumer.close()
    assert received == {f"event-{i}" for i in range(5)}


def test_kafka_has_no_topic_until_one_is_created(kafka: KafkaBroker) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "message.timeout.ms": 3000})
    errors: list[KafkaError | None] = []
    producer.produce("no-such-topic", value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None


def test_s3_put_get_round_trip(s3: S3Server, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="raw/events.csv", Body=b"id,amount\n1,9.5\n")
    body = client.get_object(Bucket=bucket, Key="raw/events.csv")["Body"].read()
    assert body == b"id,amount\n1,9.5\n"
    listed = client.list_objects_v2(Bucket=bucket, Prefix="raw/")
    assert [item["Key"] for item in listed["Contents"]] == ["raw/events.csv"]


def test_s3_refuses_a_wrong_secret_key(s3: S3Server, bucket: str) -> None:
    intruder = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key="wrong-" + s3.secret_key,
        region_name=s3.region,
    )
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        intruder.list_objects_v2(Bucket=bucket)
