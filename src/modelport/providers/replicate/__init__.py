"""Replicate's knowledge, in one package: which paths create, read and list its objects
(``paths.py``, the one recognizer of prediction paths), how keys that share one Replicate account are
kept apart (``isolation.py``) and how its webhook events reach callers (``webhooks.py``), composed into
its policy (``policy.py``); what a prediction cost (``pricing.py``, tables in ``data/replicate.json``) and
its lifecycle in the log service's ledger, with autopoll (``ledger.py``: its ``ProviderJobs``); and
OpenAI-compatible chat and images over its models (``unified.py``: a multi-step adapter, with the
model's input schema in ``schema.py`` and the mapping of OpenAI parameters to its inputs in ``inputs.py``).

Replicate's own API goes through the proxy route; the pipeline and the log service reach this package
only through the spec's ``policy``, ``jobs`` and ``adapter`` hooks (``providers/registry.py``), never by name.
"""
