"""The vault's format and file: what is written opens again under the same master key and under
no other, a changed or missing byte anywhere is refused whole, and writes are atomic and 0600.
Keys are derived with cheap scrypt parameters here; the default's cost is the CLI's to pay."""

from __future__ import annotations

import base64
import stat
import sys
from pathlib import Path

import pytest
import yaml

from etl_job.contract import SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.errors import ConfigurationError, CredentialsMissing
from etl_job.contract.manifest import load_pipeline
from etl_job.runtime import vault
from etl_job.runtime.secret_sources import kube_source, missing_refs, resolve_secrets, vault_source
from etl_job.runtime.vault import HEADER_BYTES, KdfParams, VaultError, decode, derive_key, encode

REPO = Path(__file__).resolve().parents[4]
CHEAP = KdfParams(log2_n=10, r=8, p=1)
MASTER = "correct horse battery staple"
# Where the header keeps the salt and the nonce: after the magic, format and KDF parameters.
SALT = slice(len(vault.MAGIC) + 4, len(vault.MAGIC) + 4 + vault.SALT_BYTES)
NONCE = slice(SALT.stop, SALT.stop + vault.NONCE_BYTES)
ENTRIES = {"pg-credentials": {"password": "pä$$ wörd\n", "user": "etl"}, "s3": {"secret-key": "x" * 40}}


def sealed(entries: dict[str, dict[str, str]] = ENTRIES, master: str = MASTER) -> bytes:
    return encode(entries, derive_key(master, params=CHEAP))


def test_what_is_encoded_decodes_to_the_same_entries() -> None:
    entries, key = decode(sealed(), MASTER)
    assert entries == ENTRIES
    assert key.params == CHEAP
    assert "key=" not in repr(key)


def test_each_encoding_has_a_fresh_nonce_and_no_value_in_clear() -> None:
    key = derive_key(MASTER, params=CHEAP)
    first, second = encode(ENTRIES, key), encode(ENTRIES, key)
    assert first[SALT] == second[SALT] and first[NONCE] != second[NONCE]
    assert first[HEADER_BYTES:] != second[HEADER_BYTES:]
    for blob in (first, second):
        assert b"etl" not in blob[HEADER_BYTES:] and b"pg-credentials" not in blob


def test_a_new_vault_has_a_salt_of_its_own() -> None:
    assert derive_key(MASTER, params=CHEAP).salt != derive_key(MASTER, params=CHEAP).salt


def test_a_wrong_master_key_is_refused_by_name() -> None:
    with pytest.raises(VaultError, match="wrong VAULT_MASTER_KEY, or the file was changed") as refused:
        decode(sealed(), MASTER + "!")
    assert refused.value.exit_code == 2


def test_no_master_key_is_refused() -> None:
    with pytest.raises(VaultError, match="no master key"):
        decode(sealed(), "")


def test_a_flipped_bit_anywhere_is_refused_whole() -> None:
    blob = sealed({"pg": {"password": "pw"}})
    for position in range(len(blob)):
        changed = bytearray(blob)
        changed[position] ^= 1 << position % 8
        with pytest.raises(VaultError):
            decode(bytes(changed), MASTER)


def test_a_truncated_or_extended_file_is_refused_whole() -> None:
    blob = sealed()
    for length in range(len(blob)):
        with pytest.raises(VaultError, match=r"not a vault file|truncated"):
            decode(blob[:length], MASTER)
    with pytest.raises(VaultError, match="damaged"):
        decode(blob + b"\0", MASTER)


def test_kdf_parameters_asking_for_too_much_memory_are_refused_before_deriving() -> None:
    changed = bytearray(sealed())
    changed[len(vault.MAGIC) + 1] = 30  # log2(N): 128 GiB of scrypt memory
    with pytest.raises(VaultError, match="damaged: KDF parameters need more than"):
        decode(bytes(changed), MASTER)


def test_the_default_kdf_is_memory_hard() -> None:
    params = KdfParams()
    assert 128 * params.r * 2**params.log2_n >= 64 * 1024 * 1024
    params.check()


def test_a_secret_manifest_holds_every_key_base64_encoded() -> None:
    manifest = yaml.safe_load(vault.secret_manifest("pg-credentials", ENTRIES["pg-credentials"], "team"))
    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Secret" and manifest["type"] == "Opaque"
    assert manifest["metadata"] == {"name": "pg-credentials", "namespace": "team"}
    decoded = {key: base64.b64decode(value).decode() for key, value in manifest["data"].items()}
    assert decoded == ENTRIES["pg-credentials"]


@pytest.mark.parametrize(
    ("name", "key"), [("Pg", "password"), ("pg_db", "password"), ("-pg", "password"), ("pg", "pass word")]
)
def test_names_a_secret_could_not_have_are_refused(name: str, key: str) -> None:
    with pytest.raises(VaultError, match="is not a Kubernetes Secret"):
        vault.check_entry_name(name, key)


def test_names_kubernetes_accepts_are_accepted() -> None:
    vault.check_entry_name("db.prod-1", "Pass_word.txt")


def test_vault_path_prefers_the_option_then_the_env_then_the_default(tmp_path: Path) -> None:
    option, env = tmp_path / "a.enc", {vault.VAULT_ENV: str(tmp_path / "b.enc")}
    assert vault.vault_path(option, env) == option
    assert vault.vault_path(None, env) == tmp_path / "b.enc"
    assert vault.vault_path(None, {}) == Path.home() / ".config" / "sparkops-etl" / "vault.enc"


# --- the file -------------------------------------------------------------------------------


def test_a_vault_is_created_0600_and_updated_atomically(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "vault.enc"
    vault.create_vault(path, MASTER, CHEAP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = path.read_bytes()
    vault.update_vault(path, MASTER, lambda entries: {**entries, **ENTRIES})
    second = path.read_bytes()
    assert first[SALT] == second[SALT] and first[NONCE] != second[NONCE]
    assert vault.read_vault(path, MASTER) == ENTRIES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["vault.enc", "vault.enc.lock"]


def test_a_vault_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "vault.enc"
    vault.create_vault(path, MASTER, CHEAP)
    with pytest.raises(VaultError, match="exists already"):
        vault.create_vault(path, MASTER, CHEAP)


def test_a_failed_change_leaves_the_vault_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "vault.enc"
    vault.create_vault(path, MASTER, CHEAP)
    before = path.read_bytes()

    def refuse(entries: vault.Entries) -> vault.Entries:
        raise VaultError("no such entry")

    with pytest.raises(VaultError):
        vault.update_vault(path, MASTER, refuse)
    with pytest.raises(VaultError, match="wrong VAULT_MASTER_KEY"):
        vault.update_vault(path, "other", lambda entries: {"x": {"y": "z"}})
    assert path.read_bytes() == before


def test_a_missing_vault_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match=r"no vault at .*etl vault init"):
        vault.read_vault(tmp_path / "vault.enc", MASTER)


# --- resolving a pipeline's references --------------------------------------------------------

PG = SecretKeyRef(name="pg-credentials", key="password")
USER = SecretKeyRef(name="pg-credentials", key="user")


class Source:
    def __init__(self, found: dict[tuple[str, str], str]) -> None:
        self.found, self.asked = found, list[list[SecretKeyRef]]()

    def __call__(self, refs: object) -> tuple[dict[tuple[str, str], str], str]:
        self.asked.append(list(refs))  # type: ignore[call-overload]
        return self.found, "the test source"


def test_the_source_is_not_asked_when_the_environment_has_everything() -> None:
    source = Source({})
    env = {secret_env_name(PG): "from-env", "OTHER": "1"}
    assert resolve_secrets([PG, PG], env, source) == env
    assert source.asked == []


def test_an_env_var_wins_over_the_source() -> None:
    source = Source({("pg-credentials", "password"): "from-source", ("pg-credentials", "user"): "etl"})
    env = resolve_secrets([PG, USER, PG], {secret_env_name(PG): "from-env"}, source)
    assert env == {secret_env_name(PG): "from-env", secret_env_name(USER): "etl"}
    assert source.asked == [[USER]]


def test_what_no_source_has_is_listed_with_its_env_var() -> None:
    with pytest.raises(CredentialsMissing, match="nor in the test source") as missing:
        resolve_secrets([PG, USER], {}, Source({("pg-credentials", "user"): "etl"}))
    assert f"Secret pg-credentials key password ({secret_env_name(PG)})" in str(missing.value)
    assert "key user" not in str(missing.value)
    assert missing.value.exit_code == 2


def test_the_vault_source_reads_entries_by_secret_name_and_key(tmp_path: Path) -> None:
    path = tmp_path / "vault.enc"
    vault.create_vault(path, MASTER, CHEAP)
    vault.update_vault(path, MASTER, lambda entries: ENTRIES)
    found, where = vault_source(path, lambda: MASTER)([PG, SecretKeyRef(name="pg-credentials", key="nope")])
    assert found == {("pg-credentials", "password"): ENTRIES["pg-credentials"]["password"]}
    assert where == f"the vault {path}"


def test_without_a_vault_the_master_key_is_not_asked_for(tmp_path: Path) -> None:
    def no_key() -> str:
        raise AssertionError("asked for the master key")

    found, where = vault_source(tmp_path / "none.enc", no_key)([PG])
    assert found == {}
    assert "there is none at" in where and "etl vault set pg-credentials password" in where


def test_a_legacy_credential_id_is_the_vault_entry_of_its_secret(tmp_path: Path) -> None:
    """`credentialId: pg-credentials` stands for Secret pg-credentials, key password, and so for the
    vault entry of that name and key; `postgres.password` for name postgres, key password."""
    loaded = load_pipeline(REPO / "examples" / "legacy" / "user-summary.json")
    refs = loaded.pipeline.spec.secret_refs()
    assert refs == [PG]
    path = tmp_path / "vault.enc"
    vault.create_vault(path, MASTER, CHEAP)
    vault.update_vault(path, MASTER, lambda entries: ENTRIES)
    env = resolve_secrets(refs, {}, vault_source(path, lambda: MASTER))
    assert env[secret_env_name(PG)] == ENTRIES["pg-credentials"]["password"]
    seed = load_pipeline(REPO / "tests" / "data" / "seed-format" / "batch-s3-to-postgres.json")
    assert SecretKeyRef(name="postgres", key="password") in seed.pipeline.spec.secret_refs()


def test_kube_secrets_without_the_kubernetes_package_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(ConfigurationError, match="needs the kubernetes Python package") as failed:
        kube_source(None)([PG])
    assert failed.value.exit_code == 2


def test_missing_refs_are_distinct_and_in_spec_order() -> None:
    assert missing_refs([USER, PG, USER], {}) == [USER, PG]
