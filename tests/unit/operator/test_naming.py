"""Run objects have stable, valid names: the same pipeline and run always give the same name."""

from __future__ import annotations

import re

from etl_operator.naming import (
    config_map_name,
    driver_pod_name,
    driver_service_name,
    pipeline_selector,
    run_labels,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_names_of_a_run() -> None:
    assert driver_pod_name("user-summary", 7) == "user-summary-run-7-driver"
    assert driver_service_name("user-summary", 7) == "user-summary-run-7-driver-svc"
    assert config_map_name("user-summary", 7) == "user-summary-run-7-config"


def test_long_pipeline_names_are_cut_with_a_stable_hash() -> None:
    long_name = "a-very-long-pipeline-name-that-goes-on-and-on-beyond-what-labels-allow"
    names = [
        driver_pod_name(long_name, 12),
        driver_service_name(long_name, 12),
        config_map_name(long_name, 12),
    ]
    assert all(len(name) <= 63 and DNS_LABEL.match(name) for name in names)
    assert driver_pod_name(long_name, 12) == driver_pod_name(long_name, 12)
    assert driver_pod_name(long_name, 12) != driver_pod_name(long_name, 13)
    assert driver_pod_name(long_name, 12) != driver_pod_name(long_name + "x", 12)


def test_labels_select_the_pipeline_runs() -> None:
    labels = run_labels("user-summary", 3, generation=2)
    assert labels["etl.sparkops.io/run"] == "3"
    assert labels["etl.sparkops.io/generation"] == "2"
    assert pipeline_selector("user-summary") == (
        "etl.sparkops.io/pipeline=user-summary,app.kubernetes.io/managed-by=sparkops-etl"
    )
