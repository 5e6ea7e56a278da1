"""Spark references to top-level columns by their exact names."""

from __future__ import annotations

from typing import Any


def named_column(name: str) -> Any:
    """The top-level column called exactly `name`: a dot or a backtick in it is part of the name,
    not a path into a struct."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")
