"""`python -m etl_operator`: check the settings, then run the kopf operator."""

from __future__ import annotations

import os
import secrets
import sys

import kopf

from etl_operator import (
    handlers,  # noqa: F401 - registers the handlers
    logs,
)
from etl_operator.settings import SettingsError, load_settings


def replica_priority() -> int:
    """This replica's peering priority. kopf pauses every replica while two share the highest
    priority, and a Deployment's replicas are alike: each draws its own, so the highest acts
    and the others stand by until its peering record expires."""
    return secrets.randbelow(2**31 - 1) + 1


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as bad:
        print(f"etl-operator: {bad}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    # Replicas coordinate through kopf's peering object (the Helm chart creates it); without a
    # peering name the operator runs alone, and must be the only replica.
    kopf.run(
        clusterwide=settings.cluster_wide,
        namespaces=settings.watch_namespaces,
        standalone=not settings.peering_name,
        peering_name=settings.peering_name or None,
        priority=replica_priority(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
