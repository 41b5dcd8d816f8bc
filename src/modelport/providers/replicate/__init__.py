"""Replicate's knowledge, in one package: which paths create, read and list its objects
(``paths.py``), how keys that share one Replicate account are kept apart (``isolation.py``) and how
its webhook events reach callers (``webhooks.py``), composed into its policy (``policy.py``); and
OpenAI-compatible chat and images over its models (``unified.py``: a multi-step adapter, with the
model's input schema in ``schema.py`` and the mapping of OpenAI parameters to its inputs in ``inputs.py``).

Replicate's own API goes through the proxy route; the pipeline reaches this package only through the
spec's ``policy`` and ``adapter`` hooks (``providers/registry.py``), never by name.
"""
