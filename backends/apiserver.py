"""A small client of the Contrail VNC REST API (the api-server on :8082), over httpx.

What the orchestrator needs and nothing more: bgp-router objects for the iBGP pairing of old
and new control nodes (idempotent create/delete, looked up by fq_name), object lists and
counts (preflight: the new api-server must hold nothing the sync did not write), and the
fence of an api-server (the new one refuses northbound writes until finalize opens it).

Wire format, as the real api-server speaks it:
- `POST /fqname-to-id {"type": "bgp-router", "fq_name": [...]}` -> `{"uuid": ...}` or 404
- `GET /bgp-routers?detail=true` -> `{"bgp-routers": [{"bgp-router": {...}}, ...]}`
- `GET /virtual-networks?count=true` -> `{"virtual-networks": {"count": N}}`
- `POST /bgp-routers {"bgp-router": {...}}`, `DELETE /bgp-router/<uuid>`
Authentication: `X-Auth-Token` (a keystone token or the deployment's admin token); with a
user and no token, HTTP basic auth (the api-server's `auth = noauth`/basic deployments).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from backends.http_answers import ANSWER_DEADLINE_S, request_whole

DEFAULT_ROUTING_INSTANCE = ("default-domain", "default-project", "ip-fabric", "__default__")
DEFAULT_FAMILIES = ("route-target", "inet-vpn", "e-vpn", "erm-vpn", "inet6-vpn")

# Object types whose presence on the new api-server before the sync means someone wrote there.
# The default objects every api-server creates at start are excluded by the fence (a fenced
# api-server creates none), so any object at all is suspicious; these are the ones listed.
CONFIG_TYPES = (
    "domain", "project", "virtual-network", "network-ipam", "virtual-machine-interface",
    "instance-ip", "floating-ip", "security-group", "network-policy", "logical-router",
    "routing-instance", "route-target", "bgp-router", "virtual-router", "global-system-config",
)

# The ISSU fence of an api-server: `GET /issu/status` -> {"northbound_open": bool},
# `POST /issu/open`, `POST /issu/close` (admin token in X-Auth-Token). A fenced api-server
# refuses every write (northbound clients and this tool alike).
FENCE_PATH = "/issu"


class ApiServerError(Exception):
    """The api-server refused or could not be reached; the message names the URL and why."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def fenced(self) -> bool:
        """A write refused because the api-server is fenced (closed for writes)."""
        return self.status_code == 403


_Method = TypeVar("_Method", bound=Callable[..., Any])
# What reading an answer of the wrong shape raises (a list for an object, text for JSON...).
_SHAPE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, ArithmeticError,
                 RecursionError)


def _answer_checked(method: _Method) -> _Method:
    """An answer not of the documented shape is an ApiServerError naming the server."""

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _SHAPE_ERRORS as exc:
            raise ApiServerError(f"{self.url}: unexpected answer ({method.__name__}): "
                                 f"{type(exc).__name__}: {exc}") from None

    return checked  # type: ignore[return-value]


@dataclass(frozen=True)
class BgpRouterSpec:
    """One control node as a bgp-router object under the ip-fabric default routing instance."""

    name: str
    address: str
    asn: int
    router_type: str = "control-node"
    vendor: str = "contrail"
    port: int = 179
    hold_time: int = 90
    address_families: tuple[str, ...] = DEFAULT_FAMILIES

    @property
    def fq_name(self) -> list[str]:
        return [*DEFAULT_ROUTING_INSTANCE, self.name]

    def body(self) -> dict[str, Any]:
        return {
            "bgp-router": {
                "fq_name": self.fq_name,
                "parent_type": "routing-instance",
                "name": self.name,
                "display_name": self.name,
                "bgp_router_parameters": {
                    "vendor": self.vendor,
                    "router_type": self.router_type,
                    "autonomous_system": self.asn,
                    "identifier": self.address,
                    "address": self.address,
                    "port": self.port,
                    "hold_time": self.hold_time,
                    "address_families": {"family": list(self.address_families)},
                },
            }
        }


@dataclass(frozen=True)
class PairResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


class ApiServerClient:
    def __init__(self, url: str, *, token: str | None = None, user: str | None = None,
                 password: str | None = None, tenant: str = "admin", timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 answer_deadline_s: float = ANSWER_DEADLINE_S) -> None:
        self.url = url.rstrip("/")
        self._answer_deadline_s = answer_deadline_s
        headers = {"Content-Type": "application/json", "X-Contrail-Useragent": "issu"}
        auth: httpx.BasicAuth | None = None
        if token:
            headers["X-Auth-Token"] = token
        elif user and password:
            auth = httpx.BasicAuth(user, password)
        if tenant:
            headers["X-Tenant-Name"] = tenant
        self._http = httpx.Client(base_url=self.url, headers=headers, auth=auth,
                                  timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, *, json: Any = None,
                 params: dict[str, Any] | None = None,
                 ok: Iterable[int] = (200,)) -> httpx.Response:
        try:
            response = request_whole(self._http, method, path, json=json, params=params,
                                     deadline_s=self._answer_deadline_s)
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer too large
            raise ApiServerError(f"{self.url}{path}: {method} failed: {exc}") from None
        if response.status_code not in set(ok):
            detail = response.text.strip().replace("\n", " ")[:300]
            raise ApiServerError(
                f"{self.url}{path}: {method} answered {response.status_code}: {detail}",
                response.status_code)
        return response

    @_answer_checked
    def ping(self) -> dict[str, Any]:
        """The api-server's root document (lists the collections); raises when unreachable."""
        root: dict[str, Any] = self._request("GET", "/").json()
        return root

    # ------------------------------------------------------------------ objects

    @_answer_checked
    def collection_types(self) -> list[str]:
        """Every object type the api-server serves, from the homepage's collection links."""
        links = self.ping().get("links", [])
        return sorted({str(item["link"]["name"]) for item in links
                       if isinstance(item, dict) and item.get("link", {}).get("rel")
                       == "collection"})

    @_answer_checked
    def fq_name_to_id(self, obj_type: str, fq_name: list[str]) -> str | None:
        response = self._request("POST", "/fqname-to-id",
                                 json={"type": obj_type, "fq_name": fq_name}, ok=(200, 404))
        if response.status_code == 404:
            return None
        return str(response.json()["uuid"])

    @_answer_checked
    def read(self, obj_type: str, uuid: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/{obj_type}/{uuid}", ok=(200, 404))
        if response.status_code == 404:
            return None
        obj: dict[str, Any] = response.json()[obj_type]
        return obj

    @_answer_checked
    def list(self, obj_type: str, *, detail: bool = False) -> list[dict[str, Any]]:
        params = {"detail": "true"} if detail else None
        data = self._request("GET", f"/{obj_type}s", params=params).json()
        items = data.get(f"{obj_type}s", [])
        return [item.get(obj_type, item) if detail else item for item in items]

    @_answer_checked
    def count(self, obj_type: str) -> int:
        data = self._request("GET", f"/{obj_type}s", params={"count": "true"}).json()
        value = data.get(f"{obj_type}s", {})
        if isinstance(value, dict) and "count" in value:
            return int(value["count"])
        return len(value) if isinstance(value, list) else 0

    def object_counts(self, types: Iterable[str] = CONFIG_TYPES) -> dict[str, int]:
        return {t: self.count(t) for t in types}

    @_answer_checked
    def uuids(self, obj_type: str) -> set[str]:
        return {str(item["uuid"]) for item in self.list(obj_type)}

    @_answer_checked
    def create(self, obj_type: str, body: dict[str, Any]) -> str:
        response = self._request("POST", f"/{obj_type}s", json=body, ok=(200, 201))
        return str(response.json()[obj_type]["uuid"])

    def delete(self, obj_type: str, uuid: str) -> bool:
        response = self._request("DELETE", f"/{obj_type}/{uuid}", ok=(200, 204, 404))
        return response.status_code != 404

    # ------------------------------------------------------------------ bgp-routers

    def ensure_bgp_router(self, spec: BgpRouterSpec) -> tuple[str, bool]:
        """Create the bgp-router unless one with its fq_name exists: (uuid, created)."""
        existing = self.fq_name_to_id("bgp-router", spec.fq_name)
        if existing is not None:
            return existing, False
        try:
            return self.create("bgp-router", spec.body()), True
        except ApiServerError:
            # A concurrent or earlier half-finished create: the object may exist by now.
            existing = self.fq_name_to_id("bgp-router", spec.fq_name)
            if existing is None:
                raise
            return existing, False

    def remove_bgp_router(self, name: str) -> bool:
        """Delete the control node's bgp-router; False when it was not there."""
        uuid = self.fq_name_to_id("bgp-router", [*DEFAULT_ROUTING_INSTANCE, name])
        if uuid is None:
            return False
        return self.delete("bgp-router", uuid)

    @_answer_checked
    def bgp_router_names(self) -> set[str]:
        return {str(item["fq_name"][-1]) for item in self.list("bgp-router")}

    def pair(self, specs: Iterable[BgpRouterSpec]) -> PairResult:
        result = PairResult()
        for spec in specs:
            _uuid, created = self.ensure_bgp_router(spec)
            (result.created if created else result.existing).append(spec.name)
        return result

    def unpair(self, names: Iterable[str]) -> PairResult:
        result = PairResult()
        for name in names:
            (result.deleted if self.remove_bgp_router(name) else result.absent).append(name)
        return result

    # ------------------------------------------------------------------ fence

    @_answer_checked
    def fence_state(self) -> bool:
        """True when the api-server refuses northbound writes (GET /issu/status)."""
        data = self._request("GET", f"{FENCE_PATH}/status").json()
        return not bool(data.get("northbound_open"))

    @_answer_checked
    def set_fence(self, fenced: bool) -> bool:
        """Close (True) or open (False) the api-server for writes; idempotent; admin token."""
        action = "close" if fenced else "open"
        data = self._request("POST", f"{FENCE_PATH}/{action}", json={}).json()
        return not bool(data.get("northbound_open"))


class AnalyticsClient:
    """The analytics-api (:8081): vrouter UVEs tell which control nodes an agent talks to."""

    def __init__(self, url: str, *, timeout_s: float = 10.0,
                 answer_deadline_s: float = ANSWER_DEADLINE_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)
        self._answer_deadline_s = answer_deadline_s

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return request_whole(self._http, "GET", path, deadline_s=self._answer_deadline_s,
                                 **kwargs)
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer too large
            raise ApiServerError(f"{self.url}: analytics-api unreachable: {exc}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        response = self._get("/analytics/uves/vrouters")
        if response.status_code != 200:
            raise ApiServerError(
                f"{self.url}/analytics/uves/vrouters answered {response.status_code}")

    def vrouter(self, name: str) -> dict[str, Any] | None:
        """The vrouter UVE of one compute, or None when this analytics has not heard of it."""
        response = self._get(f"/analytics/uves/vrouter/{name}", params={"flat": ""})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ApiServerError(
                f"{self.url}/analytics/uves/vrouter/{name} answered {response.status_code}")
        try:
            data = response.json()
        except (ValueError, RecursionError) as exc:
            raise ApiServerError(f"{self.url}/analytics/uves/vrouter/{name}: unexpected "
                                 f"answer: {type(exc).__name__}: {exc}") from None
        if data and not isinstance(data, dict):
            raise ApiServerError(f"{self.url}/analytics/uves/vrouter/{name}: unexpected "
                                 f"answer: a JSON {type(data).__name__}, not an object")
        return data or None
