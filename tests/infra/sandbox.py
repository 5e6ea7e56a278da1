"""`make sandbox`: the real node, the product's images, the operator's chart, and PostgreSQL,
MySQL, Kafka and S3 on the node's bridge address (the host and pods reach them at the same
address), for a user to try pipelines on. `.sandbox/env` says where everything is.

    python -m tests.infra.sandbox up     # start, or reuse what runs; write .sandbox/env
    python -m tests.infra.sandbox down   # stop everything it started, remove what it made
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from typing import Any

import yaml

from tests.infra import kafka, mariadb, postgres, process, s3
from tests.infra.helm import built_helm
from tests.infra.node import chart
from tests.infra.node import node as real
from tests.infra.node.daemons import alive
from tests.infra.node.network import NODE_IP, POD_CIDR
from tests.infra.versions import REPO_ROOT

SANDBOX_DIR = REPO_ROOT / ".sandbox"
STATE = SANDBOX_DIR / "state.json"
ENV_FILE = SANDBOX_DIR / "env"
NAMESPACE = "sandbox"
SECRET = "sandbox-credentials"
BUCKET = "sandbox"


def up() -> None:
    SANDBOX_DIR.mkdir(exist_ok=True)
    state = _load_state()
    node = real.up()
    images = chart.build_images()
    services = state.get("services", {})
    if not _services_running(services):
        _stop_services(services)
        services = _start_services()
        state["services"] = services
        _save_state(state)
    print("sandbox: installing the operator's chart")
    chart.install_operator(node, images, [NAMESPACE])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "stringData": {
            "postgres-password": services["postgres"]["password"],
            "mysql-password": services["mysql"]["password"],
            "s3-access-key": services["s3"]["access_key"],
            "s3-secret-key": services["s3"]["secret_key"],
        },
    }
    node.kubectl_run("apply", "-f", "-", input_text=yaml.safe_dump(secret))
    ENV_FILE.write_text(_env_text(node, services))
    ENV_FILE.chmod(0o600)
    print(f"sandbox: ready; `source {ENV_FILE}`")


def down() -> None:
    state = _load_state()
    _stop_services(state.get("services", {}))
    real.down()
    shutil.rmtree(SANDBOX_DIR, ignore_errors=True)
    print("sandbox: stopped and removed")


def _start_services() -> dict[str, Any]:
    """The four servers on the node's address, detached from this process so they outlive it."""
    print("sandbox: starting PostgreSQL, MySQL, Kafka and S3")
    pg = postgres.start_postgres(host=NODE_IP, clients=POD_CIDR)
    my = mariadb.start_mariadb(host=NODE_IP)
    broker = kafka.start_kafka(host=NODE_IP)
    store = s3.start_s3(host=NODE_IP)
    store.create_bucket(BUCKET)
    servers = {"postgres": pg.process, "mysql": my.process, "kafka": broker.process, "s3": store.process}
    for server in servers.values():
        # Not stopped when this process exits: the sandbox's servers live until `make sandbox-down`.
        server.detach()
    return {
        "postgres": {
            "host": pg.host,
            "port": pg.port,
            "user": pg.user,
            "password": pg.password,
            "database": "etl",
        },
        "mysql": {
            "host": my.host,
            "port": my.port,
            "user": my.user,
            "password": my.password,
            "database": "etl",
        },
        "kafka": {"bootstrap": broker.bootstrap_servers},
        "s3": {
            "endpoint": store.endpoint,
            "access_key": store.access_key,
            "secret_key": store.secret_key,
            "bucket": BUCKET,
        },
        "pids": {name: server.pid for name, server in servers.items() if server.pid is not None},
        "dirs": [str(path) for path in process.WORKDIRS],
    }


def _services_running(services: dict[str, Any]) -> bool:
    pids = services.get("pids", {})
    return bool(pids) and all(alive(pid) for pid in pids.values())


def _stop_services(services: dict[str, Any]) -> None:
    for pid in services.get("pids", {}).values():
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    for directory in services.get("dirs", []):
        shutil.rmtree(directory, ignore_errors=True)


def _env_text(node: real.Node, services: dict[str, Any]) -> str:
    pg, my, store = services["postgres"], services["mysql"], services["s3"]
    tools = f"{node.kubectl.parent}:{built_helm().binary.parent}"
    values = {
        "KUBECONFIG": str(node.kubeconfig),
        "SANDBOX_NAMESPACE": NAMESPACE,
        "SANDBOX_SECRET": SECRET,
        "POSTGRES_HOST": pg["host"],
        "POSTGRES_PORT": str(pg["port"]),
        "POSTGRES_USER": pg["user"],
        "POSTGRES_PASSWORD": pg["password"],
        "POSTGRES_DB": pg["database"],
        "MYSQL_HOST": my["host"],
        "MYSQL_PORT": str(my["port"]),
        "MYSQL_USER": my["user"],
        "MYSQL_PASSWORD": my["password"],
        "MYSQL_DB": my["database"],
        "KAFKA_BOOTSTRAP": services["kafka"]["bootstrap"],
        "S3_ENDPOINT": store["endpoint"],
        "S3_BUCKET": store["bucket"],
        "S3_ACCESS_KEY": store["access_key"],
        "S3_SECRET_KEY": store["secret_key"],
    }
    # The servers listen on the node's bridge address, which pods and the host reach alike.
    for key in (
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "MYSQL_HOST",
        "MYSQL_PORT",
        "KAFKA_BOOTSTRAP",
        "S3_ENDPOINT",
    ):
        values[f"{key}_FROM_POD"] = values[key]
    lines = ["# Written by `make sandbox`; `source` it. Holds the sandbox's passwords: keep it private."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    lines.append(f'export PATH={shlex.quote(tools)}:"$PATH"')
    return "\n".join(lines) + "\n"


def _load_state() -> dict[str, Any]:
    return dict(json.loads(STATE.read_text())) if STATE.exists() else {}


def _save_state(state: dict[str, Any]) -> None:
    STATE.write_text(json.dumps(state, indent=2))
    STATE.chmod(0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra.sandbox", description=__doc__)
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args(argv)
    try:
        up() if args.command == "up" else down()
    except (process.HarnessError, subprocess.CalledProcessError) as failed:
        print(f"sandbox: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
