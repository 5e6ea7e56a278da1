"""The generated CRD matches the committed one, is structural, and pydantic refuses (and accepts)
the same pipeline specs the API server does (tests/contract_cases.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import pytest
import yaml
from pydantic import BaseModel, Field

from etl_job.contract import ETLPipeline, ETLPipelineSpec, JoinTransform
from etl_job.contract.crd import CRD_NAME, cel_field, crd_manifest, crd_yaml, structural_schema
from tests.contract_cases import (
    INVALID_CASES,
    PYDANTIC_ONLY_CASES,
    ROOT,
    UNQUOTED_ON_JOIN_YAML,
    VALID_CASES,
    InvalidCase,
)

COMMITTED_CRD = ROOT / "crds" / f"{CRD_NAME}.yaml"


def _version() -> dict[str, Any]:
    version: dict[str, Any] = crd_manifest()["spec"]["versions"][0]
    return version


def _schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under node (itself included) with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}{{}}")


def _all_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from _all_keys(child)
    elif isinstance(value, list):
        for child in value:
            yield from _all_keys(child)


# --- the CRD ---------------------------------------------------------------------------------


def test_committed_crd_is_what_the_models_generate() -> None:
    assert COMMITTED_CRD.read_text() == crd_yaml(), (
        f"{COMMITTED_CRD.relative_to(ROOT)} is out of date with job_image/etl_job/contract/: run `make crds`"
    )


def test_crd_yaml_is_stable_and_says_it_is_generated() -> None:
    text = crd_yaml()
    header = text.split("apiVersion:")[0]
    assert text == crd_yaml()
    assert all(line.startswith("#") for line in header.splitlines())
    assert "etl crd" in header and "make crds" in header and "not edit" in header.lower()
    assert yaml.safe_load(text) == crd_manifest()


def test_no_ref_and_no_pydantic_only_keywords_anywhere() -> None:
    keys = set(_all_keys(crd_manifest()))
    assert not keys & {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "const",
        "title",
        "default",
        "discriminator",
    }
    assert not any(key.startswith("x-etl-") for key in keys)


def test_every_schema_node_is_structural() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    untyped = []
    for path, node in _schema_nodes(root):
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            untyped.append(path or "<root>")
        assert node.get("additionalProperties") is not False, path
        if node.get("type") == "array":
            assert "items" in node, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
    assert not untyped, f"schema nodes without a type: {untyped}"


def test_map_form_nodes_keep_unknown_fields_and_check_both_forms() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    aggregations = spec["properties"]["transforms"]["items"]["properties"]["aggregations"]
    assert "type" not in aggregations
    assert aggregations["x-kubernetes-preserve-unknown-fields"] is True
    assert (
        aggregations["items"]["properties"]["function"]["enum"]
        == aggregations["additionalProperties"]["enum"]
    )
    assert "map form" in aggregations["description"]


def test_discriminated_unions_become_one_object_with_rules() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    extract = spec["properties"]["extract"]
    assert extract["type"] == "object"
    assert extract["required"] == ["sourceType"]
    assert extract["properties"]["sourceType"]["enum"] == ["S3", "PostgreSQL", "MySQL", "Kafka"]
    rules = {rule["rule"]: rule for rule in extract["x-kubernetes-validations"]}
    assert rules["self.sourceType != 'Kafka' || has(self.topic)"]["fieldPath"] == ".topic"
    assert any(
        rule.startswith("self.sourceType == 'Kafka' || (") and "!has(self.topic)" in rule for rule in rules
    )
    assert "!(self.sourceType in ['PostgreSQL', 'MySQL']) || (has(self.table) != has(self.query))" in rules


def test_cel_reserved_words_are_escaped() -> None:
    assert cel_field("true") == "__true__"
    assert cel_field("in") == "__in__"
    assert cel_field("as") == "__as__"
    assert cel_field("sourceType") == "sourceType"
    assert cel_field("a.b-c/d__e") == "a__dot__b__dash__c__slash__d__underscores__e"
    transforms = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["transforms"]
    assert "true" in transforms["items"]["properties"], 'an unquoted `on:` key arrives as "true"'
    rules = json.dumps(transforms["items"]["x-kubernetes-validations"])
    assert "self.__true__" in rules and "self.true" not in rules


def test_names_short_name_status_and_printer_columns() -> None:
    manifest = crd_manifest()
    names = manifest["spec"]["names"]
    assert manifest["metadata"]["name"] == "etlpipelines.etl.sparkops.io"
    assert (names["kind"], names["plural"], names["singular"]) == (
        "ETLPipeline",
        "etlpipelines",
        "etlpipeline",
    )
    assert names["shortNames"] == ["etlp"] and names["categories"] == ["etl"]
    assert manifest["spec"]["scope"] == "Namespaced"
    version = _version()
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["jsonPath"], c["type"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Mode": (".spec.mode", "string"),
        "Phase": (".status.phase", "string"),
        "Circuit": (".status.circuit.state", "string"),
        "Last run": (".status.lastRun.endTime", "date"),
        "Records loaded": (".status.lastRun.metrics.recordsLoaded", "integer"),
        "Age": (".metadata.creationTimestamp", "date"),
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert (
        status["properties"]["lastRun"]["properties"]["metrics"]["properties"]["recordsLoaded"]["type"]
        == "integer"
    )


class _Bounded(BaseModel):
    ratio: float = Field(gt=0, lt=1)
    label: Literal["a"] = "a"


class _Left(BaseModel):
    kind: Literal["left"]
    size: int


class _Right(BaseModel):
    kind: Literal["right"]
    size: str


class _Clashing(BaseModel):
    side: _Left | _Right = Field(discriminator="kind")


class _Ambiguous(BaseModel):
    value: int | str


def test_exclusive_bounds_take_the_openapi_v3_0_form_and_const_becomes_an_enum() -> None:
    schema = structural_schema(_Bounded)

    assert schema["properties"]["ratio"] == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "exclusiveMaximum": True,
    }
    assert schema["properties"]["label"] == {"type": "string", "enum": ["a"]}


def test_union_variants_that_disagree_on_a_type_fail_loudly() -> None:
    with pytest.raises(ValueError, match="disagree on the type of 'size'"):
        structural_schema(_Clashing)


def test_unions_that_are_not_optional_or_discriminated_fail_loudly() -> None:
    with pytest.raises(ValueError, match="only Optional"):
        structural_schema(_Ambiguous)


# --- pydantic refuses and accepts what the API server does -------------------------------------


def _discriminator_tags() -> set[str]:
    """Union tags pydantic puts into error locations ("extract", "Kafka", "topic")."""
    text = json.dumps(ETLPipelineSpec.model_json_schema(by_alias=True))
    return {
        tag
        for mapping in re.findall(r'"mapping": \{([^}]*)\}', text)
        for tag in re.findall(r'"(\w+)": "#', mapping)
    }


_TAGS = _discriminator_tags()


def _tokens(path: str) -> list[str]:
    return re.findall(r"[^.\[\]]+", path)


def _error_path(loc: tuple[int | str, ...]) -> list[str]:
    return ["spec", *(str(part) for part in loc if not (isinstance(part, str) and part in _TAGS))]


def _names_the_field(error: Any, case: InvalidCase) -> bool:
    located, expected = _error_path(error["loc"]), _tokens(case.field)
    on_the_path = located == expected[: len(located)] or expected == located[: len(expected)]
    leaf = next(token for token in reversed(expected) if not token.isdigit())
    mentioned = leaf in " ".join([*located, error["msg"], repr(error.get("input"))])
    return on_the_path and mentioned


def _refused(spec: dict[str, Any]) -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as refused:
        ETLPipelineSpec.model_validate(spec)
    return refused.value


@pytest.mark.parametrize("case", INVALID_CASES + PYDANTIC_ONLY_CASES, ids=lambda case: case.id)
def test_pydantic_refuses_the_invalid_case_naming_the_field(case: InvalidCase) -> None:
    refused = _refused(case.spec)

    assert any(_names_the_field(error, case) for error in refused.errors()), (
        f"no error names {case.field}: {refused}"
    )
    assert case.expected_python_message in str(refused)


def test_there_are_enough_invalid_cases_and_their_ids_are_unique() -> None:
    ids = [case.id for case in INVALID_CASES + PYDANTIC_ONLY_CASES]
    assert len(INVALID_CASES) >= 18
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("name", "spec"), VALID_CASES, ids=[name for name, _ in VALID_CASES])
def test_pydantic_accepts_the_valid_case(name: str, spec: dict[str, Any]) -> None:
    ETLPipelineSpec.model_validate(spec)


def test_pydantic_reads_an_unquoted_on_key_as_on() -> None:
    document = yaml.safe_load(UNQUOTED_ON_JOIN_YAML.format(namespace="analytics"))
    join = document["spec"]["transforms"][0]
    assert True in join, "PyYAML reads an unquoted on: as the boolean true, as kubectl does"

    join = ETLPipeline.model_validate(document).spec.transforms[0]

    assert isinstance(join, JoinTransform)
    assert join.on == ["user_id"]
