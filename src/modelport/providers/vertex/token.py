"""Google access tokens from a service-account key: the OAuth 2.0 JWT bearer grant, cached and shared.

The grant (developers.google.com/identity/protocols/oauth2/service-account, "Preparing to make an
authorized API call"): a JWT signed RS256 with the account's private key, header ``{"alg": "RS256",
"typ": "JWT", "kid": <private_key_id>}``, claims ``iss`` = client_email, ``scope``, ``aud`` = the
key's ``token_uri``, ``iat`` and ``exp`` (at most one hour later); POSTed form-encoded as
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`` to ``token_uri``, which
answers ``{"access_token", "expires_in", "token_type": "Bearer"}`` or, refused,
``{"error": "invalid_grant", "error_description": ...}``.

Tokens are cached per key (by a SHA-256 of the key's JSON, never the key itself), used until
``REFRESH_MARGIN`` before they expire (half their life for short-lived ones), and fetched once however
many requests wait for the same key (single flight). The cache is per worker process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlencode, urlsplit

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ...errors import BadRequest, BadUpstreamResponse, Forbidden, Unauthorized, quoted
from ..base import StepAnswer, UpstreamRequest

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Where real service-account keys send their grants (a key's "token_uri" names one of these). Another
# token host is taken only where the provider's API requests already go (a custom host an admin or the
# caller chose: a private mirror, the test suite's fake), never a third host a key names: a tampered or
# hostile key must not steer the gateway's signed grants (or, SSRF, its requests) anywhere else.
GOOGLE_TOKEN_HOSTS = frozenset({"oauth2.googleapis.com", "www.googleapis.com", "accounts.google.com"})
ASSERTION_LIFETIME = 3600  # seconds; Google refuses more
REFRESH_MARGIN = 300.0  # seconds before expiry a token is replaced (at most half its life)
TOKEN_ANSWER_LIMIT = 64 * 1024  # a token answer is a few hundred bytes
CACHED_ACCOUNTS = 256  # keys whose tokens a worker keeps (each distinct caller-sent key is one)

Fetch = Callable[[UpstreamRequest, int], Awaitable[StepAnswer]]


class CredentialRefused(Unauthorized):
    """The token endpoint refused the service account's grant (a revoked, deleted or wrong key)."""

    code = "vertex_credential_refused"


class TokenUnavailable(BadUpstreamResponse):
    """The token endpoint failed or answered something that is not a token."""

    code = "vertex_token_unavailable"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a service-account key (the JSON file IAM hands out) that the grant needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str
    token_uri: str
    project_id: str | None

    @classmethod
    def parse(cls, raw: str | bytes | Mapping[str, Any]) -> "ServiceAccount":
        """Read a key; a ``BadRequest`` that names what is wrong, never a byte of the key, when it is not one."""
        fields = _as_mapping(raw)
        missing = [name for name in ("client_email", "private_key") if not isinstance(fields.get(name), str)]
        if missing:
            raise BadRequest(f"the Vertex service-account JSON lacks {', '.join(missing)}: use the key file IAM "
                             "created for the account (type service_account)", code="invalid_vertex_credentials")
        email = fields["client_email"]
        try:
            # The key only signs its own account's grant: a malformed one makes a signature Google refuses.
            # Its consistency checks would hold the GIL ~200 ms (measured, 2048-bit), stalling the worker
            # for each new key a caller sends.
            key = serialization.load_pem_private_key(fields["private_key"].encode(), password=None,
                                                     unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise BadRequest(f"the private_key of service account {quoted(email)} is not an RSA private key in PEM "
                             "form", code="invalid_vertex_credentials")
        token_uri = fields.get("token_uri") or DEFAULT_TOKEN_URI
        if not isinstance(token_uri, str) or urlsplit(token_uri).scheme not in ("http", "https"):
            raise BadRequest(f"the token_uri of service account {quoted(email)} is not an http(s) URL",
                             code="invalid_vertex_credentials")
        project = fields.get("project_id")
        return cls(email, key, str(fields.get("private_key_id") or ""), token_uri,
                   project if isinstance(project, str) and project else None)

    def assertion(self, now: float) -> str:
        """The signed JWT of the grant, issued at ``now`` (seconds since the epoch)."""
        header = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        issued = int(now)
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": issued,
                  "exp": issued + ASSERTION_LIFETIME}
        signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}"
        signature = self.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


def account_digest(raw: str | bytes | Mapping[str, Any]) -> str:
    """The cache key of a service-account key: a SHA-256 of its JSON (a mapping in canonical form)."""
    data = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else orjson.dumps(
        raw, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def project_of(raw: str | bytes | Mapping[str, Any]) -> str | None:
    """The ``project_id`` a service-account key names (None when absent or unreadable)."""
    try:
        project = _as_mapping(raw).get("project_id")
    except BadRequest:
        return None
    return project if isinstance(project, str) and project else None


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic() after which the token is replaced


class TokenCache:
    """Access tokens by service-account key, each fetched by one grant however many requests ask at once.
    ``clock`` and ``wall`` are the monotonic and epoch clocks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        # A stored provider's key is the same str object on every request: its digest (11 µs of SHA-256
        # over ~2.4 KB) is remembered by identity, checked with ``is``.
        self._digests: dict[int, tuple[object, str]] = {}
        self._flights: dict[str, asyncio.Future[_Token]] = {}
        self._clock, self._wall = clock, wall
        self.grants = 0  # token requests sent, for tests and metrics

    async def token(self, raw: str | bytes | Mapping[str, Any], fetch: Fetch, api_url: str = "") -> str:
        """A live access token for the key ``raw``, from the cache or from one grant sent through ``fetch``.
        ``api_url`` is where the request it is for goes: its origin is the one token host besides Google's
        that the key's ``token_uri`` may name."""
        digest = self._digest(raw)
        cached = self._tokens.get(digest)
        if cached is not None and self._clock() < cached.refresh_at:
            self._tokens.move_to_end(digest)
            return cached.value
        flight = self._flights.get(digest)
        if flight is None:
            flight = asyncio.ensure_future(self._grant(digest, raw, fetch, api_url))
            self._flights[digest] = flight
            flight.add_done_callback(lambda done: self._landed(digest, done))
        # Shielded: a caller that goes away must not cancel the grant others wait for.
        return (await asyncio.shield(flight)).value

    def _landed(self, digest: str, flight: asyncio.Future[_Token]) -> None:
        self._flights.pop(digest, None)
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have left before a failed grant ended

    def _digest(self, raw: str | bytes | Mapping[str, Any]) -> str:
        if not isinstance(raw, (str, bytes)):  # a mapping may change: hashed each time
            return account_digest(raw)
        remembered = self._digests.get(id(raw))
        if remembered is not None and remembered[0] is raw:
            return remembered[1]
        if len(self._digests) >= 2 * CACHED_ACCOUNTS:
            self._digests.clear()
        digest = account_digest(raw)
        self._digests[id(raw)] = (raw, digest)
        return digest

    async def _grant(self, digest: str, raw: str | bytes | Mapping[str, Any], fetch: Fetch, api_url: str) -> _Token:
        account = ServiceAccount.parse(raw)
        _check_token_host(account, api_url)
        form = urlencode({"grant_type": GRANT_TYPE, "assertion": account.assertion(self._wall())}).encode()
        request = UpstreamRequest("POST", account.token_uri,
                                  {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
                                  form)
        started = self._clock()
        self.grants += 1
        answer = await fetch(request, TOKEN_ANSWER_LIMIT)
        token = _read_token(answer, account.client_email, started)
        self._tokens[digest] = token
        while len(self._tokens) > CACHED_ACCOUNTS:
            self._tokens.popitem(last=False)
        return token



def _check_token_host(account: ServiceAccount, api_url: str) -> None:
    parts = urlsplit(account.token_uri)
    if parts.scheme == "https" and (parts.hostname or "").lower() in GOOGLE_TOKEN_HOSTS:
        return
    if api_url and _origin(account.token_uri) == _origin(api_url):
        return
    raise Forbidden(f"the token_uri of service account {quoted(account.client_email)} names "
                    f"{quoted(parts.netloc)}, neither Google's token endpoint (https://oauth2.googleapis.com/token) "
                    "nor the host the provider's requests go to: the gateway sends its grants to no other host",
                    code="vertex_token_host_refused")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _read_token(answer: StepAnswer, email: str, started: float) -> _Token:
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise TokenUnavailable(f"Google's token endpoint answered {answer.status} for service account {quoted(email)} "
                               "with a body that is not JSON")
    if answer.status != 200:
        reason = f"{data.get('error', 'error')}: {data.get('error_description', '')}".strip(": ")
        if 400 <= answer.status < 500:
            raise CredentialRefused(f"Google refused the key of service account {quoted(email)} "
                                    f"({quoted(reason)}): check that the key is current and the account enabled")
        raise TokenUnavailable(f"Google's token endpoint failed ({answer.status}, {quoted(reason)}) for service "
                               f"account {quoted(email)}")
    value, lifetime = data.get("access_token"), data.get("expires_in")
    if not isinstance(value, str) or not value or not isinstance(lifetime, (int, float)) or lifetime <= 0:
        raise TokenUnavailable(f"Google's token endpoint answered for service account {quoted(email)} without an "
                               "access_token and expires_in")
    # Counted from when the grant was sent: the token's clock started no earlier.
    return _Token(value, started + lifetime - min(REFRESH_MARGIN, lifetime / 2))


def _as_mapping(raw: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BadRequest("the Vertex service-account key is not a JSON object: pass the key file's contents "
                         "(x-portkey-vertex-service-account-json, or vertex_service_account_json)",
                         code="invalid_vertex_credentials")
    return value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

