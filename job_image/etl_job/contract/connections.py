"""How blocks reach their stores: database connections, S3 stores, Kafka security, Secret references."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import Name, SpecModel, cel, cel_rules


class SecretKeyRef(SpecModel):
    """A key of a Kubernetes Secret in the pipeline's namespace. Only the reference is stored."""

    name: Name = Field(description="Name of the Secret.")
    key: Name = Field(description="Key inside the Secret.")


class Connection(SpecModel):
    """Where a database listens. The password comes from `credentialsRef`, never from here."""

    host: Name = Field(description="Host name or address of the database server.")
    port: int = Field(ge=1, le=65535, description="TCP port of the database server.")
    database: Name = Field(description="Database (catalog) to connect to.")
    user: Name | None = Field(default=None, description="User to connect as; or give `userRef`.")
    user_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the user name; or give `user`."
    )
    options: dict[str, str] = Field(default_factory=dict, description="Extra JDBC connection properties.")

    @model_validator(mode="after")
    def _user_or_ref(self) -> Connection:
        if (self.user is None) == (self.user_ref is None):
            raise ValueError("give exactly one of user or userRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.user) != has(self.userRef)", "give exactly one of user or userRef")
        )
    )


class S3Connection(SpecModel):
    """How to reach an S3-compatible store. Set per bucket, so two blocks may name two stores.
    Without key references the default AWS credential chain applies (web identity, instance role)."""

    endpoint: str | None = Field(
        default=None,
        min_length=1,
        description="Endpoint URL, such as http://minio.storage:9000; default: AWS for the region.",
    )
    region: str | None = Field(default=None, min_length=1, description="Region, such as eu-west-1.")
    path_style_access: bool = Field(
        default=False, description="Address buckets as endpoint/bucket (most S3-compatible servers)."
    )
    access_key_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the access key id."
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the secret access key."
    )
    session_token_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a session token (temporary credentials)."
    )

    @model_validator(mode="after")
    def _key_pair(self) -> S3Connection:
        if (self.access_key_ref is None) != (self.secret_key_ref is None):
            raise ValueError("give both accessKeyRef and secretKeyRef, or neither")
        if self.session_token_ref is not None and self.access_key_ref is None:
            raise ValueError("sessionTokenRef needs accessKeyRef and secretKeyRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.accessKeyRef) == has(self.secretKeyRef)",
                "give both accessKeyRef and secretKeyRef, or neither",
            ),
            cel(
                "!has(self.sessionTokenRef) || has(self.accessKeyRef)",
                "sessionTokenRef needs accessKeyRef and secretKeyRef",
            ),
        )
    )


class KafkaSecurity(SpecModel):
    """How to authenticate to the brokers. The SASL user and password come from a Secret."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_SSL", description="security.protocol of the Kafka clients."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism."
    )
    username_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the SASL user.")
    password_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the SASL password."
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and (self.username_ref is None or self.password_ref is None):
            raise ValueError(f"protocol {self.protocol} needs usernameRef and passwordRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.protocol) && !self.protocol.startsWith('SASL')) || "
                "(has(self.usernameRef) && has(self.passwordRef))",
                "SASL protocols need usernameRef and passwordRef",
            ),
        )
    )
