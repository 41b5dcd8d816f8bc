"""How a request reaches Bedrock: SigV4-signed over its exact bytes, with the stored keys or a role's.

Settings (``Target.settings``): ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``
(temporary keys), ``aws_region``, and for a role ``aws_role_arn`` (+ ``aws_external_id``): the stored
keys then only call STS AssumeRole (``POST https://sts.{region}.amazonaws.com/``, form-encoded, XML
answer; docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html), and the role's session keys,
cached until shortly before they expire, sign the Bedrock requests. ``aws_sts_endpoint`` points STS
elsewhere (a VPC endpoint, or the test suite's fake).

No key ever reaches an error message or a log: errors name the setting, never its value.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from calendar import timegm
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from modelport.errors import BadRequest, BadUpstreamResponse, Forbidden, PayloadTooLarge
from modelport.providers.base import Target, Transport, UpstreamRequest
from modelport.providers.bedrock.sigv4 import Credentials, sign

SERVICE = "bedrock"
STS_VERSION = "2011-06-15"
SESSION_NAME = "modelport"
SESSION_SECONDS = 3600
# Session keys are replaced this long before they expire, so none expires on its way to AWS.
REFRESH_MARGIN = 300
STS_ANSWER_LIMIT = 64 * 1024
_STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


@dataclass(frozen=True, slots=True)
class _Session:
    credentials: Credentials
    expires: float


class SigV4Auth:
    """Bedrock's ``ProviderAuth``: signs each request with SigV4 just before it is sent."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, ...], _Session] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None:
        settings = target.settings
        region = _required(settings, "aws_region")
        if not _REGION.fullmatch(region):  # it is part of the host name: nothing else may ride in it
            raise BadRequest(f"'aws_region' must be an AWS region name such as us-east-1, not {region[:40]!r}.",
                             code="invalid_provider_setting")
        if request.stream_body:
            # A body streamed through unread (a proxied upload past the gateway's 4 MiB buffer) cannot be
            # hashed before it is sent, and Bedrock takes only signed payloads.
            raise PayloadTooLarge("Bedrock requests are signed over their body, and bodies over the gateway's "
                                  "4 MiB buffer stream through unread: send a smaller body.")
        credentials = await self.credentials(settings, region, transport, target.api_key)
        request.headers.update(sign(request.method, request.url, request.headers, request.body or b"", credentials,
                                    region, SERVICE))

    async def credentials(self, settings: Mapping[str, Any], region: str, transport: Transport,
                          api_key: str | None = None) -> Credentials:
        """The keys that sign: the stored (or sent) ones, or those of the role they may assume. The secret
        access key is the ``aws_secret_access_key`` setting, else the provider's API key (a stored
        provider's sealed secret)."""
        secret = settings.get("aws_secret_access_key") or api_key
        base = Credentials(_required(settings, "aws_access_key_id"),
                           _required({"aws_secret_access_key": secret}, "aws_secret_access_key"),
                           settings.get("aws_session_token") or None)
        role = settings.get("aws_role_arn")
        if not role:
            return base
        external_id = settings.get("aws_external_id") or ""
        endpoint = (settings.get("aws_sts_endpoint") or f"https://sts.{region}.amazonaws.com").rstrip("/")
        # Keyed by a hash of the secret, so a rotated secret takes a fresh session at once.
        key = (base.access_key_id, hashlib.sha256(base.secret_access_key.encode()).hexdigest(), role, external_id,
               region, endpoint)
        session = self._sessions.get(key)
        if session is None or session.expires - time.time() < REFRESH_MARGIN:
            async with self._locks.setdefault(key, asyncio.Lock()):  # one AssumeRole for concurrent requests
                session = self._sessions.get(key)
                if session is None or session.expires - time.time() < REFRESH_MARGIN:
                    session = await assume_role(base, role, external_id, region, endpoint, transport)
                    self._sessions[key] = session
        return session.credentials


async def assume_role(base: Credentials, role: str, external_id: str, region: str, endpoint: str,
                      transport: Transport) -> _Session:
    form = {"Action": "AssumeRole", "Version": STS_VERSION, "RoleArn": role, "RoleSessionName": SESSION_NAME,
            "DurationSeconds": str(SESSION_SECONDS)}
    if external_id:
        form["ExternalId"] = external_id
    body = urlencode(form).encode()
    url = f"{endpoint}/"
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8", "accept": "text/xml"}
    headers.update(sign("POST", url, headers, body, base, region, "sts"))
    answer = await transport.fetch(UpstreamRequest("POST", url, headers, body), STS_ANSWER_LIMIT)
    import xml.etree.ElementTree as ElementTree  # here: only a role needs it, and the CLI loads this module
    try:
        root = ElementTree.fromstring(answer.body)
    except ElementTree.ParseError:
        raise BadUpstreamResponse(f"AWS STS at {urlsplit(endpoint).netloc} answered AssumeRole with HTTP "
                                  f"{answer.status} and a body that is not XML.") from None
    if answer.status != 200:
        code = root.findtext(f"{_STS_NS}Error/{_STS_NS}Code") or f"HTTP {answer.status}"
        message = root.findtext(f"{_STS_NS}Error/{_STS_NS}Message") or ""
        raise Forbidden(f"AWS STS refused to assume role {role!r} ({code}): {message}"[:1000], code="assume_role_refused")
    found = root.find(f"{_STS_NS}AssumeRoleResult/{_STS_NS}Credentials")
    fields = {name: found.findtext(f"{_STS_NS}{name}") if found is not None else None
              for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    if not all(fields.values()):
        raise BadUpstreamResponse("AWS STS answered AssumeRole without credentials.")
    try:
        expires = timegm(time.strptime(fields["Expiration"].split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise BadUpstreamResponse("AWS STS answered AssumeRole with an Expiration that is not a time.") from None
    credentials = Credentials(fields["AccessKeyId"], fields["SecretAccessKey"], fields["SessionToken"])
    return _Session(credentials, expires)


def _required(settings: Mapping[str, Any], name: str) -> str:
    value = settings.get(name)
    if not value or not isinstance(value, str):
        header = "x-portkey-" + name.replace("_", "-")
        raise BadRequest(f"Provider 'bedrock' needs '{name}' (header {header}, or a stored provider's setting).",
                         code="missing_provider_setting")
    return value


AUTH = SigV4Auth()
