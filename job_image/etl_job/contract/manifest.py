"""Reading a pipeline from a file: an ETLPipeline manifest (YAML or JSON), a bare spec, or the
older flat JSON format, into the contract's models, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from etl_job.contract.errors import ConfigurationError
from etl_job.contract.pipeline import ETLPipeline

# Discriminator values show up in pydantic's error locations; users never write them as keys.
_UNION_TAGS = frozenset(
    {
        "S3",
        "PostgreSQL",
        "MySQL",
        "Kafka",
        "Filter",
        "Select",
        "SQL",
        "Join",
        "Aggregation",
        "Window",
        "kafka",
        "s3",
    }
)


@dataclass(frozen=True)
class LoadedPipeline:
    pipeline: ETLPipeline
    #: Relative paths in the spec are taken from the manifest's folder.
    base_dir: Path
    #: What a conversion from the older format guessed or dropped.
    warnings: list[str] = field(default_factory=list)


def load_pipeline(path: Path) -> LoadedPipeline:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as missing:
        raise ConfigurationError(f"cannot read {path}: {missing.strerror}") from None
    except yaml.YAMLError as broken:
        raise ConfigurationError(f"{path} is not valid YAML or JSON: {broken}") from None
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            f"{path}: expected an ETLPipeline manifest, a spec, or a pipeline JSON object"
        )
    manifest, warnings = to_manifest(document, default_name=path.stem)
    return LoadedPipeline(parse_manifest(manifest), path.resolve().parent, warnings)


def to_manifest(document: Mapping[str, Any], default_name: str) -> tuple[dict[str, Any], list[str]]:
    """Any accepted shape, as a manifest dict."""
    from etl_job.contract import legacy

    if legacy.is_legacy(document):
        result = legacy.convert(document)
        return result.manifest, list(result.warnings)
    if "spec" in document:
        manifest = dict(document)
        metadata = dict(manifest.get("metadata") or {})
        metadata.setdefault("name", default_name)
        return {**manifest, "metadata": metadata}, []
    if "extract" in document:
        return {"metadata": {"name": default_name}, "spec": dict(document)}, []
    raise ConfigurationError(
        "expected an ETLPipeline manifest (with spec), a spec (with extract), or a legacy pipeline"
    )


def parse_manifest(manifest: Mapping[str, Any]) -> ETLPipeline:
    try:
        return ETLPipeline.model_validate(manifest)
    except ValidationError as invalid:
        raise ConfigurationError(describe_validation_error(invalid)) from None


def describe_validation_error(invalid: ValidationError) -> str:
    """One line per problem, each starting with the field path as a user writes it."""
    lines = []
    for error in invalid.errors():
        where = field_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "invalid pipeline:\n  " + "\n  ".join(lines)


def field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_TAGS:
            continue
        else:
            path += f".{part}" if path else part
    return path
