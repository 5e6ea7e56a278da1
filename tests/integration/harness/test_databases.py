"""PostgreSQL and MariaDB are real servers: SQL round trips, and passwords really checked."""

from __future__ import annotations

import psycopg2
import pymysql
import pytest

from tests.infra.mariadb import MySQLServer
from tests.infra.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_postgres_sql_round_trip(postgres: PostgresServer) -> None:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE smoke_pg (id int PRIMARY KEY, name text)")
        cur.execute("INSERT INTO smoke_pg VALUES (1, 'ada'), (2, 'grace')")
        cur.execute(
            "INSERT INTO smoke_pg VALUES (2, 'linus') ON CONFLICT (id) DO UPDATE SET name = excluded.name"
        )
        cur.execute("SELECT id, name FROM smoke_pg ORDER BY id")
        assert cur.fetchall() == [(1, "ada"), (2, "linus")]


def test_postgres_refuses_a_wrong_password(postgres: PostgresServer) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=postgres.host,
            port=postgres.port,
            dbname=postgres.database,
            user=postgres.user,
            password="not-" + postgres.password,
            connect_timeout=5,
        )


def test_mysql_sql_round_trip(mysql: MySQLServer) -> None:
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE smoke_my (id int PRIMARY KEY, name varchar(20))")
        cur.execute("INSERT INTO smoke_my VALUES (1, 'ada'), (2, 'grace')")
        cur.execute("INSERT INTO smoke_my VALUES (2, 'linus') ON DUPLICATE KEY UPDATE name = VALUES(name)")
        cur.execute("SELECT id, name FROM smoke_my ORDER BY id")
        assert cur.fetchall() == ((1, "ada"), (2, "linus"))
    conn.close()


def test_mysql_refuses_a_wrong_password(mysql: MySQLServer) -> None:
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(
            host=mysql.host,
            port=mysql.port,
            user=mysql.user,
            password="not-" + mysql.password,
            database=mysql.database,
            connect_timeout=5,
        )
