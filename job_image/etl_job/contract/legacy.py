"""Conversion of pipelines in the older flat JSON format (of the Scala framework this product
replaces) into ETLPipeline manifests, with a warning for everything dropped or guessed.

The older format keeps transform parameters as JSON-encoded strings (`"groupBy": "[\"user_id\"]"`);
decoded values are accepted too. Keys and enumerated values are matched regardless of case and of
`_`/`-` separators. `credentialId` names an entry of the older framework's credential vault; it
becomes a Kubernetes Secret reference by `secret_ref` (`postgres.password` -> Secret `postgres`, key
`password`), and `secret_commands` says how to create that Secret. Relative file paths are copied as
they are; like any manifest's, they are taken from the folder of the file that holds the pipeline,
so the converted YAML belongs beside the JSON file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from etl_job.contract.base import API_GROUP, API_VERSION, KIND, FileFormat, ValueFormat, WriteMode
from etl_job.contract.error_handling import RetryStrategy
from etl_job.contract.errors import ConfigurationError
from etl_job.contract.pipeline import ETLPipeline
from etl_job.contract.settings import LogLevel, Mode
from etl_job.contract.transforms import AggregateFunction, JoinType, WindowFunctionName

#: The key inside a `credentialId` Secret that holds the password when the id names no key.
PASSWORD_KEY = "password"

_ANNOTATION_PREFIX = f"{API_GROUP}/legacy-"
_JDBC_PORTS = {"PostgreSQL": 5432, "MySQL": 3306}
# Values that must never be copied from connectionParams into a manifest, which is not a Secret.
_SECRET_KEY = re.compile(r"pass|secret|token|jaas|credential|private", re.IGNORECASE)


@dataclass(frozen=True)
class ConversionResult:
    #: The ETLPipeline manifest, camelCase, as `kubectl apply` takes it.
    manifest: dict[str, Any]
    #: One line per legacy field that was dropped or whose conversion was guessed, naming its path.
    warnings: list[str] = field(default_factory=list)
    #: (Secret name, key) of each credential the manifest references, in order of first use.
    secrets: list[tuple[str, str]] = field(default_factory=list)


def secret_ref(credential_id: str) -> tuple[str, str]:
    """The Secret (name, key) standing for a vault entry: the id up to its last dot names the
    Secret, the rest the key (`postgres.password` -> `postgres`, `password`; `db.prod.pw` ->
    `db.prod`, `pw`); an id without a dot names a Secret whose `password` key holds the value.
    A name that is not a Kubernetes name is lower-cased, other characters becoming `-`."""
    name, dot, key = credential_id.strip().rpartition(".")
    if not dot or not name or not key:
        name, key = credential_id.strip(), PASSWORD_KEY
    secret = re.sub(r"[^a-z0-9.-]+", "-", name.casefold()).strip("-.")[:253]
    return secret, key


def secret_commands(secrets: Sequence[tuple[str, str]]) -> list[str]:
    """The kubectl commands that create the Secrets a converted manifest references, one per
    Secret, with a placeholder where each value goes (run them in the pipeline's namespace)."""
    keys: dict[str, list[str]] = {}
    for name, key in secrets:
        if key not in keys.setdefault(name, []):
            keys[name].append(key)
    return [
        f"kubectl create secret generic {name} " + " ".join(f"--from-literal={key}=<{key}>" for key in names)
        for name, names in keys.items()
    ]


def is_legacy(document: Mapping[str, Any]) -> bool:
    """Whether a parsed JSON/YAML document is a pipeline in the older flat format."""
    keys = {_norm(key) for key in document if isinstance(key, str)}
    return bool(keys & {"pipelineid", "errorhandlingconfig"}) and not keys & {"spec", "apiversion"}


def convert(document: Mapping[str, Any]) -> ConversionResult:
    """The ETLPipeline manifest equivalent to a legacy pipeline.

    Raises ConfigurationError naming the legacy field at fault (such as
    `transforms[0].parameters.groupBy: not valid JSON: ...`) when a value cannot be converted, or
    the converted manifest's field when the result breaks a rule of the contract.
    """
    warnings: list[str] = []
    top = _Block(document, "", warnings)
    metadata = _metadata(top)
    name = metadata["name"]
    spec: dict[str, Any] = {}
    _put(spec, "mode", top.choice("mode", options=_enum_values(Mode)))
    if spec.get("mode") == Mode.streaming:
        # The older format has no checkpoint; a streaming pipeline cannot run without one.
        spec["streaming"] = {"checkpointLocation": f"checkpoints/{name}"}
        warnings.append(
            f"mode streaming: checkpointLocation set to checkpoints/{name}; "
            "give spec.streaming.checkpointLocation a durable path (s3a://...) before deploying"
        )
    spec["extract"] = _source(top.require_block("extract"), name)
    transforms = top.items("transforms")
    if transforms:
        spec["transforms"] = [_transform(_Block(item, path, warnings), name) for path, item in transforms]
    spec["load"] = _sink(top.require_block("load"), name)
    _put(spec, "errorHandling", _error_handling(top.block("errorHandlingConfig")))
    _put(spec, "performance", _performance(top.block("performance", "performanceConfig")))
    _put(spec, "logging", _logging(top.block("logging", "loggingConfig")))
    top.finish()
    manifest = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": metadata, "spec": spec}
    _check(manifest)
    return ConversionResult(manifest, warnings, _secrets_of(spec))


_TOP_ORDER = ("apiVersion", "kind", "metadata", "spec")
_SPEC_ORDER = (
    "mode",
    "schedule",
    "suspend",
    "extract",
    "transforms",
    "load",
    "streaming",
    "errorHandling",
    "performance",
    "logging",
    "spark",
)


def to_yaml(manifest: Mapping[str, Any], *, comments: Sequence[str] = ()) -> str:
    """A manifest as block-style YAML, top-level and spec keys in reading order. `comments`
    (such as a conversion's warnings) become `#` lines at the top; yaml.safe_load ignores them."""
    ordered = _ordered(manifest, _TOP_ORDER)
    if isinstance(ordered.get("spec"), Mapping):
        ordered["spec"] = _ordered(ordered["spec"], _SPEC_ORDER)
    body = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    header = "".join(f"# {line}\n" for comment in comments for line in comment.splitlines())
    return header + body


# --- reading legacy objects --------------------------------------------------------------


def _norm(key: str) -> str:
    """`credentialId`, `CredentialID`, `credential_id` and `credential-id` are one key."""
    return re.sub(r"[\s_-]", "", key).casefold()


class _Block:
    """A legacy JSON object read key by key; `finish` warns about every key never read."""

    def __init__(self, value: Any, path: str, warnings: list[str]) -> None:
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"expected a JSON object, got {_json_type(value)}", field=path or None)
        self.path, self.warnings = path, warnings
        self._fields: dict[str, tuple[str, Any]] = {}
        for key, item in value.items():
            known = self._fields.get(_norm(str(key)))
            if known:
                warnings.append(f"{self.at(str(key))}: repeats {self.at(known[0])}; dropped")
            else:
                self._fields[_norm(str(key))] = (str(key), item)

    def has(self, *names: str) -> bool:
        return any(_norm(name) in self._fields for name in names)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, *names: str) -> tuple[str, Any] | None:
        """(path, value) of the first of `names` present and not null; consumes all of them."""
        found = None
        for name in names:
            entry = self._fields.pop(_norm(name), None)
            if entry is not None and entry[1] is not None and found is None:
                found = (self.at(entry[0]), entry[1])
            elif entry is not None and entry[1] is not None:
                self.warnings.append(f"{self.at(entry[0])}: repeats {found[0] if found else name}; dropped")
        return found

    def rest(self) -> list[tuple[str, str, Any]]:
        """(key, path, value) of every key not read yet, consumed."""
        rest = [(key, self.at(key), value) for key, value in self._fields.values()]
        self._fields.clear()
        return rest

    def finish(self) -> None:
        for _key, path, _value in self.rest():
            self.warnings.append(f"{path}: no counterpart in ETLPipeline; dropped")

    def text(self, *names: str) -> str | None:
        found = self.take(*names)
        if found is None:
            return None
        path, value = found
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigurationError(f"expected a string, got {_json_type(value)}", field=path)
        return str(value)

    def require_text(self, *names: str) -> str:
        value = self.text(*names)
        if value is None or not value.strip():
            raise ConfigurationError("is required", field=self.at(names[0]))
        return value

    def integer(self, *names: str) -> int | None:
        found = self.take(*names)
        return None if found is None else _integer(*found)

    def number(self, *names: str) -> float | None:
        found = self.take(*names)
        return None if found is None else _number(*found)

    def flag(self, *names: str) -> bool | None:
        found = self.take(*names)
        return None if found is None else _flag(*found)

    def decoded(self, *names: str) -> tuple[str, Any] | None:
        found = self.take(*names)
        return None if found is None else (found[0], _decoded(*found))

    def names(self, *names: str, plain: bool = False) -> list[str] | None:
        """A list of column names, JSON-encoded or not; with `plain`, text not starting with `[`
        is a list separated by commas (`"user_id"`, `"a, b"`), as connectionParams are written."""
        found = self.take(*names)
        if found is None:
            return None
        path, value = found
        if plain and isinstance(value, str) and not value.lstrip().startswith("["):
            value = [part.strip() for part in value.split(",") if part.strip()]
        else:
            value = _decoded(path, value)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigurationError(f"expected a list of column names, got {json.dumps(value)}", field=path)
        return list(value)

    def items(self, *names: str) -> list[tuple[str, Any]]:
        """(path, item) of each element of a list, JSON-encoded or not."""
        found = self.decoded(*names)
        if found is None:
            return []
        path, value = found
        if not isinstance(value, list):
            raise ConfigurationError(f"expected a list, got {_json_type(value)}", field=path)
        return [(f"{path}[{index}]", item) for index, item in enumerate(value)]

    def block(self, *names: str) -> _Block | None:
        """A nested object, JSON-encoded or not."""
        found = self.decoded(*names)
        return None if found is None else _Block(found[1], found[0], self.warnings)

    def require_block(self, *names: str) -> _Block:
        found = self.block(*names)
        if found is None:
            raise ConfigurationError("is required", field=self.at(names[0]))
        return found

    def require_choice(self, *names: str, options: Mapping[str, str]) -> str:
        value = self.choice(*names, options=options)
        if value is None:
            raise ConfigurationError("is required", field=self.at(names[0]))
        return value

    def choice(self, *names: str, options: Mapping[str, str]) -> str | None:
        """One of `options` (normalized spelling: contract value), matched regardless of case."""
        found = self.take(*names)
        return None if found is None else _pick(*found, options)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _decoded(path: str, value: Any) -> Any:
    """A parameter as the older format stores it, a JSON-encoded string, decoded."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as broken:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ConfigurationError(f"not valid JSON: {broken}: {shown!r}", field=path) from None


def _pick(path: str, value: Any, options: Mapping[str, str]) -> str:
    chosen = options.get(_norm(str(value)))
    if chosen is None:
        accepted = ", ".join(sorted(set(options.values())))
        raise ConfigurationError(f"{value!r} is not one of {accepted}", field=path)
    return chosen


def _integer(path: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConfigurationError(f"expected a whole number, got {value!r}", field=path)


def _number(path: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"expected a number, got {value!r}", field=path) from None


def _flag(path: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().casefold() in {"true", "false"}:
        return value.strip().casefold() == "true"
    raise ConfigurationError(f"expected true or false, got {value!r}", field=path)


def _enum_values(values: Any, **aliases: str) -> dict[str, str]:
    """Normalized spelling -> contract value, for a StrEnum or a Literal, plus aliases."""
    members = [str(member) for member in get_args(values)] if get_args(values) else [m.value for m in values]
    return {**{_norm(member): member for member in members}, **aliases}


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set a key only when the legacy document said something: no empty blocks in the output."""
    if value is not None and value != {} and value != []:
        target[key] = value


# --- metadata -----------------------------------------------------------------------------


def _dns_name(text: str) -> str:
    """A DNS-1123 label (the operator names pods after the pipeline): userSummary_Daily ->
    user-summary-daily."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text).casefold()
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-")[:63].rstrip("-")


def _metadata(top: _Block) -> dict[str, Any]:
    """metadata.name from pipelineId (or, failing that, name); the legacy identity as annotations."""
    pipeline_id, display_name, version = top.text("pipelineId"), top.text("name"), top.text("version")
    source, path = (pipeline_id, "pipelineId") if pipeline_id is not None else (display_name, "name")
    if pipeline_id is None and display_name is not None:
        top.warnings.append("pipelineId: missing; metadata.name is derived from name")
    name = _dns_name(source or "")
    if not name:
        raise ConfigurationError("is required: a pipeline name of letters and digits", field=path)
    if name != source:
        top.warnings.append(f"{path}: {source!r} is not a Kubernetes name; metadata.name is {name!r}")
    legacy = {"pipeline-id": pipeline_id, "name": display_name, "version": version}
    metadata: dict[str, Any] = {"name": name}
    _put(metadata, "annotations", {_ANNOTATION_PREFIX + k: v for k, v in legacy.items() if v is not None})
    return metadata


# --- extract and load -----------------------------------------------------------------------

_SOURCE_TYPES = {
    "s3": "S3",
    "postgresql": "PostgreSQL",
    "postgres": "PostgreSQL",
    "mysql": "MySQL",
    "kafka": "Kafka",
}


def _source(block: _Block, pipeline: str) -> dict[str, Any]:
    """An `extract` block, or a Join's `rightSource`."""
    source_type = block.require_choice("sourceType", "type", options=_SOURCE_TYPES)
    params = block.block("connectionParams") or _Block({}, block.at("connectionParams"), block.warnings)
    source: dict[str, Any] = {"sourceType": source_type}
    if source_type == "S3":
        source["path"] = _either(block, params, "path").require_text("path")
        _put(source, "format", _either(block, params, "format").choice("format", options=_FILE_FORMATS))
        _no_credentials(block, "S3 sources use the job's S3 configuration")
        _put(source, "options", _options(params))
    elif source_type == "Kafka":
        source.update(_kafka_address(block, params))
        _put(source, "startingOffsets", _either(block, params, "startingOffsets").text("startingOffsets"))
        _put(source, "endingOffsets", _either(block, params, "endingOffsets").text("endingOffsets"))
        _put(source, "valueFormat", _value_format(block, params))
        _no_credentials(block, "the contract has no Kafka credentials")
        _put(source, "options", _options(params))
    else:
        source.update(_jdbc_address(block, params, source_type, pipeline))
        for key in ("table", "query", "partitionColumn"):
            _put(source, key, _either(block, params, key).text(key))
        _put(source, "numPartitions", _either(block, params, "numPartitions").integer("numPartitions"))
        _put(source, "lowerBound", _either(block, params, "lowerBound").text("lowerBound"))
        _put(source, "upperBound", _either(block, params, "upperBound").text("upperBound"))
        _put(source, "fetchSize", _either(block, params, "fetchSize").integer("fetchSize"))
        _put(source["connection"], "options", _options(params))
    _put(source, "schemaName", block.text("schemaName"))
    params.finish()
    block.finish()
    return source


_WRITE_MODES = _enum_values(WriteMode)
_FILE_FORMATS = _enum_values(FileFormat)
_VALUE_FORMATS = _enum_values(ValueFormat)


def _value_format(block: _Block, params: _Block) -> str | None:
    names = ("format", "valueFormat")
    return (block if block.has(*names) else params).choice(*names, options=_VALUE_FORMATS)


def _sink(block: _Block, pipeline: str) -> dict[str, Any]:
    sink_type = block.require_choice("sinkType", "type", options=_SOURCE_TYPES)
    params = block.block("connectionParams") or _Block({}, block.at("connectionParams"), block.warnings)
    sink: dict[str, Any] = {"sinkType": sink_type}
    mode_path = block.at("writeMode")
    write_mode = block.choice("writeMode", "mode", options=_WRITE_MODES)
    if sink_type == "S3":
        sink["path"] = _either(block, params, "path").require_text("path")
        _put(sink, "format", _either(block, params, "format").choice("format", options=_FILE_FORMATS))
        if write_mode == WriteMode.upsert:
            raise ConfigurationError(
                "Upsert needs a database sink; files take Append or Overwrite", field=mode_path
            )
        _put(sink, "writeMode", write_mode)
        _put(sink, "partitionBy", block.names("partitionBy"))
        _put(sink, "compression", _either(block, params, "compression").text("compression"))
        _no_credentials(block, "S3 sinks use the job's S3 configuration")
        _put(sink, "options", _options(params))
    elif sink_type == "Kafka":
        sink.update(_kafka_address(block, params))
        _put(sink, "keyColumn", _either(block, params, "keyColumn").text("keyColumn"))
        _put(sink, "valueFormat", _value_format(block, params))
        if write_mode not in (None, WriteMode.append):
            block.warnings.append(f"{mode_path}: a Kafka topic is append-only; writeMode is append")
        _no_credentials(block, "the contract has no Kafka credentials")
        _put(sink, "options", _options(params))
    else:
        sink.update(_jdbc_address(block, params, sink_type, pipeline))
        sink["table"] = _either(block, params, "table").require_text("table")
        _put(sink, "writeMode", write_mode)
        key_owner = _either(block, params, "primaryKey")
        _put(sink, "primaryKey", key_owner.names("primaryKey", plain=key_owner is params))
        _put(sink, "batchSize", _either(block, params, "batchSize").integer("batchSize"))
        _put(sink["connection"], "options", _options(params))
    _put(sink, "schemaName", block.text("schemaName"))
    params.finish()
    block.finish()
    return sink


def _either(block: _Block, params: _Block, key: str) -> _Block:
    """The older format puts some settings on the block, some in connectionParams; take either."""
    return block if block.has(key) else params


def _jdbc_address(block: _Block, params: _Block, db: str, pipeline: str) -> dict[str, Any]:
    connection: dict[str, Any] = {}
    for key in ("host", "port", "database", "user"):
        owner = _either(block, params, key)
        if key == "port":
            port = owner.integer("port")
            if port is None:
                port = _JDBC_PORTS[db]
                block.warnings.append(f"{params.at('port')}: missing; guessed {db}'s default {port}")
            connection["port"] = port
        else:
            names = ("user", "username") if key == "user" else (key,)
            value = owner.text(*names)
            if not value:
                raise ConfigurationError("is required", field=params.at(key))
            connection[key] = value
    credential_path = block.at("credentialId")
    credential_id = block.text("credentialId")
    if credential_id is None:
        secret, key = f"{pipeline}-credentials", PASSWORD_KEY
        block.warnings.append(
            f"{credential_path}: missing; guessed Secret {secret!r}: create it with"
            f" kubectl create secret generic {secret} --from-literal={key}=<{key}>"
        )
    else:
        secret, key = secret_ref(credential_id)
        expected = credential_id.strip().rpartition(".")[0] or credential_id.strip()
        if not secret:
            raise ConfigurationError(f"{credential_id!r} names no Secret", field=credential_path)
        if secret != expected:
            block.warnings.append(
                f"{credential_path}: {expected!r} is not a Kubernetes name; Secret {secret!r}"
            )
    return {"connection": connection, "credentialsRef": {"name": secret, "key": key}}


def _kafka_address(block: _Block, params: _Block) -> dict[str, str]:
    names = ("bootstrapServers", "kafka.bootstrap.servers", "bootstrap.servers")
    owner = block if block.has(*names) else params
    servers = owner.text(*names)
    if not servers:
        raise ConfigurationError("is required", field=params.at("kafka.bootstrap.servers"))
    return {"bootstrapServers": servers, "topic": _either(block, params, "topic").require_text("topic")}


def _no_credentials(block: _Block, why: str) -> None:
    found = block.take("credentialId")
    if found is not None:
        block.warnings.append(f"{found[0]}: dropped; {why}")


def _options(params: _Block) -> dict[str, str]:
    """connectionParams the converter has no field for, passed to the reader/writer as options.
    Secret-looking ones are dropped: a manifest is not a Secret."""
    options = {}
    for key, path, value in params.rest():
        if _SECRET_KEY.search(key):
            params.warnings.append(
                f"{path}: dropped, a secret does not belong in a manifest (a database password comes"
                " from the Secret named by credentialId)"
            )
        elif isinstance(value, Mapping | list) or value is None:
            params.warnings.append(f"{path}: not a plain value; dropped")
        else:
            options[key] = json.dumps(value) if isinstance(value, bool) else str(value)
    return options


# --- transforms -----------------------------------------------------------------------------

_TRANSFORM_TYPES = {
    "filter": "Filter",
    "aggregation": "Aggregation",
    "aggregate": "Aggregation",
    "join": "Join",
    "window": "Window",
    "select": "Select",
    "sql": "SQL",
}
_AGGREGATES = _enum_values(AggregateFunction, mean="avg", average="avg")
_WINDOW_FUNCTIONS = _enum_values(WindowFunctionName, mean="avg", average="avg")
_JOIN_TYPES = _enum_values(
    JoinType,
    leftouter="left",
    rightouter="right",
    outer="full",
    fullouter="full",
    leftsemi="semi",
    leftanti="anti",
)


def _transform(block: _Block, pipeline: str) -> dict[str, Any]:
    transform_type = block.require_choice("transformType", "type", options=_TRANSFORM_TYPES)
    # Parameters sit under `parameters`; a transform that has none is read as its own parameters.
    params = block.block("parameters", "params") or block
    transform: dict[str, Any] = {"transformType": transform_type}
    if transform_type == "Filter":
        transform["condition"] = params.require_text("condition")
    elif transform_type == "Select":
        _put(transform, "columns", params.names("columns"))
        rename = params.decoded("rename")
        _put(transform, "rename", rename[1] if rename else None)
    elif transform_type == "SQL":
        transform["query"] = params.require_text("query", "sql")
    elif transform_type == "Aggregation":
        _put(transform, "groupBy", params.names("groupBy"))
        transform["aggregations"] = _aggregations(params)
    elif transform_type == "Join":
        right = params.block("rightSource", "right")
        if right is None:
            raise ConfigurationError("is required", field=params.at("rightSource"))
        transform["right"] = _source(right, pipeline)
        transform["on"] = params.names("joinKeys", "on")
        if not transform["on"]:
            raise ConfigurationError("is required", field=params.at("joinKeys"))
        _put(transform, "joinType", params.choice("joinType", options=_JOIN_TYPES))
        _put(transform, "broadcast", params.flag("broadcast"))
    else:
        transform.update(_window(params))
    params.finish()
    block.finish()
    return transform


def _aggregations(params: _Block) -> list[dict[str, str]]:
    found = params.decoded("aggregations")
    if found is None:
        raise ConfigurationError("is required", field=params.at("aggregations"))
    path, value = found
    if isinstance(value, Mapping):
        params.warnings.append(
            f"{path}: output columns are named <function>_<column> (such as sum_amount); the older"
            " framework may have named them otherwise: check later transforms and the sink"
        )
        return [
            {"column": str(column), "function": _pick(f"{path}.{column}", function, _AGGREGATES)}
            for column, function in value.items()
        ]
    if not isinstance(value, list):
        raise ConfigurationError(
            f"expected an object of column: function, got {_json_type(value)}", field=path
        )
    aggregations = []
    for index, entry in enumerate(value):
        item = _Block(entry, f"{path}[{index}]", params.warnings)
        aggregate = {
            "column": item.require_text("column"),
            "function": item.require_choice("function", options=_AGGREGATES),
        }
        _put(aggregate, "as", item.text("alias", "as", "outputColumn"))
        item.finish()
        aggregations.append(aggregate)
    return aggregations


def _window(params: _Block) -> dict[str, Any]:
    window: dict[str, Any] = {}
    _put(window, "partitionBy", params.names("partitionBy"))
    order = []
    for path, item in params.items("orderBy"):
        if isinstance(item, str) and (parts := item.split()) and len(parts) <= 2:
            direction = parts[1].casefold() if len(parts) == 2 else "asc"
            if direction not in {"asc", "desc"}:
                raise ConfigurationError(f"expected 'column [ASC|DESC]', got {item!r}", field=path)
            order.append(
                {"column": parts[0], "descending": True} if direction == "desc" else {"column": parts[0]}
            )
        elif isinstance(item, Mapping):
            order.append(dict(item))
        else:
            raise ConfigurationError(f"expected 'column [ASC|DESC]', got {item!r}", field=path)
    _put(window, "orderBy", order)
    function = params.require_choice("windowFunction", "function", options=_WINDOW_FUNCTIONS)
    call: dict[str, Any] = {"function": function}
    _put(call, "column", params.text("column", "inputColumn"))
    output = params.text("outputColumn", "as", "alias")
    if output is None:
        output = function
        params.warnings.append(f"{params.at('outputColumn')}: missing; guessed {function!r}")
    call["as"] = output
    _put(call, "offset", params.integer("offset"))
    window["functions"] = [call]
    return window


# --- error handling and run settings --------------------------------------------------------


def _error_handling(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    handling: dict[str, Any] = {}
    continue_path = block.at("continueOnError")
    continue_on_error = block.flag("continueOnError")
    _put(handling, "retry", _retry(block.block("retryConfig")))
    _put(handling, "circuitBreaker", _circuit_breaker(block.block("circuitBreakerConfig")))
    _put(handling, "deadLetter", _dead_letter(block.block("dlqConfig", "deadLetterConfig")))
    if continue_on_error and "deadLetter" not in handling:
        block.warnings.append(
            f"{continue_path}: true, but no dead-letter queue is configured; tolerance is none,"
            " so a bad record fails the run"
        )
        continue_on_error = False
    if continue_on_error is None and "deadLetter" in handling:
        # The older framework sends the records it cannot process to a configured queue.
        continue_on_error = True
    if continue_on_error is not None:
        handling = {"tolerance": "all" if continue_on_error else "none", **handling}
    block.finish()
    return handling


_RETRY_STRATEGIES = _enum_values(RetryStrategy)


def _retry(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    retry: dict[str, Any] = {}
    _put(retry, "strategy", block.choice("strategy", options=_RETRY_STRATEGIES))
    _put(retry, "maxAttempts", block.integer("maxAttempts"))
    for seconds_key, milliseconds_key in (
        ("initialDelaySeconds", "initialDelayMs"),
        ("maxDelaySeconds", "maxDelayMs"),
    ):
        seconds = block.number(seconds_key)
        milliseconds = block.number(milliseconds_key)
        if seconds is not None:
            retry[seconds_key] = _whole(seconds)
            if milliseconds is not None:
                block.warnings.append(f"{block.at(milliseconds_key)}: repeats {seconds_key}; dropped")
        elif milliseconds is not None:
            retry[seconds_key] = _whole(milliseconds / 1000)
    _put(retry, "backoffMultiplier", block.number("backoffMultiplier"))
    _put(retry, "jitter", block.flag("jitter"))
    block.finish()
    return retry


def _circuit_breaker(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    breaker: dict[str, Any] = {}
    _put(breaker, "enabled", block.flag("enabled"))
    _put(breaker, "failureThreshold", block.integer("failureThreshold"))
    found = block.take("resetTimeoutSeconds", "resetTimeoutMs")
    if found is not None:
        reset_path, value = found
        in_milliseconds = _norm(reset_path).endswith("ms")
        given = _number(reset_path, value)
        # resetTimeoutSeconds is a whole number of at least one second.
        seconds = max(1, math.ceil(given / 1000 if in_milliseconds else given))
        if seconds != (given / 1000 if in_milliseconds else given):
            unit = "ms" if in_milliseconds else "s"
            block.warnings.append(f"{reset_path}: {given:g} {unit} rounded up to {seconds} s")
        breaker["resetTimeoutSeconds"] = seconds
    _put(breaker, "halfOpenMaxAttempts", block.integer("halfOpenMaxAttempts"))
    block.finish()
    return breaker


def _dead_letter(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    enabled_path = block.at("enabled")
    if block.flag("enabled") is False:
        for _key, path, _value in block.rest():
            block.warnings.append(
                f"{path}: dropped; the dead-letter queue is disabled ({enabled_path}: false)"
            )
        return {}
    kind = block.choice("dlqType", "type", options={"kafka": "kafka", "s3": "s3"})
    if kind is None:
        raise ConfigurationError("is required: kafka or s3", field=block.at("dlqType"))
    dead_letter: dict[str, Any] = {"type": kind}
    if kind == "kafka":
        dead_letter["bootstrapServers"] = block.require_text("bootstrapServers", "kafka.bootstrap.servers")
        dead_letter["topic"] = block.require_text("topic")
    else:
        dead_letter["path"] = block.require_text("bucketPath", "path")
        _put(
            dead_letter, "partitionBy", block.choice("partitionBy", options={"date": "date", "none": "none"})
        )
        _put(dead_letter, "bufferSize", block.integer("bufferSize"))
        _put(dead_letter, "format", block.choice("format", options={"parquet": "parquet", "json": "json"}))
    block.finish()
    return dead_letter


def _whole(seconds: float) -> float:
    """2.0 as 2: the manifest reads as its author would write it."""
    return int(seconds) if float(seconds).is_integer() else seconds


def _performance(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    performance: dict[str, Any] = {}
    _put(performance, "batchSize", block.integer("batchSize"))
    _put(performance, "parallelism", block.integer("parallelism"))
    block.finish()
    return performance


_LOG_LEVELS = _enum_values(LogLevel, warn="WARNING", trace="DEBUG", fatal="ERROR", all="DEBUG")


def _logging(block: _Block | None) -> dict[str, Any]:
    if block is None:
        return {}
    settings: dict[str, Any] = {}
    level_path = block.at("level")
    found = block.take("level")
    if found is not None:
        level = _LOG_LEVELS.get(_norm(str(found[1])))
        if level is None:
            raise ConfigurationError(
                f"{found[1]!r} is not one of DEBUG, INFO, WARNING, ERROR", field=level_path
            )
        if _norm(str(found[1])) in {"trace", "fatal", "all"}:
            block.warnings.append(f"{level_path}: {found[1]} has no counterpart; using {level}")
        settings["level"] = level
    _put(settings, "structured", block.flag("structuredLogging", "structured"))
    block.finish()
    return settings


# --- output ---------------------------------------------------------------------------------


def _secrets_of(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, key) of each credentialsRef in the extract, a Join's right side and the load."""
    blocks = [spec.get("extract"), *(t.get("right") for t in spec.get("transforms", [])), spec.get("load")]
    found: list[tuple[str, str]] = []
    for block in blocks:
        ref = block.get("credentialsRef") if isinstance(block, Mapping) else None
        if ref and (ref["name"], ref["key"]) not in found:
            found.append((ref["name"], ref["key"]))
    return found


def _check(manifest: dict[str, Any]) -> None:
    """The converted manifest satisfies the contract, or the error names its field."""
    try:
        ETLPipeline.model_validate(manifest)
    except ValidationError as invalid:
        problems = [
            f"{_manifest_path(manifest, error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
            for error in invalid.errors()
        ]
        raise ConfigurationError("the converted manifest is not valid: " + "; ".join(problems)) from None


def _manifest_path(manifest: Any, location: tuple[int | str, ...]) -> str:
    """A pydantic error location as a manifest path, without the union tags pydantic inserts
    (a tag is the value of the block's sourceType, sinkType, transformType or type)."""
    path, node = "", manifest
    for part in location:
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            path, node = f"{path}[{part}]", node[part]
        elif isinstance(node, Mapping) and part not in node and part in node.values():
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
            node = node.get(part) if isinstance(node, Mapping) else None
    return path


def _ordered(block: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    first = {key: block[key] for key in order if key in block}
    return first | {key: value for key, value in block.items() if key not in first}


class _Dumper(yaml.SafeDumper):
    """Block style with sequences indented under their key, as kubectl users write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A multi-line SQL query reads best as a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_text)
