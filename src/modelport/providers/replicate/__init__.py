"""Replicate's knowledge, in one package: which paths create, read and list its objects
(``paths.py``), how keys that share one Replicate account are kept apart (``isolation.py``) and how
its webhook events reach callers (``webhooks.py``), composed into its policy (``policy.py``).

Replicate is proxy-only (its spec in ``providers/registry.py``); the pipeline reaches this package only
through the spec's ``policy`` hook, never by name.
"""
