"""Reading an HTTP answer whole, within bounds: a server that sends without end, or so slowly
that the per-read timeout never fires, is cut off instead of holding the caller forever."""

from __future__ import annotations

import time
from typing import Any

import httpx

# Far above any real answer (the bulk vrouter UVEs of a large fleet are tens of MiB).
MAX_ANSWER_BYTES = 256 * 2**20
# Time for a whole answer; each read has the client's own (shorter) timeout too.
ANSWER_DEADLINE_S = 120.0


class AnswerTooLarge(ValueError):
    """The answer exceeded MAX_ANSWER_BYTES."""


def request_whole(client: httpx.Client, method: str, url: str, *,
                  deadline_s: float = ANSWER_DEADLINE_S, max_bytes: int = MAX_ANSWER_BYTES,
                  **kwargs: Any) -> httpx.Response:
    """`client.request(...)`, the body read within `deadline_s` seconds and `max_bytes`.
    Raises httpx.ReadTimeout past the deadline, AnswerTooLarge past the size."""
    deadline = time.monotonic() + deadline_s
    with client.stream(method, url, **kwargs) as response:
        body = bytearray()
        for chunk in response.iter_bytes():  # decoded (gzip...): the size that is held
            body += chunk
            if len(body) > max_bytes:
                raise AnswerTooLarge(f"{response.request.url}: answer larger than "
                                     f"{max_bytes // 2**20} MiB")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"answer not complete after {deadline_s:g}s",
                                        request=response.request)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "transfer-encoding",
                                        "content-length")]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                              request=response.request)
