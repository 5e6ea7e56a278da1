"""The operator's settings come from ETL_OPERATOR_* variables; a bad one is named at start-up."""

from __future__ import annotations

import pytest

from etl_operator.settings import Settings, SettingsError, load_settings


def test_defaults_watch_the_whole_cluster() -> None:
    settings = load_settings({"PATH": "/usr/bin"})
    assert settings == Settings()
    assert settings.cluster_wide


def test_every_setting_is_read() -> None:
    settings = load_settings(
        {
            "ETL_OPERATOR_WATCH_NAMESPACES": "analytics, finance",
            "ETL_OPERATOR_JOB_IMAGE": "registry.local/etl-job:1.2.3",
            "ETL_OPERATOR_IMAGE_PULL_POLICY": "Always",
            "ETL_OPERATOR_DRIVER_SERVICE_ACCOUNT": "drivers",
            "ETL_OPERATOR_MAX_CONCURRENT_RUNS": "20",
            "ETL_OPERATOR_LOG_LEVEL": "debug",
            "ETL_OPERATOR_PEERING_NAME": "etl-prod",
            "ETL_OPERATOR_HEALTH_PORT": "9090",
        }
    )
    assert settings == Settings(
        watch_namespaces=("analytics", "finance"),
        job_image="registry.local/etl-job:1.2.3",
        image_pull_policy="Always",
        driver_service_account="drivers",
        max_concurrent_runs=20,
        log_level="DEBUG",
        peering_name="etl-prod",
        health_port=9090,
    )
    assert not settings.cluster_wide


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "ETL_OPERATOR_MAX_CONCURRENT_RUNS",
            "many",
            "ETL_OPERATOR_MAX_CONCURRENT_RUNS must be a whole number",
        ),
        ("ETL_OPERATOR_MAX_CONCURRENT_RUNS", "-1", "ETL_OPERATOR_MAX_CONCURRENT_RUNS must be at least 0"),
        ("ETL_OPERATOR_HEALTH_PORT", "70000", "ETL_OPERATOR_HEALTH_PORT must be between 1 and 65535"),
        ("ETL_OPERATOR_WATCH_NAMESPACES", "Analytics", "ETL_OPERATOR_WATCH_NAMESPACES: 'Analytics'"),
        ("ETL_OPERATOR_IMAGE_PULL_POLICY", "Sometimes", "ETL_OPERATOR_IMAGE_PULL_POLICY must be Always"),
        ("ETL_OPERATOR_LOG_LEVEL", "LOUD", "ETL_OPERATOR_LOG_LEVEL must be one of"),
        ("ETL_OPERATOR_JOB_IMAGE", " ", "ETL_OPERATOR_JOB_IMAGE must be an image reference"),
        ("ETL_OPERATOR_WATCH_NAMESPACE", "analytics", "ETL_OPERATOR_WATCH_NAMESPACE is not a setting"),
    ],
)
def test_a_bad_variable_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({variable: value})
