"""Walk the node UVEs an analytics-api lists: `GET /analytics/uves/<listing>` for the names,
then `GET /analytics/uves/<one>/<name>?flat` for each node's UVE. One walk, one way of
failing: the caller's error class, naming the URL and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from backends.analytics import parse_uve_list
from backends.http_answers import request_whole


def node_uves(base_url: str, node_types: Sequence[tuple[str, str]], error: type[Exception], *,
              timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None,
              fetch: bool = True) -> dict[tuple[str, str], Any]:
    """`{(node type, name): its UVE}` for every node of `node_types` ((listing, one) pairs,
    e.g. ("config-nodes", "config-node")); a listing the analytics-api does not know (404)
    has no node. `fetch=False`: the names only (the UVEs None). Raises `error` when the
    analytics-api cannot be asked (unreachable, an HTTP error, an answer of another shape)."""
    base = base_url.rstrip("/")
    found: dict[tuple[str, str], Any] = {}
    with httpx.Client(timeout=timeout_s, transport=transport,
                      headers={"Accept": "application/json"}) as client:

        def get(url: str) -> Any:
            response = request_whole(client, "GET", url, deadline_s=max(timeout_s, 30.0))
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response.json()

        try:
            for listing, one in node_types:
                names = get(f"{base}/analytics/uves/{listing}")
                for name in parse_uve_list(names) if names is not None else []:
                    found[(one, name)] = get(
                        f"{base}/analytics/uves/{one}/{quote(name, safe='')}?flat"
                    ) if fetch else None
        except httpx.HTTPStatusError as exc:
            raise error(f"{exc.request.url}: HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise error(f"{base}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # not JSON, or not a UVE list
            raise error(f"{base}: unexpected answer: {exc}") from None
    return found
