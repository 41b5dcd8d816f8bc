"""Google Vertex AI: Gemini and Claude models behind Google Cloud credentials.

``adapter`` translates unified chat to each publisher's format; ``auth`` puts an access token on every
request (minted from a service-account key by ``token``, or the caller's own).
"""

BASE_URL = "https://aiplatform.googleapis.com/v1"  # the global endpoint; a region picks its own host (adapter.api_root)
