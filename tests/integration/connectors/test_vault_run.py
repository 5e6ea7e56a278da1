"""The same pipeline file runs locally and in the cluster unchanged: `etl run` takes the database
password its credentialsRef names from the local vault (or, with --kube-secrets, from the Secret
`etl vault export-secret` made in the cluster), loads the rows into the harness's PostgreSQL, and
the password appears in no output, log, termination message, file, command line or environment."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.contract import SecretKeyRef
from tests.infra.kube import KubeCluster
from tests.infra.postgres import PostgresServer
from tests.infra.spark import connector_jars
from tests.infra.versions import REPO_ROOT

pytestmark = pytest.mark.integration

PASSWORD_REF = SecretKeyRef(name="vault-db", key="password")
ROWS = [("1", "ada"), ("2", "grace"), ("3", "edsger")]


@dataclass(frozen=True)
class Database:
    """A database of its own, owned by a role whose password only the vault holds."""

    postgres: PostgresServer
    name: str
    user: str
    password: str

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        connection = self.postgres.connect(self.name)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, name FROM {table} ORDER BY id")
            found: list[tuple[Any, ...]] = cursor.fetchall()
        connection.close()
        return found


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[Database]:
    suffix = secrets.token_hex(4)
    found = Database(postgres, f"vault_{suffix}", f"vault_{suffix}", f"Canary-{secrets.token_hex(10)}-pw")
    admin = postgres.connect()
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {found.user} LOGIN PASSWORD %s", (found.password,))
        cursor.execute(f"CREATE DATABASE {found.name} OWNER {found.user}")
    yield found
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {found.name} WITH (FORCE)")
        cursor.execute(f"DROP ROLE IF EXISTS {found.user}")
    admin.close()


def _pipeline(folder: Path, database: Database, table: str, namespace: str | None = None) -> Path:
    (folder / "people.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in ROWS))
    postgres = database.postgres
    metadata = {"name": "vault-run", **({"namespace": namespace} if namespace else {})}
    manifest = {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": metadata,
        "spec": {
            "extract": {"sourceType": "S3", "path": "people.csv", "format": "csv",
                        "options": {"header": "true"}},
            "load": {
                "sinkType": "PostgreSQL", "table": table, "writeMode": "append",
                "connection": {"host": postgres.host, "port": postgres.port, "database": database.name,
                               "user": database.user},
                "credentialsRef": {"name": PASSWORD_REF.name, "key": PASSWORD_REF.key},
            },
            "logging": {"level": "DEBUG"},
        },
    }  # fmt: skip
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def _environment(folder: Path, master_key: str | None, **extra: str) -> dict[str, str]:
    """The test's environment with no Secret value in it; a vault beside the pipeline."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETL_SECRET_")}
    env.pop("VAULT_MASTER_KEY", None)
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        ETL_VAULT=str(folder / "vault.enc"),
        ETL_SPARK_JARS=os.pathsep.join(str(jar) for jar in connector_jars()),
        **extra,
    )
    if master_key is not None:
        env["VAULT_MASTER_KEY"] = master_key
    return env


def _etl(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl_job.cli", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@dataclass
class Watched:
    """An `etl run` and what every process on the machine showed while it ran."""

    result: subprocess.CompletedProcess[str]
    pid: int
    #: Per secret searched for: the pids whose command line held it, and those whose environment did.
    in_command_lines: dict[str, set[int]]
    in_environments: dict[str, set[int]]


def _run_watching(args: list[str], env: dict[str, str], folder: Path, wanted: dict[str, str]) -> Watched:
    """`etl run` in its own process, with every process's command line and environment searched
    for each of `wanted` while it runs (Spark's JVM included)."""
    out, err = folder / "run.stdout", folder / "run.stderr"
    command_lines: dict[str, set[int]] = {name: set() for name in wanted}
    environments: dict[str, set[int]] = {name: set() for name in wanted}
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "run", *args],
            env=env,
            cwd=folder,
            stdout=stdout,
            stderr=stderr,
        )
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                for file, found in (("cmdline", command_lines), ("environ", environments)):
                    try:
                        content = (proc / file).read_bytes()
                    except OSError:
                        continue
                    for name, secret in wanted.items():
                        if secret.encode() in content:
                            found[name].add(int(proc.name))
            time.sleep(0.5)
        if process.poll() is None:
            process.kill()
        process.wait()
    result = subprocess.CompletedProcess(process.args, process.returncode, out.read_text(), err.read_text())
    return Watched(result, process.pid, command_lines, environments)


def _assert_nowhere(secret: str, folder: Path, watched: Watched, termination_log: Path) -> None:
    assert not watched.in_command_lines["password"], "the password is in a command line"
    assert not watched.in_environments["password"], "the password is in a process's environment"
    places = {
        "stdout of the run": watched.result.stdout,
        "stderr of the run (its logs)": watched.result.stderr,
        "termination message": termination_log.read_text(),
    }
    for place, text in places.items():
        assert secret not in text, f"the secret is in the {place}"
    # Whatever Spark or the run left in its working folder: logs, warehouse, metastore.
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the secret is in {path}"


def test_a_run_takes_its_password_from_the_vault_and_shows_it_nowhere(
    database: Database, tmp_path: Path
) -> None:
    master_key = f"master-{secrets.token_hex(12)}"
    table = "people"
    pipeline, termination_log = _pipeline(tmp_path, database, table), tmp_path / "termination.json"
    env = _environment(tmp_path, master_key)
    assert _etl("vault", "init", env=env).returncode == 0
    stored = _etl(
        "vault", "set", PASSWORD_REF.name, PASSWORD_REF.key, env=env, stdin=database.password + "\n"
    )
    assert stored.returncode == 0, stored.stderr

    watched = _run_watching(
        [str(pipeline), "--master", "local[1]", "--termination-log", str(termination_log)],
        env, tmp_path, {"password": database.password, "master key": f"VAULT_MASTER_KEY={master_key}"},
    )  # fmt: skip
    assert watched.result.returncode == 0, watched.result.stderr[-4000:]
    assert json.loads(termination_log.read_text())["recordsLoaded"] == len(ROWS)
    assert database.rows(table) == ROWS
    _assert_nowhere(database.password, tmp_path, watched, termination_log)
    # Nor does the master key reach Spark: only the etl process itself was started with it (which
    # also shows the search of environments finds what is there).
    assert watched.in_environments["master key"] == {watched.pid}
    assert not watched.in_command_lines["master key"]


def test_kube_secrets_takes_the_password_from_the_secret_the_vault_exported(
    database: Database, kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    master_key = f"master-{secrets.token_hex(12)}"
    env = _environment(tmp_path, master_key)
    _etl("vault", "init", env=env)
    _etl("vault", "set", PASSWORD_REF.name, PASSWORD_REF.key, env=env, stdin=database.password)
    exported = _etl("vault", "export-secret", PASSWORD_REF.name, "-n", namespace, env=env)
    assert exported.returncode == 0, exported.stderr
    kube_cluster.kubectl("apply", "-f", "-", input_text=exported.stdout)
    (tmp_path / "vault.enc").unlink()  # the cluster is the only place left that has the password

    table = "people_from_kube"
    pipeline, termination_log = _pipeline(tmp_path, database, table, namespace), tmp_path / "termination.json"
    watched = _run_watching(
        [str(pipeline), "--kube-secrets", "--master", "local[1]", "--termination-log", str(termination_log)],
        _environment(tmp_path, None, KUBECONFIG=str(kube_cluster.kubeconfig)),
        tmp_path, {"password": database.password},
    )  # fmt: skip
    assert watched.result.returncode == 0, watched.result.stderr[-4000:]
    assert database.rows(table) == ROWS
    _assert_nowhere(database.password, tmp_path, watched, termination_log)
