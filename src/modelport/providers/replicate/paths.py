"""What a path after ``/v1`` means to Replicate: a create, one object, a list, or the webhook secret.

Trainings are predictions to Replicate: a training's id also answers at ``/v1/predictions/{id}``, and
its create response points there (research/replicate.md §1.3).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Case-insensitive, in case a server on the way folds case: a guard must not be missed by "/Predictions".
# The one pattern of a prediction's create: by version (``/predictions``), model or deployment.
_PREDICTION_CREATE = re.compile(r"^/(?:predictions|(models|deployments)/([^/]+)/([^/]+)/predictions)/?$", re.I)
# POST path → the kind of object it creates.
_CREATES = (
    (_PREDICTION_CREATE, "prediction"),
    (re.compile(r"^/models/[^/]+/[^/]+/versions/[^/]+/trainings/?$", re.I), "training"),
    (re.compile(r"^/files/?$", re.I), "file"),
)
# One object, any verb: GET, cancel, delete, a file's download.
_ONE = re.compile(r"^/(predictions|trainings|files)/([^/]+)(?:/[^/]*)?/?$", re.I)
_LISTS = re.compile(r"^/(predictions|trainings|files)/?$", re.I)
_WEBHOOK_SECRET = re.compile(r"^/webhooks/default/secret/?$", re.I)


class ObjectRef(NamedTuple):
    collection: str  # "predictions", "trainings" or "files"
    id: str


def created_kind(method: str, path: str) -> str | None:
    """The kind of object ("prediction", "training", "file") a request creates, or None."""
    if method != "POST":
        return None
    return next((kind for pattern, kind in _CREATES if pattern.match(path)), None)


def is_prediction_create(path: str) -> bool:
    """A path that POSTs a new prediction (by version, model or deployment)."""
    return bool(_PREDICTION_CREATE.match(path))


def created_model(path: str) -> tuple[str, str | None] | None:
    """Of a prediction create's path: ``("models" | "deployments", "owner/name")``, or ``("predictions",
    None)`` when the body names the version; None for any other path."""
    found = _PREDICTION_CREATE.match(path)
    if found is None:
        return None
    kind, owner, name = found.groups()
    return (kind.lower(), f"{owner}/{name}") if kind else ("predictions", None)


def object_ref(path: str) -> ObjectRef | None:
    """The object a path names (``/predictions/{id}``, ``/trainings/{id}/cancel``, ``/files/{id}``...)."""
    found = _ONE.match(path)
    return ObjectRef(found.group(1).lower(), found.group(2)) if found else None


def listed_collection(method: str, path: str) -> str | None:
    """"predictions", "trainings" or "files" when the request lists that collection."""
    if method != "GET":
        return None
    found = _LISTS.match(path)
    return found.group(1).lower() if found else None


def is_webhook_secret(path: str) -> bool:
    return bool(_WEBHOOK_SECRET.match(path))


def is_plain(path: str) -> bool:
    """True when the path means to any server what it means to the patterns here. The gateway has
    already collapsed ``//`` and refused dot segments and encoded slashes (gateway/paths.py); what is
    left is a percent-escape, which Replicate's paths never need and a server decodes (``/%70redictions``
    is ``/predictions`` to it, and to none of the patterns above)."""
    return "%" not in path
