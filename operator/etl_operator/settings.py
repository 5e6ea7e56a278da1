"""The operator's settings: one typed object, read from ETL_OPERATOR_* environment variables and
checked at start-up, so a bad value stops the operator with the variable named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "ETL_OPERATOR_"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """An environment variable of the operator has a value it cannot use."""


@dataclass(frozen=True)
class Settings:
    #: Namespaces to watch; empty: the whole cluster. ETL_OPERATOR_WATCH_NAMESPACES="a,b".
    watch_namespaces: tuple[str, ...] = ()
    #: Job image for pipelines that name none. ETL_OPERATOR_JOB_IMAGE.
    job_image: str = "ghcr.io/sparkops/etl-job:0.1.0"
    #: Image pull policy of driver pods. ETL_OPERATOR_IMAGE_PULL_POLICY.
    image_pull_policy: str = "IfNotPresent"
    #: ServiceAccount of driver pods for pipelines that name none. ETL_OPERATOR_DRIVER_SERVICE_ACCOUNT.
    driver_service_account: str = "spark-driver"
    #: Runs active at once across all pipelines; 0: no limit. ETL_OPERATOR_MAX_CONCURRENT_RUNS.
    max_concurrent_runs: int = 0
    #: ETL_OPERATOR_LOG_LEVEL.
    log_level: str = "INFO"
    #: json or text; empty: text on a terminal, JSON elsewhere (a pod). ETL_OPERATOR_LOG_FORMAT.
    log_format: str = ""
    #: Name of the peering object shared by the replicas. ETL_OPERATOR_PEERING_NAME.
    peering_name: str = "sparkops-etl"
    #: Port of /healthz and /readyz. ETL_OPERATOR_HEALTH_PORT.
    health_port: int = 8080
    #: How often a running streaming driver's Secrets are looked at for a rotation, in seconds.
    #: ETL_OPERATOR_SECRETS_RECHECK_SECONDS.
    secrets_recheck_seconds: int = 60

    @property
    def cluster_wide(self) -> bool:
        return not self.watch_namespaces


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment; raises SettingsError naming the first bad variable."""
    values = {key[len(PREFIX) :]: value for key, value in environ.items() if key.startswith(PREFIX)}
    known = {
        "WATCH_NAMESPACES", "JOB_IMAGE", "IMAGE_PULL_POLICY", "DRIVER_SERVICE_ACCOUNT",
        "MAX_CONCURRENT_RUNS", "LOG_LEVEL", "LOG_FORMAT", "PEERING_NAME", "HEALTH_PORT",
        "SECRETS_RECHECK_SECONDS",
    }  # fmt: skip
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(
            f"{PREFIX}{unknown[0]} is not a setting of the operator (known: {', '.join(sorted(known))})"
        )
    defaults = Settings()
    namespaces = tuple(part.strip() for part in values.get("WATCH_NAMESPACES", "").split(",") if part.strip())
    for namespace in namespaces:
        if not _DNS_LABEL.match(namespace):
            raise SettingsError(f"{PREFIX}WATCH_NAMESPACES: {namespace!r} is not a namespace name")
    pull_policy = values.get("IMAGE_PULL_POLICY", defaults.image_pull_policy)
    if pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise SettingsError(
            f"{PREFIX}IMAGE_PULL_POLICY must be Always, IfNotPresent or Never, not {pull_policy!r}"
        )
    log_level = values.get("LOG_LEVEL", defaults.log_level).upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"{PREFIX}LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}")
    log_format = values.get("LOG_FORMAT", defaults.log_format).strip().lower()
    if log_format not in ("", "json", "text"):
        raise SettingsError(f"{PREFIX}LOG_FORMAT must be json or text, not {log_format!r}")
    image = values.get("JOB_IMAGE", defaults.job_image).strip()
    if not image or " " in image:
        raise SettingsError(f"{PREFIX}JOB_IMAGE must be an image reference, not {image!r}")
    return Settings(
        watch_namespaces=namespaces,
        job_image=image,
        image_pull_policy=pull_policy,
        driver_service_account=values.get("DRIVER_SERVICE_ACCOUNT", defaults.driver_service_account),
        max_concurrent_runs=_integer(values, "MAX_CONCURRENT_RUNS", defaults.max_concurrent_runs, minimum=0),
        log_level=log_level,
        log_format=log_format,
        peering_name=values.get("PEERING_NAME", defaults.peering_name),
        health_port=_integer(values, "HEALTH_PORT", defaults.health_port, minimum=1, maximum=65535),
        secrets_recheck_seconds=_integer(
            values, "SECRETS_RECHECK_SECONDS", defaults.secrets_recheck_seconds, minimum=1
        ),
    )


def _integer(
    values: Mapping[str, str], key: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    if key not in values:
        return default
    try:
        number = int(values[key])
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be a whole number, not {values[key]!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError(f"{PREFIX}{key} must be {bound}, not {number}")
    return number
