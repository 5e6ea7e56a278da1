"""The kopf handlers, kept thin: every event about a pipeline or one of its driver pods asks
the work queue for a pass over that pipeline; the pass (sync.py) reads what the API says now
and decides with reconcile(). Nothing is decided from the event's copy of an object."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client, config

from etl_operator.capacity import RunSlots, pod_alive
from etl_operator.kube_io import OWN_WRITES
from etl_operator.metrics import CONTENT_TYPE_LATEST, OperatorMetrics
from etl_operator.naming import LABEL_MANAGED_BY, MANAGED_BY
from etl_operator.render import OperatorDefaults
from etl_operator.settings import Settings, load_settings
from etl_operator.sync import sync_pipeline
from etl_operator.workqueue import WorkQueue

log = logging.getLogger("etl_operator")

#: Passes run side by side, each in a thread of its own: a pass mostly waits for the API server.
PASS_WORKERS = 8


def api_client(connections: int = PASS_WORKERS) -> client.ApiClient:
    """In a pod, the ServiceAccount; elsewhere, the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    # A connection kept per thread: with fewer, threads open extra ones, each a TLS handshake.
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: every handler here is a `kopf.on.event` handler, which needs no diff of
    the object, while kopf's own base deep-copies each object on every event (a third of the
    operator's CPU in a burst of launches)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def operator_defaults(settings: Settings) -> OperatorDefaults:
    return OperatorDefaults(
        job_image=settings.job_image,
        service_account=settings.driver_service_account,
        image_pull_policy=settings.image_pull_policy,
    )


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings = load_settings(os.environ)
    # Events are recorded by the operator itself (reconcile decides them), not from log lines.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.persistence.diffbase_storage = NoDiffBase()
    # Only driver pods reach the operator: other pods of the namespace (Spark's executors among
    # them) are filtered out by the API server, not parsed and dropped here.
    settings.watching.label_selectors["v1", "pods"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    if not log.isEnabledFor(logging.DEBUG):
        # kopf logs each handler call at INFO: a line per pod and pipeline event says nothing
        # the passes do not, and costs CPU in a burst; its warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if not operator_settings.cluster_wide:
        # The watched namespaces are exact names: nothing to discover, and the namespaced RBAC
        # grants no cluster-wide namespace listing (kopf would retry it for a minute at start-up).
        settings.scanning.disabled = True
    api = api_client(PASS_WORKERS)
    # Its own threads: asyncio's default executor has only cores + 4 of them.
    executor = ThreadPoolExecutor(PASS_WORKERS, thread_name_prefix="etl-pass")
    memo["executor"] = executor
    defaults = operator_defaults(operator_settings)
    rng = random.Random()
    slots = RunSlots(operator_settings.max_concurrent_runs)
    memo["slots"] = slots
    metrics = OperatorMetrics()
    memo["metrics"] = metrics

    def timed_pass(namespace: str, name: str) -> float | None:
        with metrics.reconcile_duration.time():
            return sync_pipeline(
                api,
                defaults,
                namespace,
                name,
                datetime.now(UTC),
                rng,
                slots,
                operator_settings.secrets_recheck_seconds,
                metrics,
            ).requeue_after

    async def process(key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        namespace, name = str(key[0]), str(key[1])
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(timed_pass, namespace, name)
        )

    queue = WorkQueue(process, workers=PASS_WORKERS)
    memo["queue"] = queue
    memo["queue_task"] = asyncio.create_task(queue.run())
    memo["health"] = await start_health_server(operator_settings.health_port, memo)
    log.info(
        "watching %s with job image %s",
        ", ".join(operator_settings.watch_namespaces) or "the whole cluster",
        operator_settings.job_image,
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("queue_task")
    if task is not None:
        task.cancel()
    runner = memo.get("health")
    if runner is not None:
        await runner.cleanup()
    executor = memo.get("executor")
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)


@kopf.on.event("etl.sparkops.io", "v1alpha1", "etlpipelines")
async def pipeline_changed(
    type: str, event: kopf.RawEvent, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    if not namespace:
        return
    if type == "DELETED":
        OWN_WRITES.forget_pipeline(namespace, name)
        return
    shown = event["object"]
    memo["queue"].add((namespace, name), moot=lambda: OWN_WRITES.is_own_pipeline_event(shown))


@kopf.on.event("", "v1", "pods", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def driver_pod_changed(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    alive = pod_alive(body.status.get("phase"), deleted=type == "DELETED")
    for waiting in memo["slots"].observe(f"{namespace}/{name}", alive):
        memo["queue"].add(waiting)
    if type == "DELETED":
        OWN_WRITES.forget_pod(str(namespace), name)
    version = str(body.metadata.get("resourceVersion"))
    for owner in body.metadata.get("ownerReferences") or []:
        if owner.get("kind") == "ETLPipeline":
            memo["queue"].add(
                (namespace, owner["name"]),
                moot=lambda: OWN_WRITES.is_own_pod_event(str(namespace), name, version),
            )


async def start_health_server(port: int, memo: kopf.Memo) -> web.AppRunner:
    """/healthz: the event loop answers; /readyz: the work queue is running; /metrics: Prometheus."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        task = memo.get("queue_task")
        if task is None or task.done():
            return web.Response(status=503, text="work queue not running")
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=memo["metrics"].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
