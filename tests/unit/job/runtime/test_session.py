from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from etl_job.contract import SparkResources, SparkSettings
from etl_job.runtime.session import MIN_SPLITS, session_conf, size_file_splits, task_slots


@pytest.fixture
def split_setting(spark: Any) -> Iterator[Any]:
    """The shared test session, with the file-split setting restored after the test."""
    before = spark.conf.get(MIN_SPLITS, None)
    yield spark
    if before is None:
        spark.conf.unset(MIN_SPLITS)
    else:
        spark.conf.set(MIN_SPLITS, before)


def test_local_mode_has_a_slot_per_thread_of_the_master(spark: Any) -> None:
    assert task_slots(spark, SparkSettings()) == spark.sparkContext.defaultParallelism == 2


def test_executors_have_a_slot_per_core(spark: Any) -> None:
    settings = SparkSettings(executors=3, executor=SparkResources(cores=2))

    assert task_slots(spark, settings) == 6


def test_file_reads_get_three_splits_per_slot(split_setting: Any) -> None:
    size_file_splits(split_setting, SparkSettings())

    assert split_setting.conf.get(MIN_SPLITS) == "6"


def test_the_spec_keeps_its_own_split_setting(split_setting: Any) -> None:
    split_setting.conf.set(MIN_SPLITS, "40")

    size_file_splits(split_setting, SparkSettings(conf={MIN_SPLITS: "40"}))

    assert split_setting.conf.get(MIN_SPLITS) == "40"


def test_the_job_session_captures_no_python_call_sites_unless_the_spec_asks() -> None:
    debugging = "spark.python.sql.dataFrameDebugging.enabled"

    assert session_conf(SparkSettings())[debugging] == "false"
    assert session_conf(SparkSettings(conf={debugging: "true"}))[debugging] == "true"


def test_connector_jars_join_the_driver_class_path() -> None:
    assert session_conf(SparkSettings(), jars="/jars/a.jar:/jars/b.jar")["spark.driver.extraClassPath"] == (
        "/jars/a.jar:/jars/b.jar"
    )
    assert "spark.driver.extraClassPath" not in session_conf(SparkSettings())
