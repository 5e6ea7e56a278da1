"""Reading a streaming driver's progress: one GET of its /progress endpoint, bounded in time.

The only traffic the operator sends to a driver. Proxies from the environment are bypassed: the
driver is a pod of the cluster, reached at its own address."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("etl_operator.driver_progress")

#: A pass waits at most this long for a driver's answer.
TIMEOUT_SECONDS = 2.0

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def progress_url(pod_ip: str, port: int) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}/progress"


def fetch_progress(pod_ip: str, port: int, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any] | None:
    """The driver's report, or None when it does not answer yet (starting) or answers nonsense."""
    url = progress_url(pod_ip, port)
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            report = json.loads(response.read(65536))
    except (OSError, ValueError) as failed:  # refused, timed out, not JSON: looked at next pass
        log.debug("no progress from %s: %s", url, failed)
        return None
    return report if isinstance(report, dict) else None
