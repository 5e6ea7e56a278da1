"""`python -m etl_job`: the `etl` command."""

from __future__ import annotations

from etl_job.cli import main

raise SystemExit(main())
