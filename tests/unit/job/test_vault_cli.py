"""`etl vault` and `etl run`'s use of it, each command in its own process as a user runs it: values
go in on stdin and come out only of `get` and `export-secret`; a wrong key, a changed byte or a
cut-off file is exit code 2 with nothing printed; concurrent writers lose nothing."""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.cli import _parser
from etl_job.contract import SecretKeyRef
from etl_job.contract.credentials import secret_env_name

REPO = Path(__file__).resolve().parents[3]
MASTER = "a master key for the tests"
PASSWORD = "Pä$$ w0rd:with spaces"
PG = SecretKeyRef(name="pg-credentials", key="password")


def etl(
    *args: str, vault: Path, stdin: str | None = None, master: str | None = MASTER, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "ETL_VAULT": str(vault), **env}
    environment.pop("VAULT_MASTER_KEY", None)
    if master is not None:
        environment["VAULT_MASTER_KEY"] = master
    return subprocess.run(
        [sys.executable, "-m", "etl_job.cli", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=environment,
        cwd=next(folder for folder in vault.parents if folder.is_dir()),
        timeout=120,
        check=False,
    )


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "vault" / "vault.enc"
    created = etl("vault", "init", vault=path)
    assert created.returncode == 0, created.stderr
    return path


def test_set_get_list_and_export_round_trip(vault: Path) -> None:
    assert (
        etl("vault", "set", "pg-credentials", "password", vault=vault, stdin=PASSWORD + "\n").returncode == 0
    )
    assert etl("vault", "set", "pg-credentials", "user", vault=vault, stdin="etl").returncode == 0
    assert etl("vault", "set", "s3", "multi-line", vault=vault, stdin="a\nb\n\n").returncode == 0

    got = etl("vault", "get", "pg-credentials", "password", vault=vault)
    assert (got.returncode, got.stdout) == (0, PASSWORD)  # one trailing newline dropped
    assert etl("vault", "get", "s3", "multi-line", vault=vault).stdout == "a\nb\n"
    listed = etl("vault", "list", vault=vault)
    assert listed.stdout == "pg-credentials password\npg-credentials user\ns3 multi-line\n"
    assert PASSWORD not in listed.stdout + listed.stderr

    exported = etl("vault", "export-secret", "pg-credentials", "-n", "team", vault=vault)
    assert exported.returncode == 0, exported.stderr
    secret = yaml.safe_load(exported.stdout)
    assert (secret["kind"], secret["metadata"]) == ("Secret", {"name": "pg-credentials", "namespace": "team"})
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == {
        "password": PASSWORD,
        "user": "etl",
    }


def test_the_vault_and_its_lock_are_0600_and_no_temporary_file_stays(vault: Path) -> None:
    assert etl("vault", "set", "pg-credentials", "password", vault=vault, stdin=PASSWORD).returncode == 0
    assert sorted(path.name for path in vault.parent.iterdir()) == ["vault.enc", "vault.enc.lock"]
    for path in vault.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert PASSWORD.encode() not in vault.read_bytes()


def test_keep_newline_and_rm(vault: Path) -> None:
    etl("vault", "set", "--keep-newline", "app", "token", vault=vault, stdin="t0ken\n")
    etl("vault", "set", "app", "other", vault=vault, stdin="x")
    assert etl("vault", "get", "app", "token", vault=vault).stdout == "t0ken\n"
    assert etl("vault", "rm", "app", "token", vault=vault).returncode == 0
    assert etl("vault", "list", vault=vault).stdout == "app other\n"
    gone = etl("vault", "get", "app", "token", vault=vault)
    assert gone.returncode == 2 and "no key token of app" in gone.stderr
    assert etl("vault", "rm", "app", vault=vault).returncode == 0
    assert etl("vault", "list", vault=vault).stdout == ""


def test_an_empty_value_or_a_bad_name_is_refused(vault: Path) -> None:
    empty = etl("vault", "set", "pg-credentials", "password", vault=vault, stdin="")
    assert empty.returncode == 2 and "no value on stdin" in empty.stderr
    bad = etl("vault", "set", "PG", "password", vault=vault, stdin="x")
    assert bad.returncode == 2 and "not a Kubernetes Secret name" in bad.stderr


def test_a_wrong_master_key_is_exit_2_and_prints_nothing(vault: Path) -> None:
    etl("vault", "set", "pg-credentials", "password", vault=vault, stdin=PASSWORD)
    before = vault.read_bytes()
    for args in (("get", "pg-credentials", "password"), ("list",), ("export-secret", "pg-credentials")):
        refused = etl("vault", *args, vault=vault, master="not the key")
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == ""
        assert "wrong VAULT_MASTER_KEY" in refused.stderr
    overwrite = etl(
        "vault", "set", "pg-credentials", "password", vault=vault, stdin="x", master="not the key"
    )
    assert overwrite.returncode == 2
    assert vault.read_bytes() == before
    unset = etl("vault", "list", vault=vault, master=None)
    assert unset.returncode == 2 and "VAULT_MASTER_KEY is not set" in unset.stderr


@pytest.mark.parametrize("where", ["salt", "ciphertext", "tag"])
def test_one_changed_byte_is_exit_2_and_prints_nothing(vault: Path, where: str) -> None:
    etl("vault", "set", "pg-credentials", "password", vault=vault, stdin=PASSWORD)
    content = bytearray(vault.read_bytes())
    position = {"salt": 15, "ciphertext": 50, "tag": len(content) - 1}[where]
    content[position] ^= 0x04
    vault.write_bytes(bytes(content))
    got = etl("vault", "get", "pg-credentials", "password", vault=vault)
    assert (got.returncode, got.stdout) == (2, "")
    assert "the file was changed or damaged" in got.stderr
    # A damaged vault is not written over either.
    assert etl("vault", "set", "pg-credentials", "user", vault=vault, stdin="etl").returncode == 2
    assert vault.read_bytes() == bytes(content)


def test_a_truncated_vault_is_exit_2_and_prints_nothing(vault: Path) -> None:
    etl("vault", "set", "pg-credentials", "password", vault=vault, stdin=PASSWORD)
    vault.write_bytes(vault.read_bytes()[:-5])
    got = etl("vault", "export-secret", "pg-credentials", vault=vault)
    assert (got.returncode, got.stdout) == (2, "")
    assert "is truncated" in got.stderr


def test_concurrent_writers_lose_no_update(vault: Path) -> None:
    writers = 6
    environment = {**os.environ, "PYTHONPATH": str(REPO), "ETL_VAULT": str(vault), "VAULT_MASTER_KEY": MASTER}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "vault", "set", "app", f"key-{number}"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for number in range(writers)
    ]
    # Every writer is started before any gets its value, so their reads and writes overlap.
    for number, process in enumerate(processes):
        _, errors = process.communicate(f"value-{number}", timeout=180)
        assert process.returncode == 0, errors
    listed = etl("vault", "list", "app", vault=vault)
    assert listed.stdout.splitlines() == [f"app key-{number}" for number in range(writers)]
    exported = yaml.safe_load(etl("vault", "export-secret", "app", vault=vault).stdout)
    assert {key: base64.b64decode(value).decode() for key, value in exported["data"].items()} == {
        f"key-{number}": f"value-{number}" for number in range(writers)
    }


def test_values_are_never_taken_from_the_command_line(vault: Path) -> None:
    refused = etl("vault", "set", "pg-credentials", "password", PASSWORD, vault=vault, stdin="")
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    assert etl("vault", "list", vault=vault).stdout == ""
    # No vault command has a positional argument besides the entry's name and key.
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    vault_commands = next(
        a for a in commands.choices["vault"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    for name, parser in vault_commands.choices.items():
        positional = {action.dest for action in parser._actions if not action.option_strings}
        assert positional <= {"name", "key"}, name


# --- etl run, failing before Spark starts -------------------------------------------------------


def _pipeline(folder: Path) -> Path:
    (folder / "in.csv").write_text("id\n1\n")
    manifest: dict[str, Any] = {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": "vault-check"},
        "spec": {
            "extract": {"sourceType": "S3", "path": "in.csv", "format": "csv", "options": {"header": "true"}},
            "load": {
                "sinkType": "PostgreSQL",
                "table": "t",
                "connection": {"host": "127.0.0.1", "port": 9, "database": "d", "user": "u"},
                "credentialsRef": {"name": PG.name, "key": PG.key},
            },
        },
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_run_with_a_wrong_master_key_fails_before_spark_with_exit_2(vault: Path) -> None:
    etl("vault", "set", PG.name, PG.key, vault=vault, stdin=PASSWORD)
    pipeline, termination = _pipeline(vault.parent), vault.parent / "termination.json"
    run = etl("run", str(pipeline), "--termination-log", str(termination), vault=vault, master="wrong")
    assert run.returncode == 2, run.stderr
    assert "wrong VAULT_MASTER_KEY" in " ".join(json.loads(termination.read_text())["errors"])
    assert "SparkContext" not in run.stderr


def test_run_names_each_reference_found_nowhere(vault: Path) -> None:
    pipeline, termination = _pipeline(vault.parent), vault.parent / "termination.json"
    run = etl("run", str(pipeline), "--termination-log", str(termination), vault=vault)
    assert run.returncode == 2
    error = json.loads(termination.read_text())["errors"][0]
    assert f"Secret {PG.name} key {PG.key} ({secret_env_name(PG)})" in error
    assert f"nor in the vault {vault}" in error
    missing = etl(
        "run", str(pipeline), "--termination-log", str(termination), vault=vault.parent / "none.enc"
    )
    assert missing.returncode == 2
    assert f"etl vault set {PG.name} {PG.key}" in json.loads(termination.read_text())["errors"][0]


def test_run_kube_secrets_without_the_kubernetes_package_says_so(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "kubernetes"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'kubernetes'\")\n")
    pipeline, termination = _pipeline(tmp_path), tmp_path / "termination.json"
    run = etl(
        "run", str(pipeline), "--kube-secrets", "--termination-log", str(termination),
        vault=tmp_path / "vault.enc", PYTHONPATH=os.pathsep.join([str(shadow.parent), str(REPO)]),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "--kube-secrets needs the kubernetes Python package" in run.stderr
