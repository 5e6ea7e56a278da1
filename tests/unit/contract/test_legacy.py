"""Conversion of the older flat JSON pipelines into ETLPipeline manifests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.contract import ConfigurationError, ETLPipeline
from etl_job.contract.legacy import (
    ConversionResult,
    convert,
    is_legacy,
    secret_commands,
    secret_ref,
    to_yaml,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

PG_PARAMS = {"host": "pg.db.svc", "port": "5432", "database": "analytics", "user": "etl"}


def legacy(**overrides: Any) -> dict[str, Any]:
    """A small valid legacy pipeline (S3 csv to S3 parquet), with top-level keys replaced."""
    document: dict[str, Any] = {
        "pipelineId": "events-copy",
        "extract": {"sourceType": "S3", "path": "s3a://raw/events/", "format": "csv"},
        "load": {"sinkType": "S3", "path": "s3a://out/events/", "format": "parquet"},
    }
    document.update(overrides)
    return document


def converted(document: dict[str, Any]) -> ConversionResult:
    result = convert(document)
    ETLPipeline.model_validate(result.manifest)
    return result


def spec_of(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = converted(document).manifest["spec"]
    return spec


def warnings_of(document: dict[str, Any]) -> list[str]:
    return converted(document).warnings


def with_transform(transform_type: str, parameters: Any) -> dict[str, Any]:
    return legacy(transforms=[{"transformType": transform_type, "parameters": parameters}])


def transform_of(transform_type: str, parameters: Any) -> dict[str, Any]:
    transform: dict[str, Any] = spec_of(with_transform(transform_type, parameters))["transforms"][0]
    return transform


# --- recognising the format ----------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"pipelineId": "x", "extract": {}},
        {"errorHandlingConfig": {}, "extract": {}},
        {"PipelineID": "x"},
        {"pipeline_id": "x"},
    ],
)
def test_legacy_documents_are_recognised(document: dict[str, Any]) -> None:
    assert is_legacy(document)


@pytest.mark.parametrize(
    "document",
    [
        {"apiVersion": "etl.sparkops.io/v1alpha1", "kind": "ETLPipeline", "spec": {}},
        {"pipelineId": "x", "spec": {}},
        {"pipelineId": "x", "apiVersion": "v1"},
        {"extract": {}, "load": {}},
    ],
)
def test_manifests_and_bare_specs_are_not_legacy(document: dict[str, Any]) -> None:
    assert not is_legacy(document)


# --- metadata --------------------------------------------------------------------------------


def test_manifest_header_and_legacy_identity_as_annotations() -> None:
    manifest = converted(legacy(name="Events copy", version="1.2")).manifest
    assert manifest["apiVersion"] == "etl.sparkops.io/v1alpha1"
    assert manifest["kind"] == "ETLPipeline"
    assert manifest["metadata"] == {
        "name": "events-copy",
        "annotations": {
            "etl.sparkops.io/legacy-pipeline-id": "events-copy",
            "etl.sparkops.io/legacy-name": "Events copy",
            "etl.sparkops.io/legacy-version": "1.2",
        },
    }


@pytest.mark.parametrize(
    ("pipeline_id", "name"),
    [
        ("userSummary_Daily", "user-summary-daily"),
        ("User Summary (v2)", "user-summary-v2"),
        ("--a.b--", "a-b"),
        ("x" * 80, "x" * 63),
    ],
)
def test_metadata_name_is_a_dns_label_and_a_change_is_reported(pipeline_id: str, name: str) -> None:
    result = converted(legacy(pipelineId=pipeline_id))
    assert result.manifest["metadata"]["name"] == name
    assert any(w.startswith("pipelineId:") and repr(name) in w for w in result.warnings)


def test_name_stands_in_for_a_missing_pipeline_id_with_a_warning() -> None:
    document = legacy(name="Nightly Load", errorHandlingConfig={})
    del document["pipelineId"]
    result = converted(document)
    assert result.manifest["metadata"]["name"] == "nightly-load"
    assert "pipelineId: missing; metadata.name is derived from name" in result.warnings


def test_a_pipeline_without_any_usable_name_is_refused() -> None:
    document = legacy(pipelineId="***")
    with pytest.raises(ConfigurationError, match=r"^pipelineId: is required"):
        convert(document)


def test_mode_is_matched_regardless_of_case() -> None:
    assert spec_of(legacy(mode="STREAMING"))["mode"] == "streaming"
    assert spec_of(legacy(mode="Batch"))["mode"] == "batch"
    assert "mode" not in spec_of(legacy())
    with pytest.raises(ConfigurationError, match=r"^mode: 'MICROBATCH' is not one of batch, streaming"):
        convert(legacy(mode="MICROBATCH"))


# --- sources ---------------------------------------------------------------------------------


def test_s3_source_with_reader_options_from_connection_params() -> None:
    extract = {
        "sourceType": "S3",
        "path": "s3a://raw/events/",
        "format": "CSV",
        "schemaName": "user-event",
        "connectionParams": {"header": "true", "inferSchema": True, "delimiter": ";"},
    }
    assert spec_of(legacy(extract=extract))["extract"] == {
        "sourceType": "S3",
        "path": "s3a://raw/events/",
        "format": "csv",
        "options": {"header": "true", "inferSchema": "true", "delimiter": ";"},
        "schemaName": "user-event",
    }


@pytest.mark.parametrize(
    ("source_type", "expected"), [("PostgreSQL", "PostgreSQL"), ("postgres", "PostgreSQL")]
)
def test_postgresql_source(source_type: str, expected: str) -> None:
    extract = {
        "sourceType": source_type,
        "connectionParams": {
            **PG_PARAMS,
            "table": "public.events",
            "partitionColumn": "id",
            "numPartitions": "4",
            "fetchsize": "1000",
            "sslmode": "require",
        },
        "credentialId": "pg-credentials",
        "schemaName": "user-event",
    }
    result = converted(legacy(extract=extract))
    assert result.manifest["spec"]["extract"] == {
        "sourceType": expected,
        "connection": {
            "host": "pg.db.svc",
            "port": 5432,
            "database": "analytics",
            "user": "etl",
            "options": {"sslmode": "require"},
        },
        "credentialsRef": {"name": "pg-credentials", "key": "password"},
        "table": "public.events",
        "partitionColumn": "id",
        "numPartitions": 4,
        "fetchSize": 1000,
        "schemaName": "user-event",
    }
    assert result.warnings == []


def test_mysql_source_with_a_query_and_the_default_port_guessed() -> None:
    extract = {
        "sourceType": "MYSQL",
        "connectionParams": {"host": "mysql", "database": "shop", "username": "etl", "query": "SELECT 1"},
        "credentialId": "mysql-credentials",
    }
    result = converted(legacy(extract=extract))
    source = result.manifest["spec"]["extract"]
    assert source["sourceType"] == "MySQL"
    assert source["connection"] == {"host": "mysql", "port": 3306, "database": "shop", "user": "etl"}
    assert source["query"] == "SELECT 1"
    assert "extract.connectionParams.port: missing; guessed MySQL's default 3306" in result.warnings


def test_passwords_in_connection_params_are_dropped_and_a_missing_credential_id_guessed() -> None:
    extract = {
        "sourceType": "PostgreSQL",
        "connectionParams": {**PG_PARAMS, "table": "t", "password": "hunter2"},
    }
    result = converted(legacy(extract=extract))
    assert "hunter2" not in json.dumps(result.manifest)
    assert result.manifest["spec"]["extract"]["credentialsRef"] == {
        "name": "events-copy-credentials",
        "key": "password",
    }
    assert any(w.startswith("extract.connectionParams.password: dropped, a secret") for w in result.warnings)
    assert any(
        w.startswith("extract.credentialId: missing; guessed Secret 'events-copy-credentials'")
        for w in result.warnings
    )


def test_a_jdbc_source_without_host_is_refused_naming_the_field() -> None:
    extract = {"sourceType": "PostgreSQL", "connectionParams": {"database": "d", "user": "u", "table": "t"}}
    with pytest.raises(ConfigurationError, match=r"^extract.connectionParams.host: is required"):
        convert(legacy(extract=extract))


def test_kafka_source() -> None:
    extract = {
        "sourceType": "kafka",
        "format": "AVRO",
        "schemaName": "user-event",
        "connectionParams": {
            "kafka.bootstrap.servers": "kafka:9092",
            "topic": "events",
            "startingOffsets": "earliest",
            "kafka.security.protocol": "PLAINTEXT",
        },
    }
    assert spec_of(legacy(extract=extract))["extract"] == {
        "sourceType": "Kafka",
        "bootstrapServers": "kafka:9092",
        "topic": "events",
        "startingOffsets": "earliest",
        "valueFormat": "avro",
        "options": {"kafka.security.protocol": "PLAINTEXT"},
        "schemaName": "user-event",
    }


def test_credentials_of_s3_and_kafka_blocks_have_no_counterpart_and_are_reported() -> None:
    extract = {"sourceType": "S3", "path": "s3a://raw/", "credentialId": "s3-keys"}
    result = converted(legacy(extract=extract))
    assert "credentialsRef" not in result.manifest["spec"]["extract"]
    assert any(w.startswith("extract.credentialId: dropped") for w in result.warnings)


def test_format_in_connection_params_is_the_file_format_not_a_reader_option() -> None:
    extract = {
        "sourceType": "S3",
        "path": "s3a://raw/events/",
        "connectionParams": {"format": "CSV", "header": "true"},
    }
    load = {"sinkType": "S3", "path": "s3a://out/", "connectionParams": {"format": "json"}}
    spec = spec_of(legacy(extract=extract, load=load))
    assert spec["extract"] == {
        "sourceType": "S3",
        "path": "s3a://raw/events/",
        "format": "csv",
        "options": {"header": "true"},
    }
    assert spec["load"] == {"sinkType": "S3", "path": "s3a://out/", "format": "json"}


def test_an_unknown_format_in_connection_params_is_refused_naming_it() -> None:
    extract = {"sourceType": "S3", "path": "p", "connectionParams": {"format": "xml"}}
    with pytest.raises(ConfigurationError, match=r"^extract.connectionParams.format: 'xml' is not one of"):
        convert(legacy(extract=extract))


@pytest.mark.parametrize(
    ("credential_id", "name", "key"),
    [
        ("postgres.password", "postgres", "password"),
        ("pg-credentials", "pg-credentials", "password"),
        ("db.prod.pw", "db.prod", "pw"),
    ],
)
def test_credential_id_names_a_secret_and_its_key(credential_id: str, name: str, key: str) -> None:
    load = {
        "sinkType": "PostgreSQL",
        "table": "t",
        "connectionParams": PG_PARAMS,
        "credentialId": credential_id,
    }
    result = converted(legacy(load=load))
    assert result.manifest["spec"]["load"]["credentialsRef"] == {"name": name, "key": key}
    assert result.secrets == [(name, key)]
    assert result.warnings == []
    assert secret_ref(credential_id) == (name, key)


def test_a_credential_id_that_is_not_a_kubernetes_name_is_lowered_with_a_warning() -> None:
    load = {"sinkType": "MySQL", "table": "t", "connectionParams": PG_PARAMS, "credentialId": "Vault_PG.pass"}
    result = converted(legacy(load=load))
    assert result.manifest["spec"]["load"]["credentialsRef"] == {"name": "vault-pg", "key": "pass"}
    assert "load.credentialId: 'Vault_PG' is not a Kubernetes name; Secret 'vault-pg'" in result.warnings


def test_secret_commands_create_each_secret_once_with_placeholders_only() -> None:
    commands = secret_commands([("postgres", "password"), ("mysql", "pw"), ("postgres", "user")])
    assert commands == [
        "kubectl create secret generic postgres"
        " --from-literal=password=<password> --from-literal=user=<user>",
        "kubectl create secret generic mysql --from-literal=pw=<pw>",
    ]


def test_secrets_of_a_join_and_a_sink_are_listed_once() -> None:
    right = {
        "sourceType": "PostgreSQL",
        "connectionParams": {**PG_PARAMS, "table": "u"},
        "credentialId": "pg.pw",
    }
    load = {"sinkType": "PostgreSQL", "table": "t", "connectionParams": PG_PARAMS, "credentialId": "pg.pw"}
    document = legacy(
        transforms=[{"transformType": "Join", "parameters": {"rightSource": right, "joinKeys": ["id"]}}],
        load=load,
    )
    assert converted(document).secrets == [("pg", "pw")]


def test_an_unknown_source_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^extract.sourceType: 'Mongo' is not one of"):
        convert(legacy(extract={"sourceType": "Mongo"}))


def test_an_unknown_file_format_is_refused() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^extract.format: 'xml' is not one of avro, csv, json, parquet"
    ):
        convert(legacy(extract={"sourceType": "S3", "path": "p", "format": "xml"}))


# --- transforms ------------------------------------------------------------------------------


def test_filter() -> None:
    assert transform_of("Filter", {"condition": "amount > 0"}) == {
        "transformType": "Filter",
        "condition": "amount > 0",
    }


@pytest.mark.parametrize(
    "parameters",
    [
        {"groupBy": '["user_id"]', "aggregations": '{"amount": "sum", "event_id": "COUNT"}'},
        {"groupBy": ["user_id"], "aggregations": {"amount": "sum", "event_id": "count"}},
        json.dumps({"groupBy": ["user_id"], "aggregations": {"amount": "sum", "event_id": "count"}}),
    ],
    ids=["json-encoded", "decoded", "parameters-json-encoded"],
)
def test_aggregation(parameters: Any) -> None:
    result = converted(with_transform("aggregation", parameters))
    assert result.manifest["spec"]["transforms"] == [
        {
            "transformType": "Aggregation",
            "groupBy": ["user_id"],
            "aggregations": [
                {"column": "amount", "function": "sum"},
                {"column": "event_id", "function": "count"},
            ],
        }
    ]
    assert any("output columns are named <function>_<column>" in w for w in result.warnings)


def test_aggregation_list_form_keeps_output_names_and_function_spellings() -> None:
    parameters = {
        "aggregations": '[{"column": "amount", "function": "mean", "alias": "avg_amount"},'
        ' {"column": "user_id", "function": "countDistinct"}]'
    }
    assert transform_of("Aggregation", parameters)["aggregations"] == [
        {"column": "amount", "function": "avg", "as": "avg_amount"},
        {"column": "user_id", "function": "count_distinct"},
    ]


@pytest.mark.parametrize(
    "parameters",
    [
        {
            "rightSource": '{"sourceType": "S3", "path": "s3a://dim/users/", "format": "parquet"}',
            "joinKeys": '["user_id"]',
            "joinType": "left",
            "broadcast": "true",
        },
        {
            "rightSource": {"sourceType": "S3", "path": "s3a://dim/users/", "format": "parquet"},
            "joinKeys": ["user_id"],
            "joinType": "LEFT_OUTER",
            "broadcast": True,
        },
    ],
    ids=["json-encoded", "decoded"],
)
def test_join(parameters: dict[str, Any]) -> None:
    assert transform_of("Join", parameters) == {
        "transformType": "Join",
        "right": {"sourceType": "S3", "path": "s3a://dim/users/", "format": "parquet"},
        "on": ["user_id"],
        "joinType": "left",
        "broadcast": True,
    }


def test_join_with_a_database_on_the_right() -> None:
    right = {
        "sourceType": "PostgreSQL",
        "connectionParams": {**PG_PARAMS, "table": "users"},
        "credentialId": "pg",
    }
    transform = transform_of("Join", {"rightSource": json.dumps(right), "joinKeys": '["user_id"]'})
    assert transform["right"]["credentialsRef"] == {"name": "pg", "key": "password"}
    assert transform["right"]["table"] == "users"


@pytest.mark.parametrize(
    "parameters",
    [
        {
            "partitionBy": '["country"]',
            "orderBy": '["total_amount DESC", "user_id"]',
            "windowFunction": "row_number",
            "outputColumn": "rank",
        },
        {
            "partitionBy": ["country"],
            "orderBy": ["total_amount desc", "user_id ASC"],
            "windowFunction": "ROW_NUMBER",
            "outputColumn": "rank",
        },
    ],
    ids=["json-encoded", "decoded"],
)
def test_window(parameters: dict[str, Any]) -> None:
    assert transform_of("Window", parameters) == {
        "transformType": "Window",
        "partitionBy": ["country"],
        "orderBy": [{"column": "total_amount", "descending": True}, {"column": "user_id"}],
        "functions": [{"function": "row_number", "as": "rank"}],
    }


def test_window_function_over_a_column_with_an_offset() -> None:
    parameters = {
        "orderBy": '["day"]',
        "windowFunction": "lag",
        "column": "amount",
        "offset": "1",
        "outputColumn": "prev",
    }
    assert transform_of("Window", parameters)["functions"] == [
        {"function": "lag", "column": "amount", "as": "prev", "offset": 1}
    ]


def test_window_without_output_column_is_guessed_with_a_warning() -> None:
    document = with_transform("Window", {"orderBy": '["day"]', "windowFunction": "rank"})
    result = converted(document)
    assert result.manifest["spec"]["transforms"][0]["functions"] == [{"function": "rank", "as": "rank"}]
    assert "transforms[0].parameters.outputColumn: missing; guessed 'rank'" in result.warnings


def test_an_unknown_aggregate_function_is_refused_naming_the_column() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^transforms\[0\].parameters.aggregations.amount: 'median' is not"
    ):
        convert(with_transform("Aggregation", {"aggregations": '{"amount": "median"}'}))


def test_select_and_sql_transforms_of_the_contract_are_accepted_too() -> None:
    assert transform_of("Select", {"columns": '["a", "b"]', "rename": '{"a": "x"}'}) == {
        "transformType": "Select",
        "columns": ["a", "b"],
        "rename": {"a": "x"},
    }
    assert transform_of("sql", {"query": "SELECT * FROM input"}) == {
        "transformType": "SQL",
        "query": "SELECT * FROM input",
    }


def test_a_transform_without_a_parameters_object_is_read_as_its_own_parameters() -> None:
    document = legacy(transforms=[{"transformType": "Filter", "condition": "a > 0"}])
    assert spec_of(document)["transforms"] == [{"transformType": "Filter", "condition": "a > 0"}]


def test_an_unknown_transform_type_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ConfigurationError, match=r"^transforms\[0\].transformType: 'Pivot' is not one of"):
        convert(with_transform("Pivot", {}))


@pytest.mark.parametrize(
    ("transform_type", "parameters", "path"),
    [
        (
            "Aggregation",
            {"groupBy": "[user_id]", "aggregations": "{}"},
            r"transforms\[0\].parameters.groupBy",
        ),
        ("Aggregation", {"aggregations": "{amount: sum}"}, r"transforms\[0\].parameters.aggregations"),
        ("Join", {"rightSource": "{", "joinKeys": "[]"}, r"transforms\[0\].parameters.rightSource"),
        (
            "Join",
            {"rightSource": {"sourceType": "S3", "path": "p"}, "joinKeys": "user_id"},
            r"transforms\[0\].parameters.joinKeys",
        ),
        ("Window", {"orderBy": "['day']", "windowFunction": "rank"}, r"transforms\[0\].parameters.orderBy"),
    ],
)
def test_invalid_json_strings_are_refused_naming_the_path(
    transform_type: str, parameters: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{path}: not valid JSON: "):
        convert(with_transform(transform_type, parameters))


def test_invalid_json_in_the_load_block_names_the_path() -> None:
    load = {"sinkType": "PostgreSQL", "table": "t", "connectionParams": PG_PARAMS, "primaryKey": "[id"}
    with pytest.raises(ConfigurationError, match=r"^load.primaryKey: not valid JSON: "):
        convert(legacy(load=load))


def test_json_that_decodes_to_the_wrong_shape_is_refused_naming_the_path() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^transforms\[0\].parameters.groupBy: expected a list of column names"
    ):
        convert(with_transform("Aggregation", {"groupBy": '"user_id"', "aggregations": '{"a": "sum"}'}))


def test_a_non_boolean_flag_is_refused_naming_the_path() -> None:
    parameters = {"rightSource": {"sourceType": "S3", "path": "p"}, "joinKeys": ["id"], "broadcast": "yes"}
    with pytest.raises(
        ConfigurationError, match=r"^transforms\[0\].parameters.broadcast: expected true or false"
    ):
        convert(with_transform("Join", parameters))


# --- sinks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legacy_mode", "mode"),
    [("Append", "append"), ("Overwrite", "overwrite"), ("Upsert", "upsert"), ("UPSERT", "upsert")],
)
def test_write_modes_of_a_database_sink(legacy_mode: str, mode: str) -> None:
    load = {
        "sinkType": "PostgreSQL",
        "table": "user_summary",
        "writeMode": legacy_mode,
        "primaryKey": '["user_id"]',
        "connectionParams": PG_PARAMS,
        "credentialId": "pg-credentials",
    }
    sink = spec_of(legacy(load=load))["load"]
    assert sink["writeMode"] == mode
    assert sink["primaryKey"] == ["user_id"]
    assert sink["table"] == "user_summary"


def test_primary_key_as_a_decoded_list_and_batch_size_from_connection_params() -> None:
    load = {
        "sinkType": "MySQL",
        "table": "t",
        "writeMode": "Upsert",
        "primaryKey": ["id"],
        "connectionParams": {**PG_PARAMS, "port": 3306, "batchsize": "500"},
        "credentialId": "c",
    }
    sink = spec_of(legacy(load=load))["load"]
    assert sink["primaryKey"] == ["id"]
    assert sink["batchSize"] == 500
    assert sink["connection"]["port"] == 3306


@pytest.mark.parametrize(
    ("primary_key", "expected"),
    [("user_id", ["user_id"]), ("user_id, country", ["user_id", "country"]), ('["a","b"]', ["a", "b"])],
)
def test_primary_key_in_connection_params_as_its_users_write_it(
    primary_key: str, expected: list[str]
) -> None:
    load = {
        "sinkType": "PostgreSQL",
        "table": "user_summary",
        "writeMode": "Upsert",
        "connectionParams": {**PG_PARAMS, "primaryKey": primary_key},
        "credentialId": "postgres.password",
    }
    sink = spec_of(legacy(load=load))["load"]
    assert sink["primaryKey"] == expected
    assert "options" not in sink["connection"]


def test_upsert_without_primary_key_fails_the_contract_naming_the_manifest_field() -> None:
    load = {
        "sinkType": "PostgreSQL",
        "table": "t",
        "writeMode": "Upsert",
        "connectionParams": PG_PARAMS,
        "credentialId": "c",
    }
    with pytest.raises(ConfigurationError, match=r"not valid: spec.load: writeMode upsert needs primaryKey"):
        convert(legacy(load=load))


@pytest.mark.parametrize(("legacy_mode", "mode"), [("Append", "append"), ("OVERWRITE", "overwrite")])
def test_write_modes_of_a_file_sink(legacy_mode: str, mode: str) -> None:
    load = {
        "sinkType": "S3",
        "path": "s3a://out/",
        "format": "json",
        "writeMode": legacy_mode,
        "partitionBy": '["day"]',
    }
    assert spec_of(legacy(load=load))["load"] == {
        "sinkType": "S3",
        "path": "s3a://out/",
        "format": "json",
        "writeMode": mode,
        "partitionBy": ["day"],
    }


def test_upsert_into_files_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^load.writeMode: Upsert needs a database sink"):
        convert(legacy(load={"sinkType": "S3", "path": "s3a://out/", "writeMode": "Upsert"}))


def test_an_unknown_write_mode_is_refused() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^load.writeMode: 'ErrorIfExists' is not one of append, overwrite, upsert"
    ):
        convert(legacy(load={"sinkType": "S3", "path": "s3a://out/", "writeMode": "ErrorIfExists"}))


def test_kafka_sink_is_append_only() -> None:
    load = {
        "sinkType": "Kafka",
        "writeMode": "Overwrite",
        "connectionParams": {"bootstrap.servers": "kafka:9092", "topic": "summaries"},
    }
    result = converted(legacy(load=load))
    assert result.manifest["spec"]["load"] == {
        "sinkType": "Kafka",
        "bootstrapServers": "kafka:9092",
        "topic": "summaries",
    }
    assert "load.writeMode: a Kafka topic is append-only; writeMode is append" in result.warnings


def test_fields_without_meaning_for_the_sink_are_reported() -> None:
    load = {
        "sinkType": "PostgreSQL",
        "table": "t",
        "path": "s3a://unused/",
        "partitionBy": '["day"]',
        "connectionParams": PG_PARAMS,
        "credentialId": "c",
    }
    found = warnings_of(legacy(load=load))
    assert "load.path: no counterpart in ETLPipeline; dropped" in found
    assert "load.partitionBy: no counterpart in ETLPipeline; dropped" in found


# --- error handling --------------------------------------------------------------------------


def test_retry_milliseconds_become_seconds() -> None:
    config = {
        "retryConfig": {
            "maxAttempts": 3,
            "initialDelayMs": 1500,
            "maxDelayMs": 60000,
            "backoffMultiplier": 2.0,
            "strategy": "FIXED",
        }
    }
    assert spec_of(legacy(errorHandlingConfig=config))["errorHandling"] == {
        "retry": {
            "strategy": "fixed",
            "maxAttempts": 3,
            "initialDelaySeconds": 1.5,
            "maxDelaySeconds": 60,
            "backoffMultiplier": 2.0,
        }
    }


def test_retry_in_the_documented_spelling_keeps_its_cap_and_jitter() -> None:
    config = {
        "retryConfig": {
            "strategy": "exponential",
            "maxAttempts": 5,
            "initialDelaySeconds": 2,
            "maxDelaySeconds": 60,
            "backoffMultiplier": 2.0,
            "jitter": False,
        }
    }
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"]["retry"] == {
        "strategy": "exponential",
        "maxAttempts": 5,
        "initialDelaySeconds": 2,
        "maxDelaySeconds": 60,
        "backoffMultiplier": 2.0,
        "jitter": False,
    }
    assert result.warnings == []


def test_a_delay_given_in_seconds_and_in_milliseconds_keeps_the_seconds_with_a_warning() -> None:
    config = {"retryConfig": {"initialDelaySeconds": 0.5, "initialDelayMs": 900}}
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"]["retry"] == {"initialDelaySeconds": 0.5}
    assert "errorHandlingConfig.retryConfig.initialDelayMs: repeats initialDelaySeconds; dropped" in (
        result.warnings
    )


def test_retry_delays_out_of_order_fail_the_contract_naming_the_manifest_field() -> None:
    config = {"retryConfig": {"initialDelayMs": 5000, "maxDelayMs": 1000}}
    with pytest.raises(ConfigurationError, match=r"spec.errorHandling.retry: maxDelaySeconds"):
        convert(legacy(errorHandlingConfig=config))


def test_circuit_breaker() -> None:
    config = {
        "circuitBreakerConfig": {
            "enabled": False,
            "failureThreshold": 3,
            "resetTimeoutMs": 120000,
            "halfOpenMaxAttempts": 2,
        }
    }
    assert spec_of(legacy(errorHandlingConfig=config))["errorHandling"] == {
        "circuitBreaker": {
            "enabled": False,
            "failureThreshold": 3,
            "resetTimeoutSeconds": 120,
            "halfOpenMaxAttempts": 2,
        }
    }


def test_circuit_breaker_in_the_documented_spelling() -> None:
    config = {
        "circuitBreakerConfig": {
            "enabled": True,
            "failureThreshold": 5,
            "resetTimeoutSeconds": 60,
            "halfOpenMaxAttempts": 1,
        }
    }
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"]["circuitBreaker"] == config["circuitBreakerConfig"]
    assert result.warnings == []


def test_a_fractional_reset_timeout_in_seconds_is_rounded_up_with_a_warning() -> None:
    result = converted(legacy(errorHandlingConfig={"circuitBreakerConfig": {"resetTimeoutSeconds": 2.5}}))
    assert result.manifest["spec"]["errorHandling"]["circuitBreaker"] == {"resetTimeoutSeconds": 3}
    assert "errorHandlingConfig.circuitBreakerConfig.resetTimeoutSeconds: 2.5 s rounded up to 3 s" in (
        result.warnings
    )


@pytest.mark.parametrize(("milliseconds", "seconds"), [(1500, 2), (200, 1)])
def test_circuit_breaker_reset_timeout_is_rounded_up_to_whole_seconds(
    milliseconds: int, seconds: int
) -> None:
    result = converted(legacy(errorHandlingConfig={"circuitBreakerConfig": {"resetTimeoutMs": milliseconds}}))
    assert result.manifest["spec"]["errorHandling"]["circuitBreaker"] == {"resetTimeoutSeconds": seconds}
    path = "errorHandlingConfig.circuitBreakerConfig.resetTimeoutMs"
    assert f"{path}: {milliseconds} ms rounded up to {seconds} s" in result.warnings


def test_kafka_dead_letter_with_continue_on_error() -> None:
    config = {
        "dlqConfig": {"enabled": True, "type": "KAFKA", "topic": "etl-dlq", "bootstrapServers": "kafka:9092"},
        "continueOnError": True,
    }
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"] == {
        "tolerance": "all",
        "deadLetter": {"type": "kafka", "bootstrapServers": "kafka:9092", "topic": "etl-dlq"},
    }
    assert result.warnings == []


def test_s3_dead_letter() -> None:
    config = {"dlqConfig": {"type": "s3", "path": "s3a://dlq/", "format": "JSON", "bufferSize": 100}}
    assert spec_of(legacy(errorHandlingConfig=config))["errorHandling"] == {
        "tolerance": "all",
        "deadLetter": {"type": "s3", "path": "s3a://dlq/", "format": "json", "bufferSize": 100},
    }


def test_s3_dead_letter_in_the_documented_spelling() -> None:
    config = {
        "dlqConfig": {
            "dlqType": "s3",
            "bucketPath": "s3a://my-bucket/dlq/",
            "partitionBy": "none",
            "bufferSize": 500,
            "format": "parquet",
        }
    }
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"]["deadLetter"] == {
        "type": "s3",
        "path": "s3a://my-bucket/dlq/",
        "partitionBy": "none",
        "bufferSize": 500,
        "format": "parquet",
    }
    assert result.warnings == []


def test_a_configured_dead_letter_queue_takes_bad_records_unless_continue_on_error_is_false() -> None:
    queue = {"dlqType": "kafka", "bootstrapServers": "kafka:9092", "topic": "etl-dlq"}
    assert spec_of(legacy(errorHandlingConfig={"dlqConfig": queue}))["errorHandling"]["tolerance"] == "all"
    refused = spec_of(legacy(errorHandlingConfig={"dlqConfig": queue, "continueOnError": False}))
    assert refused["errorHandling"]["tolerance"] == "none"


def test_a_dead_letter_queue_without_a_type_is_refused_naming_dlq_type() -> None:
    config = {"dlqConfig": {"topic": "t", "bootstrapServers": "k:9092"}}
    with pytest.raises(ConfigurationError, match=r"^errorHandlingConfig.dlqConfig.dlqType: is required"):
        convert(legacy(errorHandlingConfig=config))


def test_fields_of_the_other_dead_letter_type_are_reported() -> None:
    config = {
        "dlqConfig": {
            "type": "KAFKA",
            "topic": "t",
            "bootstrapServers": "k:9092",
            "path": "s3a://dlq/",
            "bufferSize": 5,
        }
    }
    found = warnings_of(legacy(errorHandlingConfig=config))
    assert "errorHandlingConfig.dlqConfig.path: no counterpart in ETLPipeline; dropped" in found
    assert "errorHandlingConfig.dlqConfig.bufferSize: no counterpart in ETLPipeline; dropped" in found


def test_continue_on_error_without_a_dead_letter_queue_becomes_tolerance_none_with_a_warning() -> None:
    result = converted(legacy(errorHandlingConfig={"continueOnError": True}))
    assert result.manifest["spec"]["errorHandling"] == {"tolerance": "none"}
    assert any(
        w.startswith("errorHandlingConfig.continueOnError: true, but no dead-letter queue")
        for w in result.warnings
    )


def test_a_disabled_dead_letter_queue_is_dropped_and_continue_on_error_downgraded() -> None:
    config = {"dlqConfig": {"enabled": "false", "type": "S3", "path": "s3a://dlq/"}, "continueOnError": True}
    result = converted(legacy(errorHandlingConfig=config))
    assert result.manifest["spec"]["errorHandling"] == {"tolerance": "none"}
    assert any(
        w.startswith("errorHandlingConfig.dlqConfig.path: dropped; the dead-letter queue is disabled")
        for w in result.warnings
    )
    assert any(w.startswith("errorHandlingConfig.continueOnError: true, but") for w in result.warnings)


def test_continue_on_error_false_is_tolerance_none() -> None:
    assert spec_of(legacy(errorHandlingConfig={"continueOnError": False}))["errorHandling"] == {
        "tolerance": "none"
    }


# --- run settings ----------------------------------------------------------------------------


def test_performance_and_logging() -> None:
    spec = spec_of(
        legacy(
            performanceConfig={"batchSize": 5000, "parallelism": "8"},
            loggingConfig={"level": "warn", "structured": False},
        )
    )
    assert spec["performance"] == {"batchSize": 5000, "parallelism": 8}
    assert spec["logging"] == {"level": "WARNING", "structured": False}


def test_performance_and_logging_in_the_documented_spelling() -> None:
    result = converted(
        legacy(
            performance={"batchSize": 10000, "parallelism": 8},
            logging={"level": "DEBUG", "structuredLogging": False},
        )
    )
    assert result.manifest["spec"]["performance"] == {"batchSize": 10000, "parallelism": 8}
    assert result.manifest["spec"]["logging"] == {"level": "DEBUG", "structured": False}
    assert result.warnings == []


def test_a_log_level_without_counterpart_is_approximated_with_a_warning() -> None:
    result = converted(legacy(loggingConfig={"level": "TRACE"}))
    assert result.manifest["spec"]["logging"] == {"level": "DEBUG"}
    assert "loggingConfig.level: TRACE has no counterpart; using DEBUG" in result.warnings


# --- nothing is dropped silently ------------------------------------------------------------


def test_unknown_keys_at_every_level_are_reported_by_path() -> None:
    document = legacy(
        owner="data-team",
        extract={"sourceType": "S3", "path": "s3a://raw/", "compression": "gzip"},
        transforms=[
            {"transformType": "Filter", "parameters": {"condition": "a > 0", "cache": "true"}, "id": 7}
        ],
        errorHandlingConfig={
            "retryConfig": {"maxAttempts": 2, "jitterMs": 100},
            "alerting": {"email": "x@y"},
        },
        performanceConfig={"cacheEnabled": True},
    )
    found = warnings_of(document)
    for path in (
        "owner",
        "extract.compression",
        "transforms[0].parameters.cache",
        "transforms[0].id",
        "errorHandlingConfig.retryConfig.jitterMs",
        "errorHandlingConfig.alerting",
        "performanceConfig.cacheEnabled",
    ):
        assert f"{path}: no counterpart in ETLPipeline; dropped" in found


def test_keys_are_matched_regardless_of_case_and_separators() -> None:
    document = {
        "PipelineID": "x",
        "Extract": {"SourceType": "s3", "PATH": "s3a://raw/", "Format": "Parquet"},
        "load": {"sink_type": "S3", "path": "s3a://out/", "write-mode": "append"},
        "ErrorHandlingConfig": {"RetryConfig": {"MaxAttempts": 2}},
    }
    result = converted(document)
    assert result.manifest["spec"] == {
        "extract": {"sourceType": "S3", "path": "s3a://raw/", "format": "parquet"},
        "load": {"sinkType": "S3", "path": "s3a://out/", "writeMode": "append"},
        "errorHandling": {"retry": {"maxAttempts": 2}},
    }
    assert result.warnings == []


def test_a_key_repeated_in_another_case_is_reported() -> None:
    document = legacy(mode="BATCH", Mode="STREAMING")
    assert "Mode: repeats mode; dropped" in warnings_of(document)


def test_the_input_document_is_not_modified() -> None:
    document = json.loads((EXAMPLES / "legacy" / "user-summary.json").read_text())
    before = copy.deepcopy(document)
    convert(document)
    assert document == before


# --- the example files -----------------------------------------------------------------------


def example(name: str) -> ConversionResult:
    return converted(json.loads((EXAMPLES / "legacy" / name).read_text()))


def test_user_summary_example() -> None:
    result = example("user-summary.json")
    pipeline = ETLPipeline.model_validate(result.manifest)
    assert pipeline.name == "user-summary-daily"
    spec = result.manifest["spec"]
    assert [t["transformType"] for t in spec["transforms"]] == ["Filter", "Aggregation"]
    assert spec["load"]["writeMode"] == "upsert"
    assert spec["load"]["credentialsRef"] == {"name": "pg-credentials", "key": "password"}
    assert spec["errorHandling"]["tolerance"] == "all"
    assert spec["errorHandling"]["deadLetter"]["type"] == "kafka"
    assert spec["errorHandling"]["retry"]["initialDelaySeconds"] == 2
    assert len(result.warnings) == 1 and "<function>_<column>" in result.warnings[0]


def test_quickstart_example_is_the_twin_of_quickstart_yaml() -> None:
    """The same stages over the same files, paths taken from the JSON file's folder
    (examples/legacy) rather than examples/. The older format names aggregates
    <function>_<column> and has one function per Window, so the columns differ."""
    twin = example("quickstart.json").manifest["spec"]
    original = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())["spec"]
    assert [t["transformType"] for t in twin["transforms"]] == [
        t["transformType"] for t in original["transforms"]
    ]
    assert (EXAMPLES / "legacy" / twin["extract"]["path"]).resolve() == (
        EXAMPLES / original["extract"]["path"]
    ).resolve()
    join_twin, join_original = twin["transforms"][1], original["transforms"][1]
    assert (EXAMPLES / "legacy" / join_twin["right"]["path"]).resolve() == (
        EXAMPLES / join_original["right"]["path"]
    ).resolve()
    assert twin["extract"]["schemaName"] == original["extract"]["schemaName"]
    assert twin["transforms"][0] == original["transforms"][0]
    assert twin["load"]["partitionBy"] == original["load"]["partitionBy"]


# --- YAML output -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["user-summary.json", "quickstart.json"])
def test_yaml_round_trips_to_the_same_manifest(name: str) -> None:
    manifest = example(name).manifest
    assert yaml.safe_load(to_yaml(manifest)) == manifest


def test_yaml_is_block_style_in_reading_order() -> None:
    text = to_yaml(example("user-summary.json").manifest)
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert top == ["apiVersion", "kind", "metadata", "spec"]
    spec = [
        line.strip().split(":")[0] for line in text.splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert spec[spec.index("mode") :] == [
        "mode",
        "extract",
        "transforms",
        "load",
        "errorHandling",
        "performance",
        "logging",
    ]
    assert "{" not in text and "[" not in text


def test_yaml_reorders_a_manifest_built_in_any_order() -> None:
    manifest = {
        "spec": {"load": {"sinkType": "S3"}, "extract": {"sourceType": "S3"}, "mode": "batch"},
        "kind": "ETLPipeline",
    }
    text = to_yaml(manifest)
    assert text.index("kind:") < text.index("spec:")
    assert text.index("mode:") < text.index("extract:") < text.index("load:")
    assert yaml.safe_load(text) == manifest


def test_yaml_quotes_what_yaml_1_1_would_misread_and_keeps_queries_readable() -> None:
    parameters = {"rightSource": {"sourceType": "S3", "path": "p"}, "joinKeys": ["id"]}
    manifest = converted(with_transform("Join", parameters)).manifest
    manifest["spec"]["transforms"].append({"transformType": "SQL", "query": "SELECT *\nFROM input\n"})
    text = to_yaml(manifest, comments=["converted from events-copy", "two\nlines"])
    assert "'on':" in text
    assert "query: |" in text
    assert text.startswith("# converted from events-copy\n# two\n# lines\n")
    assert yaml.safe_load(text) == manifest


# --- the older format's own documented examples ------------------------------------------------

#: Copies of the format documentation's examples (../shared/seed-format beside the clone).
SEED = Path(__file__).resolve().parents[2] / "data" / "seed-format"
SEED_PIPELINES = ("batch-s3-to-postgres.json", "batch-s3-to-postgres-s3-dlq.json")
AGGREGATION_NOTE = "transforms[0].parameters.aggregations: output columns are named <function>_<column>"


def seed(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SEED / name).read_text())
    return document


@pytest.mark.parametrize("name", [*SEED_PIPELINES, "dead-letter-record.json", "log-record.json"])
def test_the_copies_of_the_documented_examples_are_unchanged(name: str) -> None:
    original = Path(__file__).resolve().parents[4] / "shared" / "seed-format" / name
    if not original.is_file():
        pytest.skip(f"{original} is not beside the clone")
    assert json.loads((SEED / name).read_text()) == json.loads(original.read_text())


def test_the_first_documented_example_converts_to_this_manifest() -> None:
    result = converted(seed("batch-s3-to-postgres.json"))
    assert result.manifest == {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {
            "name": "batch-s3-to-postgres",
            "annotations": {"etl.sparkops.io/legacy-pipeline-id": "batch-s3-to-postgres"},
        },
        "spec": {
            "extract": {
                "sourceType": "S3",
                "path": "s3a://my-bucket/raw/events/",
                "format": "csv",
                "options": {"header": "true"},
                "schemaName": "user-event",
            },
            "transforms": [
                {
                    "transformType": "Aggregation",
                    "groupBy": ["user_id"],
                    "aggregations": [
                        {"column": "amount", "function": "sum"},
                        {"column": "event_id", "function": "count"},
                    ],
                }
            ],
            "load": {
                "sinkType": "PostgreSQL",
                "connection": {
                    "host": "localhost",
                    "port": 5432,
                    "database": "analytics",
                    "user": "etl_user",
                },
                "credentialsRef": {"name": "postgres", "key": "password"},
                "table": "user_summary",
                "writeMode": "upsert",
                "primaryKey": ["user_id"],
            },
            "errorHandling": {
                "tolerance": "all",
                "retry": {
                    "strategy": "exponential",
                    "maxAttempts": 5,
                    "initialDelaySeconds": 2,
                    "maxDelaySeconds": 60,
                    "backoffMultiplier": 2.0,
                    "jitter": True,
                },
                "circuitBreaker": {"enabled": True, "failureThreshold": 5, "resetTimeoutSeconds": 60},
                "deadLetter": {"type": "kafka", "bootstrapServers": "localhost:9092", "topic": "etl-dlq"},
            },
            "performance": {"batchSize": 10000, "parallelism": 8},
            "logging": {"level": "INFO", "structured": True},
        },
    }
    assert len(result.warnings) == 1 and result.warnings[0].startswith(AGGREGATION_NOTE)
    assert result.secrets == [("postgres", "password")]


#: Every key the documented examples use: (example, path in the older format, path in the
#: manifest, the value it has there).
DOCUMENTED_KEYS: list[tuple[str, str, str, Any]] = [
    (SEED_PIPELINES[0], "pipelineId", "metadata.name", "batch-s3-to-postgres"),
    (SEED_PIPELINES[0], "extract.sourceType", "spec.extract.sourceType", "S3"),
    (SEED_PIPELINES[0], "extract.path", "spec.extract.path", "s3a://my-bucket/raw/events/"),
    (SEED_PIPELINES[0], "extract.schemaName", "spec.extract.schemaName", "user-event"),
    (SEED_PIPELINES[0], "extract.connectionParams.format", "spec.extract.format", "csv"),
    (SEED_PIPELINES[0], "extract.connectionParams.header", "spec.extract.options.header", "true"),
    (SEED_PIPELINES[0], "transforms.0.transformType", "spec.transforms.0.transformType", "Aggregation"),
    (SEED_PIPELINES[0], "transforms.0.parameters.groupBy", "spec.transforms.0.groupBy", ["user_id"]),
    (
        SEED_PIPELINES[0],
        "transforms.0.parameters.aggregations",
        "spec.transforms.0.aggregations",
        [{"column": "amount", "function": "sum"}, {"column": "event_id", "function": "count"}],
    ),
    (SEED_PIPELINES[0], "load.sinkType", "spec.load.sinkType", "PostgreSQL"),
    (SEED_PIPELINES[0], "load.table", "spec.load.table", "user_summary"),
    (SEED_PIPELINES[0], "load.writeMode", "spec.load.writeMode", "upsert"),
    (SEED_PIPELINES[0], "load.connectionParams.host", "spec.load.connection.host", "localhost"),
    (SEED_PIPELINES[0], "load.connectionParams.port", "spec.load.connection.port", 5432),
    (SEED_PIPELINES[0], "load.connectionParams.database", "spec.load.connection.database", "analytics"),
    (SEED_PIPELINES[0], "load.connectionParams.user", "spec.load.connection.user", "etl_user"),
    (SEED_PIPELINES[0], "load.connectionParams.primaryKey", "spec.load.primaryKey", ["user_id"]),
    (
        SEED_PIPELINES[0],
        "load.credentialId",
        "spec.load.credentialsRef",
        {"name": "postgres", "key": "password"},
    ),
    *(
        (
            SEED_PIPELINES[0],
            f"errorHandlingConfig.retryConfig.{key}",
            f"spec.errorHandling.retry.{key}",
            value,
        )
        for key, value in (
            ("strategy", "exponential"),
            ("maxAttempts", 5),
            ("initialDelaySeconds", 2),
            ("maxDelaySeconds", 60),
            ("backoffMultiplier", 2.0),
            ("jitter", True),
        )
    ),
    *(
        (
            SEED_PIPELINES[1],
            f"errorHandlingConfig.circuitBreakerConfig.{key}",
            f"spec.errorHandling.circuitBreaker.{key}",
            value,
        )
        for key, value in (
            ("enabled", True),
            ("failureThreshold", 5),
            ("resetTimeoutSeconds", 60),
            ("halfOpenMaxAttempts", 1),
        )
    ),
    (
        SEED_PIPELINES[0],
        "errorHandlingConfig.dlqConfig.dlqType",
        "spec.errorHandling.deadLetter.type",
        "kafka",
    ),
    (
        SEED_PIPELINES[0],
        "errorHandlingConfig.dlqConfig.bootstrapServers",
        "spec.errorHandling.deadLetter.bootstrapServers",
        "localhost:9092",
    ),
    (
        SEED_PIPELINES[0],
        "errorHandlingConfig.dlqConfig.topic",
        "spec.errorHandling.deadLetter.topic",
        "etl-dlq",
    ),
    (SEED_PIPELINES[1], "errorHandlingConfig.dlqConfig.dlqType", "spec.errorHandling.deadLetter.type", "s3"),
    (
        SEED_PIPELINES[1],
        "errorHandlingConfig.dlqConfig.bucketPath",
        "spec.errorHandling.deadLetter.path",
        "s3a://my-bucket/dlq/",
    ),
    *(
        (
            SEED_PIPELINES[1],
            f"errorHandlingConfig.dlqConfig.{key}",
            f"spec.errorHandling.deadLetter.{key}",
            value,
        )
        for key, value in (("partitionBy", "date"), ("bufferSize", 500), ("format", "parquet"))
    ),
    (SEED_PIPELINES[0], "performance.batchSize", "spec.performance.batchSize", 10000),
    (SEED_PIPELINES[0], "performance.parallelism", "spec.performance.parallelism", 8),
    (SEED_PIPELINES[0], "logging.level", "spec.logging.level", "INFO"),
    (SEED_PIPELINES[0], "logging.structuredLogging", "spec.logging.structured", True),
]


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


@pytest.mark.parametrize(
    ("example_name", "legacy_path", "manifest_path", "value"),
    DOCUMENTED_KEYS,
    ids=[f"{example_name[:-5]}:{path}" for example_name, path, _, _ in DOCUMENTED_KEYS],
)
def test_every_documented_key_reaches_its_counterpart_through_the_yaml(
    example_name: str, legacy_path: str, manifest_path: str, value: Any
) -> None:
    document = seed(example_name)
    _at(document, legacy_path)  # the key is in the example as documented
    manifest = yaml.safe_load(to_yaml(convert(document).manifest))
    ETLPipeline.model_validate(manifest)
    assert _at(manifest, manifest_path) == value


def test_the_documented_keys_are_every_key_of_the_examples() -> None:
    def paths(node: Any, prefix: str = "") -> set[str]:
        if isinstance(node, dict):
            return {p for key, item in node.items() for p in paths(item, f"{prefix}{key}.")}
        if isinstance(node, list):
            return {p for index, item in enumerate(node) for p in paths(item, f"{prefix}{index}.")}
        return {prefix.rstrip(".")}

    in_examples = {(name, path) for name in SEED_PIPELINES for path in paths(seed(name))}
    listed = {(name, path) for name, path, _, _ in DOCUMENTED_KEYS}
    # A key listed for one example stands for the same key of the other.
    missing = {(name, path) for name, path in in_examples if path not in {p for _, p in listed}}
    assert missing == set()


@pytest.mark.parametrize("name", SEED_PIPELINES)
def test_the_documented_examples_convert_with_no_key_dropped(name: str) -> None:
    result = converted(seed(name))
    assert [w for w in result.warnings if not w.startswith(AGGREGATION_NOTE)] == []


def test_an_unknown_key_in_a_documented_example_gets_a_warning_naming_it() -> None:
    document = seed("batch-s3-to-postgres-s3-dlq.json")
    document["owner"] = "data-team"
    document["performance"]["cacheEnabled"] = True
    document["logging"]["appender"] = "file"
    document["errorHandlingConfig"]["dlqConfig"]["compression"] = "snappy"
    document["errorHandlingConfig"]["retryConfig"]["retryOn"] = ["SQLException"]
    found = convert(document).warnings
    for path in (
        "owner",
        "performance.cacheEnabled",
        "logging.appender",
        "errorHandlingConfig.dlqConfig.compression",
        "errorHandlingConfig.retryConfig.retryOn",
    ):
        assert f"{path}: no counterpart in ETLPipeline; dropped" in found
