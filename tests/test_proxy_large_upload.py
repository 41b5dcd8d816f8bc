"""A 100 MB upload streams through the gateway without being held in memory."""

from __future__ import annotations

import hashlib

import httpx
import pytest

pytestmark = pytest.mark.slow

CHUNK = bytes(range(256)) * 4096  # 1 MiB
SIZE_MB = 96  # Replicate refuses files of 100 MB and more


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def multipart(boundary: bytes):
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="content"; filename="big.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    tail = b"\r\n--" + boundary + b"--\r\n"
    length = len(head) + SIZE_MB * len(CHUNK) + len(tail)

    def body():
        yield head
        for _ in range(SIZE_MB):
            yield CHUNK
        yield tail

    return length, body()


def test_100mb_upload_streams_with_bounded_gateway_memory(gateway, fake_replicate):
    before = peak_rss_mb(gateway.process.pid)
    boundary = b"modelport-test-boundary"
    length, body = multipart(boundary)
    headers = gateway.headers(**{
        "x-portkey-provider": "@replicate-test",
        "Content-Type": "multipart/form-data; boundary=" + boundary.decode(),
        "Content-Length": str(length),
    })
    response = httpx.post(gateway.v1 + "/files", content=body, headers=headers, timeout=120)
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert uploaded["size"] == SIZE_MB * len(CHUNK)
    expected = hashlib.sha256()
    for _ in range(SIZE_MB):
        expected.update(CHUNK)
    assert uploaded["checksums"]["sha256"] == expected.hexdigest()
    growth = peak_rss_mb(gateway.process.pid) - before
    assert growth < 40, f"gateway peak memory grew by {growth:.0f} MB for a {SIZE_MB} MB upload"
