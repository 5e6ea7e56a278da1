"""The local credential vault: Secret values for runs outside the cluster, in one encrypted file.

Entries are keyed as Kubernetes Secret references are, Secret name then key, so a pipeline's
`credentialsRef` finds its value here unchanged and `secret_manifest` turns one name's entries into
the Secret the cluster needs. The file is AES-256-GCM under a key derived by scrypt from the
master key (`$VAULT_MASTER_KEY`) and a salt of its own; its header (format, KDF parameters, salt,
nonce, length) is authenticated too, so a wrong key, a changed byte or a cut-off file is refused as
a whole: nothing is ever read from a vault that does not authenticate.

`encode`/`decode` are pure; `read_vault`, `create_vault` and `update_vault` do the file I/O: each
write goes to a temporary file (mode 0600, fsynced) renamed over the vault, under an exclusive
lock on `<vault>.lock`, so concurrent writers never lose each other's updates."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from etl_job.contract.errors import ConfigurationError

#: The env var holding the master key the vault's encryption key is derived from.
MASTER_KEY_ENV = "VAULT_MASTER_KEY"
#: The env var naming the vault file (the `--vault` option wins).
VAULT_ENV = "ETL_VAULT"
#: Where the vault is when neither `--vault` nor `$ETL_VAULT` says.
DEFAULT_VAULT = Path("~/.config/sparkops-etl/vault.enc")

#: Secret name -> key -> value, as `kubectl get secret -o yaml` shows them decoded.
Entries = dict[str, dict[str, str]]

MAGIC = b"ETLVAULT"
FORMAT_VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
# magic, format version, scrypt log2(N), r, p, salt, nonce, ciphertext length (tag included).
_HEADER = struct.Struct(f">{len(MAGIC)}sBBBB{SALT_BYTES}s{NONCE_BYTES}sI")
HEADER_BYTES = _HEADER.size
#: scrypt's memory is 128 * r * N bytes: a header asking for more than this is refused before
#: deriving anything, so a damaged file cannot make `etl` allocate gigabytes.
MAX_KDF_MEMORY = 512 * 1024 * 1024

# Kubernetes' rules: a Secret name is a DNS subdomain, a key is what a file name in a volume may be.
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class VaultError(ConfigurationError):
    """The vault cannot be opened or changed as asked: no master key, a wrong one, a damaged
    file, a missing entry. Exit code 2, like any configuration error."""

    reason = "VaultError"


@dataclass(frozen=True)
class KdfParams:
    """scrypt's cost: N = 2**log2_n, block size r, parallelism p. The default (N=2**17, r=8,
    p=1: 128 MiB, about half a second) is the strength OWASP recommends for scrypt."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """VaultError unless the parameters are ones this code derives keys with."""
        if not (10 <= self.log2_n <= 30 and 1 <= self.r <= 64 and 1 <= self.p <= 16):
            raise VaultError(f"KDF parameters out of range ({self})")
        if 128 * self.r * 2**self.log2_n > MAX_KDF_MEMORY:
            raise VaultError(f"KDF parameters need more than {MAX_KDF_MEMORY >> 20} MiB ({self})")


@dataclass(frozen=True)
class VaultKey:
    """An encryption key with the salt and parameters it was derived with, kept to re-encrypt a
    vault after a change without deriving again. Its repr shows no key."""

    key: bytes
    salt: bytes
    params: KdfParams

    def __repr__(self) -> str:
        return f"VaultKey(salt={self.salt.hex()}, params={self.params})"


def derive_key(master_key: str, salt: bytes | None = None, params: KdfParams | None = None) -> VaultKey:
    """The AES-256 key for `master_key`; a fresh random salt when none is given (a new vault)."""
    if not master_key:
        raise VaultError(f"no master key: set {MASTER_KEY_ENV}")
    params = params or KdfParams()
    params.check()
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    kdf = Scrypt(salt=salt, length=32, n=2**params.log2_n, r=params.r, p=params.p)
    return VaultKey(kdf.derive(master_key.encode()), salt, params)


def encode(entries: Mapping[str, Mapping[str, str]], key: VaultKey, nonce: bytes | None = None) -> bytes:
    """The vault file's bytes: the header, then the entries as JSON, encrypted and authenticated
    together with the header. A fresh random nonce each time unless one is given (tests)."""
    nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_BYTES)
    document = {"format": FORMAT_VERSION, "secrets": {name: dict(keys) for name, keys in entries.items()}}
    plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    length = len(plaintext) + TAG_BYTES
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, key.params.log2_n, key.params.r, key.params.p, key.salt, nonce, length
    )
    return header + AESGCM(key.key).encrypt(nonce, plaintext, header)


def decode(blob: bytes, master_key: str, where: str = "the vault") -> tuple[Entries, VaultKey]:
    """The entries of a vault file and the key that opened it, or VaultError saying why not.
    Nothing is returned unless the whole file authenticates under `master_key`."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise VaultError(f"{where} is not a vault file (it does not start with {MAGIC.decode()})")
    if len(blob) < HEADER_BYTES:
        raise VaultError(f"{where} is truncated: {len(blob)} bytes, shorter than a vault's header")
    _, version, log2_n, r, p, salt, nonce, length = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise VaultError(f"{where} has format {version}; this etl reads format {FORMAT_VERSION}")
    body = blob[HEADER_BYTES:]
    if len(body) != length or length < TAG_BYTES:
        state = "truncated" if len(body) < length else "damaged"
        raise VaultError(
            f"{where} is {state}: {len(body)} bytes of ciphertext where the header says {length}"
        )
    params = KdfParams(log2_n, r, p)
    try:
        params.check()
    except VaultError as wrong:
        raise VaultError(f"{where} is damaged: {wrong}") from None
    key = derive_key(master_key, salt, params)
    try:
        plaintext = AESGCM(key.key).decrypt(nonce, body, blob[:HEADER_BYTES])
    except InvalidTag:
        raise VaultError(
            f"cannot open {where}: wrong {MASTER_KEY_ENV}, or the file was changed or damaged"
        ) from None
    return _entries(json.loads(plaintext), where), key


def _entries(document: Any, where: str) -> Entries:
    # Authenticated, so written by encode(); checked anyway, as a vault outlives versions of etl.
    found = document.get("secrets") if isinstance(document, dict) else None
    if not isinstance(found, dict) or not all(
        isinstance(keys, dict) and all(isinstance(v, str) for v in keys.values()) for keys in found.values()
    ):
        raise VaultError(f"{where} holds no entries in the expected form")
    return {str(name): {str(k): v for k, v in keys.items()} for name, keys in found.items()}


def check_entry_name(name: str, key: str | None = None) -> None:
    """VaultError unless `name` could be a Kubernetes Secret's name and `key` one of its keys, so
    every entry can become a Secret (`export-secret`) as it is named."""
    if len(name) > 253 or not _SECRET_NAME.match(name):
        raise VaultError(
            f"{name!r} is not a Kubernetes Secret name (lower-case letters, digits, '-' and '.')"
        )
    if key is not None and (len(key) > 253 or not _SECRET_KEY.match(key)):
        raise VaultError(f"{key!r} is not a Kubernetes Secret key (letters, digits, '-', '_' and '.')")


def secret_manifest(name: str, entries: Mapping[str, str], namespace: str | None = None) -> str:
    """The Kubernetes Secret holding `entries`, as YAML for `kubectl apply -f -`."""
    metadata: dict[str, str] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(entries.items())},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


# --- the file -------------------------------------------------------------------------------


def vault_path(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """The vault file: `--vault`, else `$ETL_VAULT`, else DEFAULT_VAULT."""
    return (explicit or Path(env.get(VAULT_ENV) or DEFAULT_VAULT)).expanduser()


def master_key(env: Mapping[str, str]) -> str:
    key = env.get(MASTER_KEY_ENV, "")
    if not key:
        raise VaultError(f"{MASTER_KEY_ENV} is not set: the vault's key is derived from it")
    return key


def read_vault(path: Path, master_key: str) -> Entries:
    """The entries of the vault at `path`. Readers take no lock: a writer renames a complete
    file over the vault, so a reader sees the old file or the new one, never half of either."""
    return decode(_read(path), master_key, str(path))[0]


def create_vault(path: Path, master_key: str, params: KdfParams | None = None) -> None:
    """A new, empty vault at `path` with a salt of its own; VaultError if there is one already."""
    with _locked(path):
        if path.exists():
            raise VaultError(f"{path} exists already: a vault is created once")
        _write(path, encode({}, derive_key(master_key, params=params)))


def update_vault(path: Path, master_key: str, change: Callable[[Entries], Entries]) -> Entries:
    """Apply `change` to the vault's entries and write the result, holding the vault's lock from
    the read to the rename, so a concurrent change waits and then sees this one. Keeps the
    file's salt and KDF parameters; each write has a fresh nonce."""
    with _locked(path):
        entries, key = decode(_read(path), master_key, str(path))
        changed = change(entries)
        _write(path, encode(changed, key))
        return changed


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaultError(f"no vault at {path}: create one with `etl vault init`") from None
    except OSError as failed:
        raise VaultError(f"cannot read the vault {path}: {failed.strerror}") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `<vault>.lock` beside the vault (not on the vault itself, which a
    write replaces by rename). Released when the process ends, however it ends."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as failed:
        raise VaultError(f"cannot lock the vault {path}: {failed.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write(path: Path, content: bytes) -> None:
    """Replace `path` by `content` atomically: a temporary file in the same folder, mode 0600
    from its creation, fsynced, renamed over the vault; then the folder is fsynced."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)  # whatever the umask
            view = memoryview(content)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as failed:
        temporary.unlink(missing_ok=True)
        raise VaultError(f"cannot write the vault {path}: {failed.strerror}") from None
