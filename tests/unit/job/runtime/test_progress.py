"""etl run's progress line on a terminal: what it says, and that it follows a real Spark job."""

from __future__ import annotations

import io
import re

from pyspark.sql import SparkSession

from etl_job.runtime.progress import StageFigures, TerminalProgress, progress_line, stage_figures


def test_the_line_names_the_newest_active_stage_the_rows_read_and_the_time() -> None:
    stages = [
        StageFigures(stage_id=0, active=False, tasks_done=4, tasks=4, input_records=1_200_000),
        StageFigures(stage_id=1, active=True, tasks_done=1, tasks=2, input_records=0),
        StageFigures(stage_id=2, active=True, tasks_done=3, tasks=8, input_records=30_500),
    ]
    assert progress_line(12.7, stages) == "stage 2: 3/8 tasks · 1,230,500 rows read · 12 s"
    assert progress_line(0.4, []) == "0 rows read · 0 s"


def test_it_follows_a_real_spark_job(spark: SparkSession) -> None:
    before = {stage.stage_id for stage in stage_figures(spark)}
    out = io.StringIO()
    with TerminalProgress(spark, stream=out, interval=0.05):
        spark.range(0, 2_000_000, numPartitions=4).selectExpr("id % 7 AS k").groupBy("k").count().collect()
    new = [stage for stage in stage_figures(spark) if stage.stage_id not in before]
    assert sum(stage.input_records for stage in new) >= 2_000_000
    assert new and not any(stage.active for stage in new)
    drawn = out.getvalue()
    assert drawn.endswith("\r\033[K")  # the line is cleared when the run ends
    assert re.search(r"rows read · \d+ s", drawn), drawn
