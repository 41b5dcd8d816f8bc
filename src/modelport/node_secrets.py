"""The gateway's signing keys: the one that signs stream links and the one webhook relay secrets derive from.

Each comes from ``signing_secret`` (``MODELPORT_SIGNING_SECRET``) when it is set: the key for a purpose is
HMAC-SHA256(secret, "modelport/<purpose>"), so one secret yields independent keys and every node given the
same secret signs and verifies alike (a stream link made on one node opens on another; a key's relay secret
is the same whichever node answers). Otherwise each key is a random file in the data directory, made once
(0600) and shared by the workers of that node only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

KEY_BYTES = 32
PURPOSES = ("stream-signing", "webhook-relay")


def signing_key(settings: Any, purpose: str) -> bytes:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown signing purpose {purpose!r}")
    if settings.signing_secret:
        return hmac.new(settings.signing_secret.encode(), f"modelport/{purpose}".encode(), hashlib.sha256).digest()
    return _data_dir_key(Path(settings.data_dir), f"{purpose}.key")


def _data_dir_key(data_dir: Path, name: str) -> bytes:
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker won the race
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
    return path.read_bytes()
