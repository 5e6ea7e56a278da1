"""Spark with the pinned connector jars reaches every real service: JDBC, Kafka and s3a://."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.infra.kafka import KafkaBroker
from tests.infra.mariadb import MySQLServer
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server

pytestmark = pytest.mark.integration


def test_spark_reads_a_postgres_table_over_jdbc(spark: Any, postgres: PostgresServer) -> None:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE spark_pg (id int, amount numeric(10,2))")
        cur.execute("INSERT INTO spark_pg VALUES (1, 9.50), (2, 20.25)")
    frame = (
        spark.read.format("jdbc")
        .option("url", postgres.jdbc_url)
        .option("dbtable", "spark_pg")
        .option("user", postgres.user)
        .option("password", postgres.password)
        .load()
    )
    assert sorted((row.id, float(row.amount)) for row in frame.collect()) == [(1, 9.5), (2, 20.25)]


def test_spark_reads_a_mysql_table_over_jdbc(spark: Any, mysql: MySQLServer) -> None:
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE spark_my (id int, name varchar(10))")
        cur.execute("INSERT INTO spark_my VALUES (1, 'ada'), (2, 'grace')")
    conn.close()
    frame = (
        spark.read.format("jdbc")
        .option("url", mysql.jdbc_url)
        .option("dbtable", "spark_my")
        .option("user", mysql.user)
        .option("password", mysql.password)
        .load()
    )
    assert sorted((row.id, row.name) for row in frame.collect()) == [(1, "ada"), (2, "grace")]


def test_spark_reads_a_kafka_topic(spark: Any, kafka: KafkaBroker) -> None:
    topic = f"spark-{secrets.token_hex(4)}"
    kafka.create_topic(topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for i in range(4):
        producer.produce(topic, key=str(i), value=f'{{"id": {i}}}')
    assert producer.flush(30) == 0
    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    values = sorted(row.value.decode() for row in frame.select("value").collect())
    assert values == [f'{{"id": {i}}}' for i in range(4)]


def test_spark_reads_an_object_through_s3a(spark: Any, s3: S3Server, bucket: str) -> None:
    s3.client().put_object(Bucket=bucket, Key="raw/events.csv", Body=b"id,amount\n1,9.5\n2,20.25\n")
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3.hadoop_conf().items():
        hadoop_conf.set(key, value)
    frame = spark.read.option("header", "true").option("inferSchema", "true").csv(f"s3a://{bucket}/raw/")
    assert sorted((row.id, row.amount) for row in frame.collect()) == [(1, 9.5), (2, 20.25)]
