"""Importing this module registers every connector with the source and sink registries."""

from __future__ import annotations

from etl_job import jdbc, kafka_io, sinks, sources

__all__ = ["jdbc", "kafka_io", "sinks", "sources"]
