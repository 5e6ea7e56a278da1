"""The operator's only contact with the API server: read what is, create and delete run
objects, patch status, record events. Objects travel as plain JSON dicts (camelCase), as the
API returns them, so the pure modules never see client classes.

The kubernetes client is synchronous; the handlers call these functions in a thread."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from etl_job.contract import SecretKeyRef
from etl_operator.naming import executor_selector, pipeline_selector

log = logging.getLogger("etl_operator.kube")

GROUP, VERSION, PLURAL = "etl.sparkops.io", "v1alpha1", "etlpipelines"


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _finish(response: Any) -> None:
    """Read the body of an answer we do not need: with `_preload_content=False`, a connection
    goes back to the pool only once its response is read, and an unread one costs a new TLS
    handshake on the next call, on both sides."""
    response.data  # noqa: B018 - the read is the point


class OwnWrites:
    """What this operator's own writes made of its objects, so the watch events they cause can
    be told apart: such an event shows nothing the pass that wrote did not already decide on,
    and needs no pass of its own (a launch would otherwise cost three: for the new pipeline,
    for its status written back, and for the driver pod created).

    A pipeline event is one of ours when the object it shows equals what the writing pass read
    (spec, generation, uid, labels, annotations, deletion) with the status that pass's patch
    left; comparing content, not only resourceVersions, keeps a change that landed between
    the pass's read and its patch (which then may change nothing) from passing as ours. A pod
    event is one of ours when it is the ADDED event of a pod this operator created.

    The status a pass read is kept too, until its patch: a patch that would change nothing is
    not sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}
        self._pipelines: dict[tuple[str, str], bytes] = {}
        self._pods: dict[tuple[str, str], str] = {}

    def read_pipeline(self, body: Mapping[str, Any]) -> None:
        metadata = body["metadata"]
        with self._lock:
            self._read[(metadata["namespace"], metadata["name"])] = (_essence(body), body.get("status"))

    def status_unchanged(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        """Whether the status this pass read is already what `patch` would make of it."""
        with self._lock:
            read = self._read.get((namespace, name))
            if read is None or not _changes_nothing(read[1] or {}, patch):
                return False
            del self._read[(namespace, name)]
            return True

    def wrote_status(self, body: Mapping[str, Any]) -> None:
        """`body`: the pipeline as the status patch returned it."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        with self._lock:
            read = self._read.pop(key, None)
            if read is None:
                self._pipelines.pop(key, None)
            else:
                self._pipelines[key] = _digest({**read[0], "status": body.get("status")})

    def created_pod(self, body: Mapping[str, Any]) -> None:
        metadata = body["metadata"]
        with self._lock:
            self._pods[(metadata["namespace"], metadata["name"])] = str(metadata["resourceVersion"])

    def is_own_pipeline_event(self, body: Mapping[str, Any]) -> bool:
        metadata = body["metadata"]
        with self._lock:
            expected = self._pipelines.get((metadata["namespace"], metadata["name"]))
        return expected is not None and expected == _digest({**_essence(body), "status": body.get("status")})

    def is_own_pod_event(self, namespace: str, name: str, resource_version: str) -> bool:
        with self._lock:
            return self._pods.get((namespace, name)) == resource_version

    def forget_pipeline(self, namespace: str, name: str) -> None:
        with self._lock:
            self._read.pop((namespace, name), None)
            self._pipelines.pop((namespace, name), None)

    def forget_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)


def _essence(body: Mapping[str, Any]) -> dict[str, Any]:
    """Everything of a pipeline a pass decides on, except its status."""
    metadata = body["metadata"]
    return {
        "spec": body.get("spec"),
        "uid": metadata.get("uid"),
        "generation": metadata.get("generation"),
        "labels": metadata.get("labels"),
        "annotations": metadata.get("annotations"),
        "deletionTimestamp": metadata.get("deletionTimestamp"),
    }


def _changes_nothing(current: Any, patch: Any) -> bool:
    """Whether a JSON merge patch (RFC 7386) leaves `current` as it is."""
    if not isinstance(patch, Mapping):
        return bool(current == patch)
    if not isinstance(current, Mapping):
        return False
    for key, value in patch.items():
        if value is None:
            if key in current:
                return False
        elif not _changes_nothing(current.get(key), value):
            return False
    return True


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).digest()


#: The one record of this process's writes (passes of one pipeline never overlap: workqueue.py).
OWN_WRITES = OwnWrites()


def read_pipeline(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The pipeline as the API has it now, or None once it is gone."""
    try:
        body = dict(
            _json(
                client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        )
    except ApiException as failed:
        if failed.status == 404:
            OWN_WRITES.forget_pipeline(namespace, name)
            return None
        raise
    OWN_WRITES.read_pipeline(body)
    return body


def list_run_pods(api: client.ApiClient, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    """The driver pods of a pipeline's runs, read from the API (not a cache), so a decision
    never rests on a stale view."""
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=pipeline_selector(pipeline), _preload_content=False
    )
    return list(_json(response)["items"])


def list_executor_pods(api: client.ApiClient, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    """The executor pods Spark made for a pipeline's runs (labelled from the executor template)."""
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=executor_selector(pipeline), _preload_content=False
    )
    return list(_json(response)["items"])


def missing_secret_keys(api: client.ApiClient, namespace: str, refs: Sequence[SecretKeyRef]) -> list[str]:
    """A message per Secret or key that is not there. Values are read by the API call but
    never kept, logged or returned."""
    problems: list[str] = []
    secrets: dict[str, Mapping[str, Any] | None] = {}
    core = client.CoreV1Api(api)
    for ref in refs:
        if ref.name not in secrets:
            try:
                secret = _json(core.read_namespaced_secret(ref.name, namespace, _preload_content=False))
                secrets[ref.name] = {
                    key: None for key in {**secret.get("data", {}), **secret.get("stringData", {})}
                }
            except ApiException as failed:
                if failed.status != 404:
                    raise
                secrets[ref.name] = None
        keys = secrets[ref.name]
        if keys is None:
            problems.append(f"Secret {ref.name} does not exist in namespace {namespace}")
        elif ref.key not in keys:
            problems.append(f"Secret {ref.name} has no key {ref.key}")
    return sorted(set(problems))


def secret_fingerprint(api: client.ApiClient, namespace: str, refs: Sequence[SecretKeyRef]) -> str:
    """A short digest of the referenced Secrets' resourceVersions: it changes when one of them
    changes, so a streaming driver can be replaced, without keeping any value."""
    versions = []
    core = client.CoreV1Api(api)
    for name in sorted({ref.name for ref in refs}):
        try:
            secret = _json(core.read_namespaced_secret(name, namespace, _preload_content=False))
            versions.append(f"{name}={secret['metadata'].get('resourceVersion', '')}")
        except ApiException as failed:
            if failed.status != 404:
                raise
    return hashlib.sha256(",".join(versions).encode()).hexdigest()[:16] if versions else ""


def create_if_absent(api: client.ApiClient, namespace: str, manifest: Mapping[str, Any]) -> bool:
    """Create a ConfigMap, Pod or Service; False when one of that name exists (it is ours:
    names are derived from pipeline and run number)."""
    core = client.CoreV1Api(api)
    create = {
        "ConfigMap": core.create_namespaced_config_map,
        "Pod": core.create_namespaced_pod,
        "Service": core.create_namespaced_service,
    }[str(manifest["kind"])]
    try:
        response = create(namespace, manifest, _preload_content=False)
    except ApiException as failed:
        if failed.status == 409:
            return False
        raise
    if manifest["kind"] == "Pod":
        OWN_WRITES.created_pod(_json(response))
    else:
        _finish(response)
    return True


def delete_pod(api: client.ApiClient, namespace: str, name: str, grace_seconds: int = 30) -> None:
    try:
        client.CoreV1Api(api).delete_namespaced_pod(
            name, namespace, grace_period_seconds=grace_seconds, propagation_policy="Background"
        )
    except ApiException as failed:
        if failed.status != 404:
            raise


def patch_status(api: client.ApiClient, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Replace the status as a merge patch on the status subresource; spec is never written.
    A patch that changes nothing of the status this pass read is not sent (most re-checks)."""
    if OWN_WRITES.status_unchanged(namespace, name, status):
        return
    response = client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _preload_content=False
    )
    OWN_WRITES.wrote_status(_json(response))


def emit_event(
    api: client.ApiClient, pipeline: Mapping[str, Any], event_type: str, reason: str, message: str
) -> None:
    """An Event on the ETLPipeline, as `kubectl describe etlp` shows them."""
    metadata = pipeline["metadata"]
    now = datetime.now(UTC)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ETLPipeline",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "count": 1,
        "source": {"component": "sparkops-etl-operator"},
        "reportingComponent": "sparkops-etl-operator",
    }
    try:
        _finish(
            client.CoreV1Api(api).create_namespaced_event(
                metadata["namespace"], event, _preload_content=False
            )
        )
    except ApiException as failed:  # an event that cannot be recorded must not stop a run
        log.warning("cannot record event %s on %s: %s", reason, metadata["name"], failed.reason)
