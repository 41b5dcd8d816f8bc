"""Encryption at rest for provider credentials: AES-256-GCM under a master key, with key rotation.

A ciphertext is text: ``v1:<key_id>:<nonce>:<ciphertext+tag>`` (nonce and ciphertext in unpadded
URL-safe base64). ``key_id`` names the master key that sealed it, derived from the key itself, so a
vault holding several keys (during a rotation) knows which one opens it. Every ciphertext is bound to
a *context* string (the store passes ``provider:<slug>``) as AES-GCM associated data, so a ciphertext
copied into another record fails to decrypt instead of handing one record's secret to another.

Where the master key comes from (decided by ``Vault.open``):
- ``master_key`` given (Settings reads ``MODELPORT_MASTER_KEY``): base64 or hex of 32 bytes. A
  comma-separated list is a keyring: the first key seals, the others only open. That is how processes
  keep reading while another one rotates: run them with ``<old>,<new>``, rotate, then restart with
  ``<new>``.
- otherwise the key file ``<data_dir>/master.key`` (0600), generated on first use: one base64 key
  per line, the last line seals. Rotation appends the new key before re-encrypting and removes the old
  ones after, and every process re-reads the file when it meets a key id it does not know, so processes
  sharing the data dir follow a rotation without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = "v1"
KEY_FILE_NAME = "master.key"
KEY_BYTES = 32
NONCE_BYTES = 12  # the size AES-GCM is specified for (NIST SP 800-38D §8.2)

log = logging.getLogger("modelport.vault")


class VaultError(Exception):
    """A master key is malformed, or a ciphertext cannot be opened (wrong key, tampered, moved)."""


class SecretStore(Protocol):
    """What a rotation needs from the store: re-seal every stored secret in one transaction."""

    def reencrypt_secrets(self, vault: "Vault") -> int: ...


def generate_master_key() -> str:
    """A new random master key, as base64 text fit for ``MODELPORT_MASTER_KEY``."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_master_key(text: str) -> bytes:
    """Decode a master key written as 64 hex digits or as base64 (standard or URL-safe) of 32 bytes."""
    text = text.strip()
    # Hex is tried first: 64 hex digits are also valid base64, but of 48 bytes, never 32.
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise VaultError("a master key must be 32 bytes written as base64 or as 64 hex digits")
    return raw


def key_id(key: bytes) -> str:
    """A short public name for a master key (a hash of it; reveals nothing usable about a random key)."""
    return hashlib.sha256(b"modelport master key id\x00" + key).hexdigest()[:12]


class Vault:
    """Seals and opens secrets with a keyring of master keys; the newest key seals."""

    def __init__(self, keys: list[bytes], key_file: Path | None = None) -> None:
        if not keys:
            raise VaultError("a vault needs at least one master key")
        self._key_file = key_file
        self._file_stamp: tuple[int, int, int] | None = None
        self._set_keys(keys)

    @classmethod
    def open(cls, data_dir: Path, master_key: str | None) -> "Vault":
        """The vault for a data dir: ``master_key`` if given, else the key file (created once)."""
        if master_key:
            keys = [parse_master_key(part) for part in master_key.split(",") if part.strip()]
            # Given "<current>,<older>...", the current key must seal, so it goes last in the ring.
            return cls(list(reversed(keys)))
        key_file = Path(data_dir) / KEY_FILE_NAME
        if not key_file.exists():
            _create_key_file(key_file)
        vault = cls(_read_key_file(key_file), key_file=key_file)
        vault._file_stamp = _stamp(key_file)
        return vault

    @property
    def key_file(self) -> Path | None:
        """The key file this vault follows, or None when the key came from ``MODELPORT_MASTER_KEY``."""
        return self._key_file

    @property
    def current_key_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def encrypt(self, secret: str, context: str) -> str:
        """Seal ``secret`` under the current master key, bound to ``context``."""
        self._follow_key_file()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, secret.encode(), context.encode())
        return ":".join((FORMAT_VERSION, self._current_id, _b64(nonce), _b64(sealed)))

    def decrypt(self, token: str, context: str) -> str:
        """Open a ciphertext made by ``encrypt`` with the same ``context``."""
        try:
            version, kid, nonce, sealed = token.split(":")
        except ValueError:
            raise VaultError("not a ModelPort ciphertext") from None
        if version != FORMAT_VERSION:
            raise VaultError(f"unsupported ciphertext version {version!r}")
        if kid not in self._keys:
            self._follow_key_file(force=True)
        aead = self._keys.get(kid)
        if aead is None:
            raise VaultError(f"the secret was sealed with master key {kid}, which this vault does not hold")
        try:
            return aead.decrypt(_unb64(nonce), _unb64(sealed), context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultError(f"the secret for {context} cannot be opened: wrong key, tampered or moved") from None

    def is_current(self, token: str) -> bool:
        """Whether a ciphertext is already sealed with the current key (rotation skips nothing else)."""
        return token.split(":", 2)[1:2] == [self._current_id]

    def rotate(self, new_key: bytes, store: SecretStore) -> int:
        """Make ``new_key`` the sealing key and re-encrypt every stored secret under it.

        The old keys stay readable until the store has committed, so a failure leaves every secret
        readable. With a key file, the new key is written before the re-encryption (other processes
        pick it up) and the old keys are dropped after it. Returns the number of secrets re-sealed.
        """
        if len(new_key) != KEY_BYTES:
            raise VaultError("a master key must be 32 bytes")
        if key_id(new_key) in self._keys:
            raise VaultError("the new master key is already in the keyring")
        self._set_keys([*self._raw_keys, new_key])
        self._save_key_file()
        count = store.reencrypt_secrets(self)
        self._set_keys([new_key])
        self._save_key_file()
        return count

    def _set_keys(self, keys: list[bytes]) -> None:
        for key in keys:
            if len(key) != KEY_BYTES:
                raise VaultError("a master key must be 32 bytes")
        self._raw_keys = list(keys)
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self._current_id = key_id(keys[-1])

    def _follow_key_file(self, force: bool = False) -> None:
        """Re-read the key file if another process rotated it (cheap: one stat)."""
        if self._key_file is None:
            return
        stamp = _stamp(self._key_file)
        if stamp is not None and (force or stamp != self._file_stamp):
            self._set_keys(_read_key_file(self._key_file))
            self._file_stamp = stamp

    def _save_key_file(self) -> None:
        if self._key_file is None:
            return
        _write_private(self._key_file, "".join(base64.b64encode(k).decode() + "\n" for k in self._raw_keys))
        self._file_stamp = _stamp(self._key_file)

    def __repr__(self) -> str:
        return f"Vault(current={self._current_id}, keys={len(self._keys)})"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_key_file(path: Path) -> list[bytes]:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("master key file %s is readable by other users (mode %o); run: chmod 600 %s", path, mode, path)
    lines = [line.strip() for line in path.read_text().splitlines()]
    keys = [parse_master_key(line) for line in lines if line and not line.startswith("#")]
    if not keys:
        raise VaultError(f"master key file {path} holds no key")
    return keys


def _create_key_file(path: Path) -> None:
    """Write a fresh key file unless another process just did: the first to link it wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_new_private(temp, generate_master_key() + "\n")
    try:
        os.link(temp, path)  # atomic and refuses to replace: two processes starting at once agree on one key
    except FileExistsError:
        pass
    finally:
        temp.unlink()


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text``."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_new_private(temp, text)
    os.replace(temp, path)


def _write_new_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
