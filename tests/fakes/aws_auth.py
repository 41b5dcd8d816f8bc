"""What AWS checks before any service looks at a request, for the fake Bedrock and the fake STS.

The SigV4 signature is recomputed with botocore (an implementation independent of the gateway's) over
the exact bytes received: the method, the path and query as sent, the headers the client listed in
``SignedHeaders`` with the values received (``host`` included), and the body. Refusals carry AWS's
status, ``x-amzn-errortype`` and message: a missing ``authorization`` (MissingAuthenticationToken), an
unknown key or a wrong session token (UnrecognizedClient), a date more than 5 minutes off, a scope for
another region or service, a ``x-amz-content-sha256`` that is not the body's, or a signature that does
not match (InvalidSignature).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW = 300  # seconds; AWS refuses a request dated more than 5 minutes from its clock
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})")
MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass
class KeyPair:
    secret: str
    session_token: str | None = None


@dataclass
class AwsAccount:
    """The keys AWS knows (long-term ones, and session ones that STS issued) and the region served."""

    region: str
    keys: dict[str, KeyPair] = field(default_factory=dict)
    clock_offset: float = 0.0  # the fake's clock is this many seconds ahead of the test's

    def now(self) -> float:
        return time.time() + self.clock_offset


class Refused(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def check_signature(request: web.Request, body: bytes, account: AwsAccount, service: str) -> str:
    """The access key id of a correctly signed request, or ``Refused``."""
    header = request.headers.get("authorization")
    if not header:
        raise Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    found = _AUTHORIZATION.fullmatch(header)
    if found is None:
        raise Refused(403, "IncompleteSignatureException", f"Authorization header requires 'Credential', "
                      f"'Signature' and 'SignedHeaders' parameters. Authorization={header[:40]}")
    pair = account.keys.get(found["key"])
    if pair is None or (pair.session_token or None) != request.headers.get("x-amz-security-token"):
        raise Refused(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    stamp = request.headers.get("x-amz-date", "")
    try:
        when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise Refused(403, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.") from None
    if abs(account.now() - when) > MAX_SKEW:
        raise Refused(403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier than "
                      f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(account.now() - MAX_SKEW))} "
                      f"({time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(account.now()))} - 5 min.)")
    if found["date"] != stamp[:8] or found["region"] != account.region or found["service"] != service:
        raise Refused(403, "InvalidSignatureException", f"Credential should be scoped to a valid region, "
                      f"service and date: {found['date']}/{found['region']}/{found['service']}.")
    signed = found["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise Refused(403, "InvalidSignatureException", "Host and x-amz-date must be signed.")
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise Refused(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not "
                      "match what was computed.")
    expected = _botocore_signature(request, body, signed, pair, found["key"], service, account.region)
    if not hmac.compare_digest(expected, found["signature"]):
        raise Refused(403, "InvalidSignatureException", MISMATCH)
    return found["key"]


def _botocore_signature(request: web.Request, body: bytes, signed: list[str], pair: KeyPair, key_id: str,
                        service: str, region: str) -> str:
    headers = {}
    for name in signed:
        values = request.headers.getall(name, None)
        if values is None:
            raise Refused(403, "InvalidSignatureException", f"Signed header {name!r} is missing.")
        headers[name] = ",".join(values)
    url = f"http://{request.headers.get('host', '')}{request.raw_path}"
    aws_request = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws_request.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(key_id, pair.secret, pair.session_token), service, region)
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
