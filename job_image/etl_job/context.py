"""What a connector needs to know about the run it serves, besides its own spec block."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """The run's identity and surroundings, handed to every source, transform and sink."""

    pipeline: str
    spark: Any
    #: Folder of the manifest: relative paths in the spec are taken from here.
    base_dir: Path | None = None
    #: Where credentials come from (Secret values injected as env vars); never logged.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    run_id: str = "local"
