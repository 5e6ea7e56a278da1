"""Credentials: Secret keys reach the driver as env vars, named from the reference alone.

The operator renders one `secretKeyRef` env var per Secret key the spec names; the job finds the
value under the same name. Values are returned to connectors and never logged or put in errors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from etl_job.contract.connections import SecretKeyRef
from etl_job.contract.errors import CredentialsMissing

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def secret_env_name(ref: SecretKeyRef) -> str:
    """The env var holding a Secret key's value in the driver: `ETL_SECRET_<NAME>_<KEY>_<HASH>`.

    Name and key are upper-cased with runs of other characters as `_`, which alone would merge
    `a-b`/`c` with `a`/`b-c` and `Password` with `password`; the hash of the exact name and key
    keeps distinct references distinct."""
    readable = _NOT_ALNUM.sub("_", f"{ref.name}_{ref.key}").strip("_").upper()
    digest = hashlib.sha256(f"{ref.name}\0{ref.key}".encode()).hexdigest()[:8].upper()
    return f"ETL_SECRET_{readable}_{digest}"


def secret_value(ref: SecretKeyRef, env: Mapping[str, str], *, stage: str, field: str) -> str:
    """The value of a Secret key, or CredentialsMissing naming the Secret, key and env var."""
    name = secret_env_name(ref)
    value = env.get(name)
    if value is None:
        raise CredentialsMissing(
            f"Secret {ref.name} key {ref.key} is not in the environment (expected as {name})",
            stage=stage,
            field=field,
        )
    return value
