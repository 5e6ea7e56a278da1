"""The ETLPipeline CustomResourceDefinition, generated from the pipeline contract's pydantic models.

pydantic writes JSON Schema; the API server wants a *structural* OpenAPI v3.0 schema. This module
translates one into the other: `$ref`s inlined, Optional collapsed, `const` as a one-value `enum`,
numeric exclusive bounds in the OpenAPI v3.0 form, defaults left to pydantic (so the API server
never writes them into stored objects), and each discriminated union turned into one object with
the properties of every variant plus generated CEL rules that hold the variants apart.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from etl_job.contract.base import API_GROUP, API_VERSION, KIND
from etl_job.contract.pipeline import ETLPipelineSpec
from etl_job.contract.status import ETLPipelineStatus

Schema = dict[str, Any]

PLURAL = "etlpipelines"
SINGULAR = "etlpipeline"
SHORT_NAMES = ["etlp"]
CATEGORIES = ["etl"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"

HEADER = (
    "# The ETLPipeline CustomResourceDefinition, generated from the pydantic models in\n"
    "# job_image/etl_job/spec.py by `etl crd` (`make crds`). Do not edit it by hand: change the\n"
    "# models and run `make crds`; a test fails when this file and the models disagree.\n"
)

PRINTER_COLUMNS: list[dict[str, str]] = [
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "description": "batch or streaming."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the pipeline."},
    {
        "name": "Circuit",
        "type": "string",
        "jsonPath": ".status.circuit.state",
        "description": "Circuit breaker state: Closed, Open or HalfOpen.",
    },
    {
        "name": "Last run",
        "type": "date",
        "jsonPath": ".status.lastRun.endTime",
        "description": "When the last run ended.",
    },
    {
        "name": "Records loaded",
        "type": "integer",
        "jsonPath": ".status.lastRun.metrics.recordsLoaded",
        "description": "Records the last run loaded into the sink.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

#: JSON Schema keywords that carry over unchanged into the CRD schema.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "enum",
        "required",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "x-kubernetes-validations",
    }
)
#: Keywords that only pydantic acts on: defaults stay out of stored objects; the API server
#: refuses unknown fields through strict field validation, not through additionalProperties.
_DROPPED_KEYWORDS = frozenset({"title", "default", "discriminator", "examples"})

_PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"
_MAP_FORM = "x-etl-map-form"

#: CEL reserved words; a property with one of these names is `__<word>__` in a rule.
_CEL_RESERVED = frozenset(
    [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)
_CEL_IDENTIFIER = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")


# --- public API -------------------------------------------------------------------------------


def crd_manifest() -> dict[str, Any]:
    """The ETLPipeline CustomResourceDefinition as a plain dict (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": resource_schema()},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: anchors and aliases would only confuse readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    """The CRD as stable YAML with a do-not-edit header: what crds/ holds."""
    body = yaml.dump(crd_manifest(), Dumper=_Dumper, sort_keys=True, width=100, allow_unicode=True)
    return HEADER + body


def resource_schema() -> Schema:
    """The schema of a whole ETLPipeline object: spec and status from the models."""
    return {
        "type": "object",
        "description": "A Spark ETL pipeline: where data comes from, what happens to it, where it goes.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(ETLPipelineSpec),
            "status": structural_schema(ETLPipelineStatus),
        },
    }


def structural_schema(model: type[BaseModel]) -> Schema:
    """A model's JSON Schema as a Kubernetes structural schema, with no `$ref` left in it."""
    raw = model.model_json_schema(by_alias=True)
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions)


def cel_field(name: str) -> str:
    """A property name as CEL sees it (Kubernetes' CEL escaping rules)."""
    if not _CEL_IDENTIFIER.match(name):
        raise ValueError(f"property {name!r} cannot be reached from a CEL rule")
    if name in _CEL_RESERVED:
        return f"__{name}__"
    escaped = name.replace("__", "__underscores__")
    for char, word in ((".", "dot"), ("-", "dash"), ("/", "slash")):
        escaped = escaped.replace(char, f"__{word}__")
    return escaped


# --- JSON Schema -> structural schema -------------------------------------------------------


def _convert(node: Schema, definitions: Mapping[str, Schema]) -> Schema:
    node = _resolve(node, definitions)
    if "oneOf" in node:
        return _merge_union(node, definitions)
    if node.get(_MAP_FORM):
        return _map_form(node, definitions)
    converted: Schema = {}
    for key, value in node.items():
        converted.update(_convert_keyword(key, value, definitions))
    _check_fieldpaths(converted)
    return converted


def _resolve(node: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """Inline a `$ref` (its siblings win) and collapse `anyOf [X, null]` into X."""
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, definitions)
    if "anyOf" in node:
        choices = [choice for choice in node["anyOf"] if choice != {"type": "null"}]
        if len(choices) != 1 or len(node["anyOf"]) != 2:
            raise ValueError(f"only Optional[X] unions can be made structural, not {node['anyOf']}")
        siblings = {k: v for k, v in node.items() if k != "anyOf"}
        return _resolve({**_resolve(choices[0], definitions), **siblings}, definitions)
    return node


def _convert_keyword(key: str, value: Any, definitions: Mapping[str, Schema]) -> Schema:
    if key in _DROPPED_KEYWORDS or (key == "additionalProperties" and value is False):
        return {}
    if key == "additionalProperties" and value is True:
        return {_PRESERVE_UNKNOWN: True}
    if key == "additionalProperties":
        return {key: _convert(value, definitions)}
    if key == "properties":
        return {key: {name: _convert(prop, definitions) for name, prop in value.items()}}
    if key == "items":
        return {key: _convert(value, definitions)}
    if key == "const":
        return {"enum": [value]}
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        bound = "minimum" if key == "exclusiveMinimum" else "maximum"
        return {bound: value, key: True}
    if key == "description":
        return {key: " ".join(value.split())}
    if key in _KEPT_KEYWORDS:
        return {key: copy.deepcopy(value)}
    raise ValueError(f"JSON Schema keyword {key!r} has no structural translation")


def _check_fieldpaths(node: Schema) -> None:
    for rule in node.get("x-kubernetes-validations", ()):
        path = rule.get("fieldPath")
        if path is not None and not path.startswith((".", "[")):
            raise ValueError(f"fieldPath {path!r} of rule {rule['rule']!r} must start with '.'")


def _map_form(node: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """A list of objects that may also be written as a map {<key property>: <value property>}.

    No structural type covers both forms, so the node keeps unknown fields and has no type;
    `items` checks the list form and `additionalProperties` the map form's values (each applies
    only to a value of its own JSON type). CEL rules cannot see such a node: pydantic checks it.
    """
    items = _convert(node["items"], definitions)
    key_name, value_name = items["required"][:2]
    value_schema = {k: v for k, v in items["properties"][value_name].items() if k != "description"}
    forms = (
        f"Either a list of objects ({', '.join(items['properties'])}) or the short map form"
        f" {{<{key_name}>: <{value_name}>}}."
    )
    description = " ".join(part for part in (node.get("description"), forms) if part)
    converted: Schema = {
        "description": description,
        _PRESERVE_UNKNOWN: True,
        "items": items,
        "additionalProperties": value_schema,
    }
    if "minItems" in node:
        converted.update(minItems=node["minItems"], minProperties=node["minItems"])
    return converted


# --- discriminated unions -------------------------------------------------------------------


def _merge_union(node: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """One object with every variant's properties; CEL rules stand in for the variants' shapes."""
    discriminator = node["discriminator"]["propertyName"]
    variants = [_convert(variant, definitions) for variant in node["oneOf"]]
    tags = [list(v["properties"][discriminator]["enum"]) for v in variants]
    properties = _merged_properties(variants, tags)
    rules = _union_rules(variants, tags, discriminator, properties)
    description = " ".join(
        part for part in (node.get("description"), _union_description(variants, tags, discriminator)) if part
    )
    return {
        "type": "object",
        "description": description,
        "required": [discriminator],
        "properties": properties,
        "x-kubernetes-validations": rules,
    }


def _union_description(variants: list[Schema], tags: list[list[str]], discriminator: str) -> str:
    kinds = ", ".join(tag for variant_tags in tags for tag in variant_tags)
    described = [
        f"{', '.join(variant_tags)}: {variant['description']}"
        for variant, variant_tags in zip(variants, tags, strict=True)
        if variant.get("description")
    ]
    return " ".join([f"{discriminator} picks the kind: {kinds}.", *described])


def _merged_properties(variants: list[Schema], tags: list[list[str]]) -> Schema:
    """Every variant's properties; the discriminator's enum becomes the union of all tags."""
    names = _unique(name for variant in variants for name in variant["properties"])
    merged: Schema = {}
    for name in names:
        owners = [
            (t, v["properties"][name]) for v, t in zip(variants, tags, strict=True) if name in v["properties"]
        ]
        merged[name] = _merge_property(name, owners)
    return merged


def _merge_property(name: str, owners: list[tuple[list[str], Schema]]) -> Schema:
    """Same-named properties of several variants: one schema, or a loud error if they clash."""
    types = {schema.get("type") for _, schema in owners}
    if len(types) != 1:
        raise ValueError(f"union variants disagree on the type of {name!r}: {sorted(map(str, types))}")
    first = owners[0][1]
    merged = {k: v for k, v in first.items() if k not in ("description", "enum")}
    untyped = first.get(_PRESERVE_UNKNOWN, False)
    for _, schema in owners[1:]:
        rest = {k: v for k, v in schema.items() if k not in ("description", "enum")}
        if rest != merged:
            if not untyped:
                raise ValueError(f"union variants disagree on the schema of {name!r}: {merged} != {rest}")
            # Bounds no CEL rule can see: keep only what every variant shares; pydantic checks the rest.
            merged = {k: v for k, v in merged.items() if rest.get(k) == v}
    enums = [schema.get("enum") for _, schema in owners]
    if all(enum is not None for enum in enums):
        merged["enum"] = _unique(value for enum in enums for value in enum or ())
    description = _merged_description(owners)
    return {"description": description, **merged} if description else merged


def _merged_description(owners: list[tuple[list[str], Schema]]) -> str | None:
    described = [(tags, schema["description"]) for tags, schema in owners if schema.get("description")]
    if not described:
        return None
    if len({text for _, text in described}) == 1 and len(described) == len(owners):
        return str(described[0][1])
    return " ".join(f"{', '.join(tags)}: {text}" for tags, text in described)


def _union_rules(
    variants: list[Schema], tags: list[list[str]], discriminator: str, properties: Schema
) -> list[dict[str, str]]:
    rules: list[dict[str, str]] = []
    for variant, variant_tags in zip(variants, tags, strict=True):
        rules += _required_rules(variant, variant_tags, discriminator)
        rules += _enum_rules(variant, variant_tags, discriminator, properties)
        rules += _variant_own_rules(variant, variant_tags, discriminator)
    rules += _exclusive_rules(variants, tags, discriminator, properties)
    return rules


def _is_tag(discriminator: str, tags: list[str]) -> str:
    field = f"self.{cel_field(discriminator)}"
    if len(tags) == 1:
        return f"{field} == {_cel_string(tags[0])}"
    return f"{field} in [{', '.join(map(_cel_string, tags))}]"


def _unless_tag(discriminator: str, tags: list[str]) -> str:
    field = f"self.{cel_field(discriminator)}"
    if len(tags) == 1:
        return f"{field} != {_cel_string(tags[0])}"
    return f"!({_is_tag(discriminator, tags)})"


def _required_rules(variant: Schema, tags: list[str], discriminator: str) -> list[dict[str, str]]:
    """`required` of a variant, one rule a field so the error names the missing field."""
    return [
        {
            "rule": f"{_unless_tag(discriminator, tags)} || has(self.{cel_field(name)})",
            "message": f"{discriminator} {' or '.join(tags)} needs {name}",
            "fieldPath": f".{name}",
            "reason": "FieldValueRequired",
        }
        for name in variant.get("required", ())
        if name != discriminator and _cel_visible(variant["properties"][name])
    ]


def _enum_rules(
    variant: Schema, tags: list[str], discriminator: str, properties: Schema
) -> list[dict[str, str]]:
    """A variant that allows fewer values of a shared property than the merged enum."""
    rules = []
    for name, schema in variant["properties"].items():
        allowed = schema.get("enum")
        if name == discriminator or allowed is None or allowed == properties[name].get("enum"):
            continue
        field = f"self.{cel_field(name)}"
        rules.append(
            {
                "rule": f"{_unless_tag(discriminator, tags)} || !has({field}) || {field} in"
                f" [{', '.join(map(_cel_string, allowed))}]",
                "message": f"{discriminator} {' or '.join(tags)} takes {name} {' or '.join(allowed)}",
                "fieldPath": f".{name}",
            }
        )
    return rules


def _variant_own_rules(variant: Schema, tags: list[str], discriminator: str) -> list[dict[str, str]]:
    """A variant's own rules, applied only when the object is that variant."""
    return [
        {**rule, "rule": f"{_unless_tag(discriminator, tags)} || ({rule['rule']})"}
        for rule in variant.get("x-kubernetes-validations", ())
    ]


def _exclusive_rules(
    variants: list[Schema], tags: list[list[str]], discriminator: str, properties: Schema
) -> list[dict[str, str]]:
    """Refuse properties of other variants, one rule per group of properties with the same owners."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in properties:
        owners = tuple(
            tag
            for variant, variant_tags in zip(variants, tags, strict=True)
            if name in variant["properties"]
            for tag in variant_tags
        )
        if len(owners) < sum(map(len, tags)) and _cel_visible(properties[name]):
            groups.setdefault(owners, []).append(name)
    rules = []
    for owners, names in groups.items():
        absent = " && ".join(f"!has(self.{cel_field(name)})" for name in names)
        verb = "is" if len(names) == 1 else "are"
        rule = {
            "rule": f"{_is_tag(discriminator, list(owners))} || ({absent})",
            "message": f"{', '.join(names)} {verb} only for {discriminator} {', '.join(owners)}",
            "reason": "FieldValueForbidden",
        }
        if len(names) == 1:
            rule["fieldPath"] = f".{names[0]}"
        rules.append(rule)
    return rules


# --- helpers ------------------------------------------------------------------------------------


def _cel_visible(schema: Schema) -> bool:
    """CEL rules see only typed nodes; a node without a type is not a field to them."""
    return "type" in schema


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unique(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
