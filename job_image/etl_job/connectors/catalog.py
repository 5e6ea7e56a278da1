"""Importing this module registers every connector with the source and sink registries."""

from __future__ import annotations

from etl_job.connectors.files import sink, source
from etl_job.connectors.jdbc import connector as jdbc
from etl_job.connectors.kafka import connector as kafka

__all__ = ["jdbc", "kafka", "sink", "source"]
