"""Where `etl run` finds a pipeline's Secret values that the environment lacks: the local vault,
or with `--kube-secrets` the Secrets of the current kubeconfig's cluster.

In a driver pod the operator puts every value in the environment and neither is consulted. An
env var always wins, so a run can override one entry without touching the vault. Values found
are returned under the env var names the connectors look up (`secret_env_name`); they are never
logged, and an error names the Secret, the key and where it was looked for, never a value."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from etl_job.contract.connections import SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.errors import ConfigurationError, CredentialsMissing, SourceUnavailable
from etl_job.runtime.vault import read_vault

#: (Secret name, key) -> value, for the references a source could resolve.
Found = dict[tuple[str, str], str]
#: Resolves references: what it found, and a phrase naming where it looked, for errors.
SecretSource = Callable[[Sequence[SecretKeyRef]], tuple[Found, str]]


def missing_refs(refs: Sequence[SecretKeyRef], env: Mapping[str, str]) -> list[SecretKeyRef]:
    """The distinct references whose env var is not set, in spec order."""
    missing: list[SecretKeyRef] = []
    for ref in refs:
        if secret_env_name(ref) not in env and ref not in missing:
            missing.append(ref)
    return missing


def resolve_secrets(
    refs: Sequence[SecretKeyRef], env: Mapping[str, str], source: SecretSource
) -> dict[str, str]:
    """`env` with the value of every reference it lacks taken from `source`; the source is not
    consulted when nothing is missing. CredentialsMissing lists each reference found nowhere."""
    missing = missing_refs(refs, env)
    if not missing:
        return dict(env)
    found, where = source(missing)
    absent = [ref for ref in missing if (ref.name, ref.key) not in found]
    if absent:
        listed = "; ".join(f"Secret {ref.name} key {ref.key} ({secret_env_name(ref)})" for ref in absent)
        raise CredentialsMissing(f"not in the environment nor in {where}: {listed}")
    added = {secret_env_name(ref): found[(ref.name, ref.key)] for ref in missing}
    return {**added, **env}


def vault_source(path: Path, master_key: Callable[[], str]) -> SecretSource:
    """References resolved from the vault at `path` (Secret name and key as entry name and key).
    The master key is asked for only when the vault is needed and exists."""

    def lookup(refs: Sequence[SecretKeyRef]) -> tuple[Found, str]:
        if not path.exists():
            hint = "; ".join(f"etl vault set {ref.name} {ref.key}" for ref in refs)
            return {}, f"the vault (there is none at {path}: etl vault init, then {hint})"
        entries = read_vault(path, master_key())
        found = {
            (ref.name, ref.key): entries[ref.name][ref.key]
            for ref in refs
            if ref.key in entries.get(ref.name, {})
        }
        return found, f"the vault {path}"

    return lookup


def kube_source(namespace: str | None) -> SecretSource:
    """References resolved from the Secrets of the current kubeconfig context's cluster, in
    `namespace` (the pipeline's), else the context's namespace, else `default`. The kubernetes
    package is imported only here: the job image does not need it."""

    def lookup(refs: Sequence[SecretKeyRef]) -> tuple[Found, str]:
        try:
            from kubernetes import client, config
            from kubernetes.client.exceptions import ApiException
            from urllib3.exceptions import HTTPError
        except ImportError:
            raise ConfigurationError(
                "--kube-secrets needs the kubernetes Python package, which is not installed here"
                " (pip install kubernetes); or put the values in the vault: etl vault set NAME KEY"
            ) from None
        try:
            config.load_kube_config()
            _, context = config.list_kube_config_contexts()
        except (config.ConfigException, OSError) as failed:
            raise ConfigurationError(f"--kube-secrets: cannot load the kubeconfig: {failed}") from None
        target = namespace or context["context"].get("namespace") or "default"
        where = f"namespace {target} of kubeconfig context {context['name']}"
        core = client.CoreV1Api()
        found: Found = {}
        for name in dict.fromkeys(ref.name for ref in refs):
            try:
                data = core.read_namespaced_secret(name, target).data or {}
            except ApiException as failed:
                if failed.status == 404:
                    continue
                raise CredentialsMissing(
                    f"cannot read Secret {name} in {where}: {failed.status} {failed.reason}"
                ) from None
            except (HTTPError, OSError) as failed:
                raise SourceUnavailable(f"cannot reach the cluster of {where}: {failed}") from None
            for ref in refs:
                if ref.name == name and ref.key in data:
                    found[(name, ref.key)] = _text(base64.b64decode(data[ref.key]), ref)
        return found, where

    return lookup


def _text(value: bytes, ref: SecretKeyRef) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise CredentialsMissing(f"Secret {ref.name} key {ref.key} is not UTF-8 text") from None
