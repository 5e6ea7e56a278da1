"""The operator's only contact with the API server: read what is, create and delete run
objects, patch status, record events. Objects travel as plain JSON dicts (camelCase), as the
API returns them, so the pure modules never see client classes.

The kubernetes client is synchronous; the handlers call these functions in a thread."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from etl_job.spec import SecretKeyRef
from etl_operator.naming import pipeline_selector

log = logging.getLogger("etl_operator.kube")

GROUP, VERSION, PLURAL = "etl.sparkops.io", "v1alpha1", "etlpipelines"


def _json(response: Any) -> Any:
    return json.loads(response.data)


def read_pipeline(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The pipeline as the API has it now, or None once it is gone."""
    try:
        return dict(
            _json(
                client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        )
    except ApiException as failed:
        if failed.status == 404:
            return None
        raise


def list_run_pods(api: client.ApiClient, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    """The driver pods of a pipeline's runs, read from the API (not a cache), so a decision
    never rests on a stale view."""
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=pipeline_selector(pipeline), _preload_content=False
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
        create(namespace, manifest, _preload_content=False)
        return True
    except ApiException as failed:
        if failed.status == 409:
            return False
        raise


def delete_pod(api: client.ApiClient, namespace: str, name: str, grace_seconds: int = 30) -> None:
    try:
        client.CoreV1Api(api).delete_namespaced_pod(
            name, namespace, grace_period_seconds=grace_seconds, propagation_policy="Background"
        )
    except ApiException as failed:
        if failed.status != 404:
            raise


def patch_status(api: client.ApiClient, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Replace the status as a merge patch on the status subresource; spec is never written."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _preload_content=False
    )


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
        client.CoreV1Api(api).create_namespaced_event(metadata["namespace"], event, _preload_content=False)
    except ApiException as failed:  # an event that cannot be recorded must not stop a run
        log.warning("cannot record event %s on %s: %s", reason, metadata["name"], failed.reason)
