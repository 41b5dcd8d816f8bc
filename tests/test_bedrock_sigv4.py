"""SigV4 signing (providers/bedrock/sigv4.py): AWS's published test suite, and botocore as an
independent second implementation over the requests Bedrock actually gets."""

from __future__ import annotations

import calendar
import hashlib
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from modelport.providers.bedrock import sigv4
from modelport.providers.bedrock.sigv4 import Credentials
from tests.conftest import BEDROCK_KEY_ID, BEDROCK_SECRET

# aws-sig-v4-test-suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html): AWS's
# example key, signed at 2015-08-30T12:36:00Z for us-east-1 / "service". The suite signs no
# x-amz-content-sha256 header, so these cases sign without it.
SUITE_KEY = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = calendar.timegm((2015, 8, 30, 12, 36, 0))
SUITE_TOKEN = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIY"
               "RqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9"
               "HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr"
               "4rvx3iSIlTJabIQwj2ICCR/oLxBA==")
SUITE = [
    ("get-vanilla", "GET", "https://example.amazonaws.com/", {}, b"", None,
     "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", "POST", "https://example.amazonaws.com/", {}, b"", None,
     "host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("get-vanilla-query-order-key-case", "GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", {},
     b"", None, "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-x-www-form-urlencoded", "POST", "https://example.amazonaws.com/",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1", None,
     "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("post-sts-header-before", "POST", "https://example.amazonaws.com/", {}, b"", SUITE_TOKEN,
     "host;x-amz-date;x-amz-security-token", "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
]


@pytest.mark.parametrize("name,method,url,headers,body,token,signed,signature", SUITE, ids=[case[0] for case in SUITE])
def test_aws_test_suite(name, method, url, headers, body, token, signed, signature):
    credentials = Credentials(SUITE_KEY.access_key_id, SUITE_KEY.secret_access_key, token)
    added = sigv4.sign(method, url, headers, body, credentials, "us-east-1", "service", now=SUITE_TIME,
                       payload_header=False)
    assert added["x-amz-date"] == "20150830T123600Z"
    assert added["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}")


def botocore_signature(method: str, url: str, headers: dict[str, str], body: bytes, credentials: Credentials,
                       region: str, service: str) -> str:
    """botocore's signature over the headers we signed, at our x-amz-date."""
    names = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in names if name != "host"})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(BotoCredentials(credentials.access_key_id, credentials.secret_access_key,
                                       credentials.session_token), service, region)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


BEDROCK_CASES = [
    ("converse", "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse",
     None),
    ("inference profile", "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.meta.llama3-2-11b-instruct-v1%3A0/converse-stream",
     "FQoGZXIvYXdzEXAMPLE//token+/="),
    ("local port and query", "http://127.0.0.1:8123/model/amazon.nova-pro-v1%3A0/converse?a=b%20c&A=1", None),
]


@pytest.mark.parametrize("name,url,token", BEDROCK_CASES, ids=[case[0] for case in BEDROCK_CASES])
def test_botocore_accepts_our_signature(name, url, token):
    credentials = Credentials(BEDROCK_KEY_ID, BEDROCK_SECRET, token)
    body = '{"messages":[{"role":"user","content":[{"text":"héllo"}]}]}'.encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    region = "us-west-2" if "us-west-2" in url else "us-east-1"
    now = time.time()
    added = sigv4.sign("POST", url, headers, body, credentials, region, "bedrock", now=now)
    assert added["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert ("x-amz-security-token" in added) == bool(token)
    ours = added["authorization"].rsplit("Signature=", 1)[1]
    assert ours == botocore_signature("POST", url, {**{k.lower(): v for k, v in headers.items()}, **added},
                                      body, credentials, region, "bedrock")
    # One changed body byte is another signature: the body is what is signed.
    other = sigv4.sign("POST", url, headers, body + b" ", credentials, region, "bedrock", now=now)
    assert other["authorization"] != added["authorization"]


def test_model_id_colon_is_signed_as_sent():
    assert sigv4.canonical_uri("/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse") == \
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%253A0/converse"
    assert sigv4.canonical_uri("/a/./b/../c") == "/a/c"


def test_secrets_stay_out_of_repr():
    text = repr(Credentials("AKIDEXAMPLE", "the-secret", "the-token"))
    assert "AKIDEXAMPLE" in text and "the-secret" not in text and "the-token" not in text
