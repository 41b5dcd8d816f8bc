"""``Download``: a control-plane reply sent while it is produced (log exports), never held whole in memory.

A handler returns one instead of a JSON-ready value; the control plane hands it ``send``. The chunks come
from a plain iterator that reads the store, so each ``next`` runs in a worker thread: a SQLite read may
wait on a lock, and the inference hot path shares the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Iterator

from ..asgi import Headers, Send

log = logging.getLogger("modelport.control")


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    content_type: str
    chunks: Iterator[bytes]

    async def send_to(self, send: Send, headers: Headers) -> None:
        """Send the whole reply. The first chunk is read before the status line goes out, so an error in
        the query itself still becomes a normal JSON error reply."""
        try:
            chunk = await asyncio.to_thread(next, self.chunks, b"")
            await send({"type": "http.response.start", "status": 200, "headers": [*self._headers(), *headers]})
            while chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                try:
                    chunk = await asyncio.to_thread(next, self.chunks, b"")
                except Exception:
                    # The status line is out: leave the body unterminated, so the client sees a broken
                    # transfer rather than a file that looks complete.
                    log.exception("export %s failed part-way", self.filename)
                    return
            await send({"type": "http.response.body", "body": b""})
        except OSError:  # the client went away (ASGI 2.4: send raises OSError); nobody is left to tell
            return
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    def _headers(self) -> Headers:
        return [
            (b"content-type", self.content_type.encode("latin-1")),
            (b"content-disposition", f'attachment; filename="{self.filename}"'.encode("latin-1")),
            (b"cache-control", b"no-store"),
        ]
