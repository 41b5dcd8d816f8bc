"""The fake's models and what each one does when run.

Tests pick behaviour by model name:

- ``test/echo``: output is ``input["text"]`` (or ``prompt``); predict_time 1.5 s on ``cpu``.
- ``test/llm``: output is a list of tokens (the prompt's words, whitespace kept), cut at
  ``max_new_tokens``/``max_tokens``; token counts in metrics; streams over SSE; iterator output schema.
- ``test/chat``: a language model that takes ``messages`` (an OpenAI-style list, as Replicate's hosted
  chat models do), ``max_tokens``, ``temperature``, ``top_p`` and ``stop_sequences``; output is the last
  user message's words as tokens; token counts in metrics; streams over SSE.
- ``test/image``: output is ``num_outputs`` URLs under ``/delivery/`` on the fake itself (standing in
  for replicate.delivery), each a small PNG.
- ``test/flux``: one picture per prediction (no ``num_outputs``), an ``aspect_ratio`` enum declared by
  ``$ref`` as Cog writes it (``components.schemas.aspect_ratio``).
- ``test/fail``: fails with an error.

Inputs are validated against the version's schema as Replicate does (422 "Input validation failed"):
required properties, ``minimum``/``maximum`` and enums. Undeclared inputs are ignored, as Cog ignores them.

``input["predict_time"]`` (a number) overrides the model's default predict_time, so cost can be
asserted per request without scripting. It is a convention of this fake only.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.replicate_state import Job, invalid, now, timestamp

ACCOUNT = {
    "type": "organization",
    "username": "test",
    "name": "ModelPort Test",
    "github_url": None,
    "avatar_url": "https://example.invalid/avatar.png",
}

# GET /v1/hardware returns a bare JSON array, not a page [spec; recorded].
HARDWARE = [
    {"sku": "cpu", "name": "CPU"},
    {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    {"sku": "gpu-a40-small", "name": "Nvidia A40 GPU"},
    {"sku": "gpu-a40-large", "name": "Nvidia A40 (Large) GPU"},
    {"sku": "gpu-l40s", "name": "Nvidia L40S GPU"},
    {"sku": "gpu-a100-large", "name": "Nvidia A100 (80GB) GPU"},
    {"sku": "gpu-h100", "name": "Nvidia H100 GPU"},
]
HARDWARE_SKUS = frozenset(h["sku"] for h in HARDWARE)

COLLECTIONS = [
    {
        "slug": "text-generation",
        "name": "Text generation",
        "description": "Models that write text.",
        "models": ["test/llm", "test/echo"],
    },
    {
        "slug": "image-generation",
        "name": "Image generation",
        "description": "Models that draw.",
        "models": ["test/image"],
    },
]

# Replicate's docs and replicate-python's tests use the Standard Webhooks reference secret.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

_CREATED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
_WORDS = re.compile(r"\s*\S+")


@dataclass
class FakeVersion:
    id: str
    openapi_schema: dict[str, Any]
    created_at: str = timestamp(_CREATED)
    cog_version: str = "0.9.4"

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "cog_version": self.cog_version,
            "openapi_schema": self.openapi_schema,
        }


@dataclass
class FakeModel:
    owner: str
    name: str
    seq: int
    description: str = ""
    behaviour: str | None = None
    hardware: str = "cpu"
    predict_time: float = 1.5
    visibility: str = "public"
    streams: bool = False
    versions: list[FakeVersion] = field(default_factory=list)
    urls: dict[str, str | None] = field(default_factory=dict)
    readme: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def version(self, version_id: str) -> FakeVersion | None:
        return next((v for v in self.versions if v.id == version_id), None)

    def json(self, run_count: int) -> dict[str, Any]:
        return {
            "url": f"https://replicate.com/{self.full_name}",
            "owner": self.owner,
            "name": self.name,
            "description": self.description,
            "visibility": self.visibility,
            "github_url": self.urls.get("github_url"),
            "paper_url": self.urls.get("paper_url"),
            "license_url": self.urls.get("license_url"),
            "cover_image_url": self.urls.get("cover_image_url"),
            "run_count": run_count,
            "default_example": None,
            "latest_version": self.versions[-1].json() if self.versions else None,
            "is_official": False,
        }


def version_id(full_name: str, number: int = 1) -> str:
    return hashlib.sha256(f"{full_name}:{number}".encode()).hexdigest()


def cog_schema(inputs: dict[str, Any], required: list[str], output: dict[str, Any],
               enums: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a Cog OpenAPI document clients read: ``components.schemas.Input``/``Output``, and
    the enums inputs refer to."""
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {
            "schemas": {
                "Input": {"type": "object", "title": "Input", "required": required, "properties": inputs},
                "Output": {"title": "Output", **output},
                **(enums or {}),
            }
        },
    }


def seed_models() -> dict[str, FakeModel]:
    text = {"type": "string", "title": "Text", "x-order": 0}
    prompt = {"type": "string", "title": "Prompt", "x-order": 0}
    llm_inputs = {
        "prompt": prompt,
        "system_prompt": {"type": "string", "title": "System Prompt", "default": "", "x-order": 1},
        "max_new_tokens": {
            "type": "integer",
            "title": "Max New Tokens",
            "default": 128,
            "minimum": 1,
            "x-order": 2,
        },
    }
    image_inputs = {
        "prompt": prompt,
        "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
    }
    chat_inputs = {
        "messages": {"type": "array", "items": {"type": "object"}, "title": "Messages", "x-order": 0},
        "max_tokens": {"type": "integer", "default": 512, "minimum": 1, "x-order": 1},
        "temperature": {"type": "number", "default": 0.7, "minimum": 0, "maximum": 2, "x-order": 2},
        "top_p": {"type": "number", "default": 1, "minimum": 0, "maximum": 1, "x-order": 3},
        "stop_sequences": {"type": "string", "title": "Stop Sequences", "x-order": 4,
                           "description": "A comma-separated list of sequences to stop generation at."},
    }
    ratios = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
    flux_inputs = {
        "prompt": prompt,
        "aspect_ratio": {"allOf": [{"$ref": "#/components/schemas/aspect_ratio"}], "default": "1:1", "x-order": 1},
    }
    # replicate-python switches to iterator handling on exactly this Output shape (run.py).
    iterator = {
        "type": "array",
        "items": {"type": "string"},
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    }
    specs = [
        (
            "echo",
            "Echoes its text input.",
            "cpu",
            1.5,
            False,
            cog_schema({"text": text}, ["text"], {"type": "string"}),
        ),
        (
            "llm",
            "A language model that streams tokens.",
            "gpu-a40-large",
            2.5,
            True,
            cog_schema(llm_inputs, ["prompt"], iterator),
        ),
        (
            "image",
            "Draws small PNGs.",
            "gpu-l40s",
            4.0,
            False,
            cog_schema(
                image_inputs, ["prompt"], {"type": "array", "items": {"type": "string", "format": "uri"}}
            ),
        ),
        ("fail", "Always fails.", "cpu", 0.5, False, cog_schema({"text": text}, [], {"type": "string"})),
        ("chat", "A chat model that takes messages.", "gpu-a40-large", 2.0, True,
         cog_schema(chat_inputs, ["messages"], iterator)),
        ("flux", "Draws one picture in a chosen aspect ratio.", "gpu-h100", 3.0, False,
         cog_schema(flux_inputs, ["prompt"], {"type": "array", "items": {"type": "string", "format": "uri"}},
                    {"aspect_ratio": {"title": "aspect_ratio", "description": "An enumeration.", "enum": ratios,
                                      "type": "string"}})),
    ]
    models = {}
    for seq, (name, description, hardware, predict_time, streams, schema) in enumerate(specs, start=1):
        full = f"test/{name}"
        models[full] = FakeModel(
            owner="test",
            name=name,
            seq=seq,
            description=description,
            behaviour="image" if name == "flux" else name,
            hardware=hardware,
            predict_time=predict_time,
            streams=streams,
            versions=[FakeVersion(version_id(full), schema)],
            readme=f"# {full}\n\n{description}\n",
        )
    return models


def seed_deployments(models: dict[str, FakeModel]) -> dict[str, dict[str, Any]]:
    llm = models["test/llm"]
    deployment = deployment_json(
        "test", "llm-prod", llm.full_name, llm.versions[-1].id, "gpu-a40-large", 0, 2, 1
    )
    return {"test/llm-prod": deployment}


def deployment_json(
    owner: str,
    name: str,
    model: str,
    version: str,
    hardware: str,
    min_instances: int,
    max_instances: int,
    number: int,
) -> dict[str, Any]:
    return {
        "owner": owner,
        "name": name,
        "current_release": {
            "number": number,
            "model": model,
            "version": version,
            "created_at": timestamp(now()),
            "created_by": {k: ACCOUNT[k] for k in ("type", "username", "name", "avatar_url", "github_url")},
            "configuration": {
                "hardware": hardware,
                "min_instances": min_instances,
                "max_instances": max_instances,
            },
        },
    }


def check_input(model: FakeModel, version: FakeVersion, values: dict[str, Any]) -> None:
    """Reject inputs missing a required property of the version's Input schema."""
    schemas = version.openapi_schema["components"]["schemas"]
    schema = schemas["Input"]
    problems = [("required", "input", f"input: {name} is required") for name in schema.get("required", [])
                if name not in values]
    for name, value in values.items():
        declared = schema.get("properties", {}).get(name)
        if not isinstance(declared, dict):
            continue  # Cog ignores inputs it does not declare
        for part in declared.get("allOf", []):
            declared = {**schemas.get(part.get("$ref", "").rsplit("/", 1)[-1], {}), **declared}
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and "minimum" in declared and value < declared["minimum"]:
            problems.append(("number_gte", f"input.{name}", f"input.{name}: Must be greater than or equal to {declared['minimum']}"))
        if number and "maximum" in declared and value > declared["maximum"]:
            problems.append(("number_lte", f"input.{name}", f"input.{name}: Must be less than or equal to {declared['maximum']}"))
        if "enum" in declared and value not in declared["enum"]:
            allowed = ", ".join(f'"{choice}"' for choice in declared["enum"])
            problems.append(("enum", f"input.{name}", f"input.{name}: {name} must be one of the following: {allowed}"))
    if problems:
        raise invalid(*problems)


def plan_output(model: FakeModel, job: Job, api_origin: str) -> Any:
    """The output a successful run produces; computed at create so streams and polls agree."""
    values = job.input
    if model.behaviour == "echo":
        return values.get("text", values.get("prompt", ""))
    if model.behaviour == "llm":
        limit = values.get("max_new_tokens", values.get("max_tokens", 128))
        return tokens(str(values.get("prompt", "")))[: int(limit)]
    if model.behaviour == "chat":
        said = [m.get("content") for m in values.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return tokens(str(said[-1] if said else ""))[: int(values.get("max_tokens", 512))]
    if model.behaviour == "image":
        count = int(values.get("num_outputs", 1))
        return [f"{api_origin}/delivery/{job.id}/out-{i}.png" for i in range(count)]
    return None


def default_outcome(model: FakeModel) -> str:
    return "failed" if model.behaviour == "fail" else "succeeded"


def default_error(model: FakeModel) -> str:
    return f"Prediction failed for {model.full_name}: the fake model was asked to fail"


def run_metrics(model: FakeModel | None, job: Job, output: Any) -> dict[str, Any]:
    """Deterministic metrics for a terminal job; ``predict_time`` is what cost is computed from."""
    chosen = job.input.get("predict_time")
    fallback = model.predict_time if model else 30.0
    predict_time = (
        float(chosen) if isinstance(chosen, (int, float)) and not isinstance(chosen, bool) else fallback
    )
    metrics: dict[str, Any] = {"predict_time": predict_time, "total_time": round(predict_time + 0.25, 6)}
    if model is not None and model.behaviour in ("llm", "chat"):
        prompt = tokens(str(job.input.get("prompt", ""))) + tokens(str(job.input.get("system_prompt", "")))
        prompt += [t for m in job.input.get("messages", []) if isinstance(m, dict) for t in tokens(str(m.get("content", "")))]
        produced = len(output) if isinstance(output, list) else 0
        metrics |= {
            "input_token_count": len(prompt),
            "output_token_count": produced,
            "tokens_per_second": round(produced / predict_time, 6) if predict_time else 0.0,
            "time_to_first_token": 0.1,
        }
    return metrics


def tokens(text: str) -> list[str]:
    """Split into word tokens that keep their leading whitespace, newlines included."""
    return _WORDS.findall(text)


def png(seed: str) -> bytes:
    """A valid 2x2 PNG whose colour depends on ``seed``."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes([r, g, b]) * 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * 2))
        + chunk(b"IEND", b"")
    )
