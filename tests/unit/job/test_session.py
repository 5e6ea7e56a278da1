from __future__ import annotations

from typing import Any

from etl_job.session import task_slots
from etl_job.spec import SparkResources, SparkSettings


def test_local_mode_has_a_slot_per_thread_of_the_master(spark: Any) -> None:
    assert task_slots(spark, SparkSettings()) == spark.sparkContext.defaultParallelism == 2


def test_executors_have_a_slot_per_core(spark: Any) -> None:
    settings = SparkSettings(executors=3, executor=SparkResources(cores=2))

    assert task_slots(spark, settings) == 6
