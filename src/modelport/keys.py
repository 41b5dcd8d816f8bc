"""Gateway API keys: generation, hashing, verification, and masking of secrets for display.

A key is ``mp-`` followed by 43 base62 characters (43 × log2(62) ≈ 256 bits). Only its SHA-256 is
stored. A fast hash is enough here: with 256 bits of entropy no guessing attack is feasible, and a slow
hash (bcrypt, scrypt) would cost milliseconds on every request (OWASP Password Storage Cheat Sheet
reserves slow hashes for low-entropy, human-chosen secrets).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

API_KEY_PREFIX = "mp-"
API_KEY_BODY_LENGTH = 43
VISIBLE_PREFIX_LENGTH = 10  # "mp-" + 7 characters: enough to tell keys apart in a list, useless to guess with

_BASE62 = string.digits + string.ascii_letters


def generate_api_key() -> tuple[str, str, str]:
    """Return ``(plaintext, visible_prefix, sha256_hex)`` for a new random gateway API key."""
    body = "".join(secrets.choice(_BASE62) for _ in range(API_KEY_BODY_LENGTH))
    token = API_KEY_PREFIX + body
    return token, visible_prefix(token), hash_api_key(token)


def visible_prefix(token: str) -> str:
    """The part of a key that may be shown in lists and logs."""
    return token[:VISIBLE_PREFIX_LENGTH]


def hash_api_key(token: str) -> str:
    """SHA-256 of the key as lowercase hex: the only form in which a key is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify_api_key(token: str, key_hash: str) -> bool:
    """Whether ``token`` hashes to ``key_hash``, compared in constant time."""
    return hmac.compare_digest(hash_api_key(token), key_hash.lower())


def mask_secret(secret: str) -> str:
    """A hint that lets a person recognise a secret without revealing it, e.g. ``r8_t…oken``.

    At most a quarter of the secret is shown (never more than 4 characters at each end), so a short
    secret reveals almost nothing: ``r8_test_token`` becomes ``r…n``.
    """
    shown = min(4, len(secret) // 8)
    if shown == 0:
        return "…"
    return f"{secret[:shown]}…{secret[-shown:]}"
