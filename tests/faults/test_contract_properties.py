"""Generated pipeline specs: the CRD's schema and CEL rules, served by a real kube-apiserver, and
the pydantic contract accept and refuse the same ones.

Each example starts from a valid spec of tests/contract_cases.py and makes one to three edits
drawn by hypothesis: a field set to a value seen elsewhere in a spec (so enum symbols, sinks and
sources cross over) or to an edge value, a field removed, a key of another block added, or a
block swapped for the same block of another valid spec. The API server answers a server-side
dry-run create with strict field validation, so nothing is stored and one example costs one
request."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from etl_job.contract import ETLPipeline
from etl_job.contract.base import API_GROUP, API_VERSION
from etl_job.contract.crd import CRD_NAME, PLURAL
from tests.contract_cases import INVALID_CASES, PYDANTIC_ONLY_CASES, ROOT, VALID_CASES, manifest
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.integration

Path_ = tuple[str | int, ...]

#: Edge values no spec holds: zero, negatives, out-of-range numbers, a fraction where a count is
#: wanted, empty and odd strings, empty containers.
EDGE_VALUES: list[Any] = [0, -1, 1, 65536, 2**31, 1.5, "", "x", "0 seconds", "10 minute", True, False, [], {}]


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item)
    else:
        yield node


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def _blocks(node: Any, found: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Every dict-valued field of the specs by key: what a graft may put in its place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                found.setdefault(key, []).append(value)
            _blocks(value, found)
    elif isinstance(node, list):
        for item in node:
            _blocks(item, found)
    return found


_SPECS = [spec for _, spec in VALID_CASES] + [case.spec for case in INVALID_CASES]
VOCABULARY: list[Any] = sorted(
    {json.dumps(value) for spec in _SPECS for value in _leaves(spec)}
    | {json.dumps(value) for value in EDGE_VALUES}
)
KEYS: list[str] = sorted({key for spec in _SPECS for key in _keys(spec)})
BLOCKS: dict[str, list[Any]] = {}
for _spec in _SPECS:
    _blocks(_spec, BLOCKS)
BLOCKS = {key: sorted(values, key=json.dumps) for key, values in BLOCKS.items()}


def _paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _containers(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    if isinstance(node, dict):
        yield prefix
    if isinstance(node, (dict, list)):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _containers(value, (*prefix, key))


def _at(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def edited_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = copy.deepcopy(draw(st.sampled_from([spec for _, spec in VALID_CASES])))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(spec))
        kind = draw(st.sampled_from(["set", "delete", "add", "graft"]))
        if kind == "add":
            parent = _at(spec, draw(st.sampled_from(list(_containers(spec)))))
            parent[draw(st.sampled_from(KEYS))] = json.loads(draw(st.sampled_from(VOCABULARY)))
            continue
        if not paths:
            continue
        *parents, leaf = draw(st.sampled_from(paths))
        parent = _at(spec, tuple(parents))
        if kind == "delete":
            del parent[leaf]
        elif kind == "graft" and isinstance(leaf, str) and leaf in BLOCKS:
            parent[leaf] = copy.deepcopy(draw(st.sampled_from(BLOCKS[leaf])))
        else:
            parent[leaf] = json.loads(draw(st.sampled_from(VOCABULARY)))
    return spec


@pytest.fixture(scope="module")
def etl_crd(kube_cluster: KubeCluster) -> str:
    """The committed CRD, installed and Established."""
    committed = ROOT / "crds" / f"{CRD_NAME}.yaml"
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(committed))
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


def _api_server_answer(api: Any, namespace: str, document: dict[str, Any]) -> str | None:
    """None when the API server would store the object, else its reason."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, document, dry_run="All", field_validation="Strict"
        )
    except ApiException as refused:
        if refused.status not in (400, 422):
            raise
        return str(json.loads(refused.body).get("message", refused.body))
    return None


def _contract_answer(document: dict[str, Any]) -> ValidationError | None:
    try:
        ETLPipeline.model_validate(document)
    except ValidationError as refused:
        return refused
    return None


def _without_indices(message: str) -> str:
    """A message with list positions taken out: a known gap is one wherever it stands."""
    return re.sub(r"\[[0-9]+\]", "[]", message)


_KNOWN_GAP_MESSAGES = [_without_indices(case.expected_python_message) for case in PYDANTIC_ONLY_CASES]


def _a_known_gap(refused: ValidationError) -> bool:
    """A refusal the API server cannot make (tests/contract_cases.py PYDANTIC_ONLY_CASES says
    why): `aggregations` takes a list or a map, so its CRD node has no type and no CEL rule can
    look inside; and which transforms a stream can run is decided by the contract's Python rules.
    The operator refuses these with a status condition."""
    for error in refused.errors():
        inside_aggregations = "aggregations" in [str(part) for part in error["loc"]]
        message = _without_indices(error["msg"])
        if not inside_aggregations and not any(known and known in message for known in _KNOWN_GAP_MESSAGES):
            return False
    return True


def test_the_api_server_and_the_contract_accept_and_refuse_the_same_specs(
    kube_api: Any, etl_crd: str, namespace: str
) -> None:
    seen = {"accepted": 0, "refused": 0}

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(spec=edited_specs())
    def agree(spec: dict[str, Any]) -> None:
        document = manifest("generated", namespace, spec)
        by_api = _api_server_answer(kube_api, namespace, document)
        by_contract = _contract_answer(document)
        if by_contract is not None and by_api is None and _a_known_gap(by_contract):
            return
        assert (by_api is None) == (by_contract is None), (
            f"the API server {'accepted' if by_api is None else 'refused'} and the contract "
            f"{'accepted' if by_contract is None else 'refused'} spec {json.dumps(spec)}\n"
            f"API server: {by_api}\ncontract: {by_contract}"
        )
        seen["accepted" if by_api is None else "refused"] += 1

    agree()
    # Both answers occur, so the generator does not only make specs one rule stops at once.
    assert seen["accepted"] > 0 and seen["refused"] > 0, seen
