"""The one upstream client: pooled sessions behind the SSRF-checked resolver (``sessions.py``), sending a
request and mapping every aiohttp and OS failure to the gateway's errors once (``send.py``)."""
