"""The request path, normalised once before anything routes on it.

Every later step (the unified endpoint, conditions on ``url.pathname``, a provider's model-in-path
rule, the upstream URL) reads the path this returns, so no two of them can disagree about it. The
proxy route forwards the path byte for byte after a stored provider's base URL: a dot segment, plain
or percent-encoded, would let the upstream resolve it above that base (``/v1/../admin``) with the stored
credential attached, and an encoded slash or a backslash splits a segment differently upstream than
here. Those are refused. Empty segments (``//``) carry no meaning for any provider we speak to, so they
are collapsed: ``/v1//chat/completions`` is ``/v1/chat/completions`` for routing and upstream alike.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ..errors import BadRequest

_EMPTY_SEGMENTS = re.compile(r"/{2,}")
# %2F (slash), %5C (backslash): servers that decode them split the segment where we did not.
_SPLITTING = re.compile(r"%2f|%5c|\\", re.IGNORECASE)


class InvalidPath(BadRequest):
    code = "invalid_path"


def normalised_path(path: str) -> str:
    """``path`` (after ``/v1``, still percent-encoded) with empty segments collapsed; refuses what could
    reach outside a stored provider's base path."""
    if _SPLITTING.search(path):
        raise InvalidPath("the request path may not contain an encoded slash or a backslash (%2F, %5C, \\); "
                          "send each path segment as it is")
    path = _EMPTY_SEGMENTS.sub("/", path)
    if "." in path or "%" in path:  # cheap test first: nearly every path has neither
        for segment in path.split("/"):
            if unquote(segment) in (".", ".."):
                raise InvalidPath("the request path may not contain '.' or '..' segments (plain or percent-encoded); "
                                  "send the path the resource really has")
    return path
