"""The VNC REST API (the subset contrail-api-client uses), served with aiohttp.

Routes: `GET /` (homepage with links), `POST /<type>s`, `GET /<type>s`, `GET|PUT|DELETE
/<type>/<uuid>`, `POST /fqname-to-id`, `POST /id-to-fqname`, `POST /ref-update`,
`POST /list-bulk-collection`, and the ISSU fence: `GET /issu/status`, `POST /issu/open`,
`POST /issu/close` (admin token in `X-Auth-Token`).
No keystone: the client runs with `auth_type="noauth"` (or any token; none is checked except
on the admin calls).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import schema
from .configdb import ApiError, ConfigDB, ListQuery

log = logging.getLogger(__name__)
T = TypeVar("T")

ACTIONS = {
    "name-to-id": "/fqname-to-id",
    "id-to-name": "/id-to-fqname",
    "ref-update": "/ref-update",
    "list-bulk-collection": "/list-bulk-collection",
    "prop-collection-update": "/prop-collection-update",
}


class Fence:
    """Whether northbound writes are accepted; persisted so a restart keeps the decision."""

    def __init__(self, state_file: Path, fenced: bool, cluster: str, version: str):
        self.state_file = state_file
        self.cluster, self.version = cluster, version
        self.open = not fenced
        if state_file.exists():
            self.open = json.loads(state_file.read_text()).get("open", self.open)

    def set_open(self, value: bool) -> None:
        self.open = value
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"open": value}))
        tmp.replace(self.state_file)

    def refusal(self) -> str:
        return (f"ISSU in progress: api-server of cluster {self.cluster} ({self.version}) refuses "
                "northbound writes until the upgrade is finalized. Reads are allowed. An "
                "administrator opens it with POST /issu/open (X-Auth-Token: admin token).")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.Response(text=message, status=status, content_type="text/plain")


def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _csv(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    return [v for v in value.split(",") if v]


class ApiServer:
    def __init__(self, db: ConfigDB, fence: Fence, admin_token: str | None,
                 on_open: Callable[[], None] | None = None):
        self.db = db
        self.fence = fence
        self.admin_token = admin_token
        self.on_open = on_open
        # Mutations run on a few threads; ConfigDB serialises those touching the same object,
        # so each object's changes reach Cassandra and RabbitMQ in one order.
        self._writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="api-writer")
        self._readers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="api-reader")
        self.stats = {"reads": 0, "writes": 0, "refused": 0}
        # requests per client, by the X-Contrail-Useragent header vnc_api clients send
        # (`host:program`): who talks to this api-server (the demo's neutron-server)
        self.useragents: dict[str, int] = {}

    async def _write(self, fn: Callable[[], T]) -> T:
        self.stats["writes"] += 1
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def _read(self, fn: Callable[[], T]) -> T:
        self.stats["reads"] += 1
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=False)

    # -- app ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/", self.homepage)
        r.add_post("/fqname-to-id", self.fqname_to_id)
        r.add_post("/id-to-fqname", self.id_to_fqname)
        r.add_post("/ref-update", self.ref_update)
        r.add_post("/list-bulk-collection", self.list_bulk)
        r.add_post("/prop-collection-update", self.prop_collection_update)
        r.add_get("/issu/status", self.issu_status)
        r.add_post("/issu/open", self.issu_open)
        r.add_post("/issu/close", self.issu_close)
        r.add_get("/{collection}", self.list_collection)
        r.add_post("/{collection}", self.create)
        r.add_get("/{rtype}/{uuid}", self.read)
        r.add_put("/{rtype}/{uuid}", self.update)
        r.add_delete("/{rtype}/{uuid}", self.delete)
        return app

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[..., Any]) -> web.StreamResponse:
        agent = (request.headers.get("X-Contrail-Useragent") or "")[:200]
        if agent and (agent in self.useragents or len(self.useragents) < 1000):
            self.useragents[agent] = self.useragents.get(agent, 0) + 1
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message)
        except web.HTTPException:
            raise
        except Exception as exc:  # an unexpected failure: log it whole, answer 500 with its cause
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, f"{request.method} {request.path}: {type(exc).__name__}: {exc}")

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    @staticmethod
    def _request_id(request: web.Request) -> str:
        return request.headers.get("X-Request-Id") or f"req-{uuidlib.uuid4()}"

    def _guard_write(self) -> None:
        if not self.fence.open:
            self.stats["refused"] += 1
            raise ApiError(403, self.fence.refusal())

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"{request.path}: body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(400, f"{request.path}: body must be a JSON object")
        return body

    # -- homepage ----------------------------------------------------------------------------
    async def homepage(self, request: web.Request) -> web.Response:
        base = self._base(request)
        links = []
        for name, path in ACTIONS.items():
            links.append({"link": {"rel": "action", "href": base + path, "name": name}})
        for rt in sorted(schema.registry().values(), key=lambda r: r.res_type):
            links.append({"link": {"rel": "collection", "href": f"{base}/{rt.collection}",
                                   "name": rt.res_type}})
            links.append({"link": {"rel": "resource-base", "href": f"{base}/{rt.res_type}",
                                   "name": rt.res_type}})
        return _json({"href": base, "links": links})

    # -- collections -------------------------------------------------------------------------
    def _collection_type(self, request: web.Request) -> schema.ResourceType:
        name = request.match_info["collection"]
        rt = schema.collections().get(name)
        if rt is None:
            raise ApiError(404, f"Unknown collection {name!r}")
        return rt

    def _resource_type(self, request: web.Request) -> schema.ResourceType:
        name = request.match_info["rtype"]
        rt = schema.registry().get(name)
        if rt is None:
            raise ApiError(404, f"Unknown resource type {name!r}")
        return rt

    async def create(self, request: web.Request) -> web.Response:
        rt = self._collection_type(request)
        self._guard_write()
        body = await self._body(request)
        obj = body.get(rt.res_type)
        if not isinstance(obj, dict):
            raise ApiError(400, f"POST /{rt.collection}: body must be "
                                f"{{\"{rt.res_type}\": {{...}}}}")
        rid = self._request_id(request)
        result = await self._write(lambda: self.db.create(rt.res_type, obj, rid))
        return _json({rt.res_type: result})

    def _list_query(self, params: dict[str, Any]) -> ListQuery:
        fq_names = _csv(params.get("fq_names"))
        parent_fq = params.get("parent_fq_name_str")
        fields = _csv(params.get("fields"))
        return ListQuery(
            parent_ids=_csv(params.get("parent_id")),
            parent_fq_name=parent_fq.split(":") if parent_fq else None,
            obj_uuids=_csv(params.get("obj_uuids")),
            back_ref_ids=_csv(params.get("back_ref_id")),
            fq_names=[n.split(":") for n in fq_names] if fq_names else None,
            fields=set(fields) if fields else None,
            detail=_truthy(params.get("detail")),
            count=_truthy(params.get("count")),
        )

    async def list_collection(self, request: web.Request) -> web.Response:
        rt = self._collection_type(request)
        q = self._list_query(dict(request.query))
        result = await self._read(lambda: self.db.list(rt.res_type, q))
        return _json(result)

    async def list_bulk(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        rt = schema.lookup(str(body.get("type", "")))
        if rt is None:
            raise ApiError(404, f"list-bulk-collection: unknown type {body.get('type')!r}")
        q = self._list_query({k: v if isinstance(v, str) else json.dumps(v) if
                              isinstance(v, bool) else str(v) for k, v in body.items()})
        result = await self._read(lambda: self.db.list(rt.res_type, q))
        return _json(result)

    # -- single objects ----------------------------------------------------------------------
    async def read(self, request: web.Request) -> web.Response:
        rt = self._resource_type(request)
        obj_uuid = request.match_info["uuid"]
        fields = _csv(request.query.get("fields"))
        excl_back = _truthy(request.query.get("exclude_back_refs"))
        excl_children = _truthy(request.query.get("exclude_children"))
        obj = await self._read(lambda: self.db.read(
            rt.res_type, obj_uuid, set(fields) if fields else None, excl_back, excl_children))
        return _json({rt.res_type: obj})

    async def update(self, request: web.Request) -> web.Response:
        rt = self._resource_type(request)
        self._guard_write()
        obj_uuid = request.match_info["uuid"]
        body = await self._body(request)
        obj = body.get(rt.res_type)
        if not isinstance(obj, dict):
            raise ApiError(400, f"PUT /{rt.res_type}: body must be {{\"{rt.res_type}\": {{...}}}}")
        rid = self._request_id(request)
        result = await self._write(lambda: self.db.update(rt.res_type, obj_uuid, obj, rid))
        return _json({rt.res_type: result})

    async def delete(self, request: web.Request) -> web.Response:
        rt = self._resource_type(request)
        self._guard_write()
        obj_uuid = request.match_info["uuid"]
        rid = self._request_id(request)
        await self._write(lambda: self.db.delete(rt.res_type, obj_uuid, rid))
        return _json({})

    # -- actions -----------------------------------------------------------------------------
    async def fqname_to_id(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        type_name, fq_name = body.get("type"), body.get("fq_name")
        if not isinstance(type_name, str) or not isinstance(fq_name, list):
            raise ApiError(400, "fqname-to-id: body needs 'type' (string) and 'fq_name' (list)")
        found = await self._read(lambda: self.db.fq_name_to_id(type_name, fq_name))
        return _json({"uuid": found})

    async def id_to_fqname(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        obj_uuid = body.get("uuid")
        if not isinstance(obj_uuid, str):
            raise ApiError(400, "id-to-fqname: body needs 'uuid'")
        fq_name, res_type = await self._read(lambda: self.db.id_to_fq_name(obj_uuid))
        return _json({"fq_name": fq_name, "type": res_type})

    async def ref_update(self, request: web.Request) -> web.Response:
        self._guard_write()
        body = await self._body(request)
        rid = self._request_id(request)
        obj_uuid = await self._write(lambda: self.db.ref_update(body, rid))
        return _json({"uuid": obj_uuid})

    async def prop_collection_update(self, request: web.Request) -> web.Response:
        self._guard_write()
        body = await self._body(request)
        rid = self._request_id(request)
        await self._write(lambda: self.db.prop_collection_update(body, rid))
        return _json({})

    # -- ISSU fence --------------------------------------------------------------------------
    def _check_admin(self, request: web.Request) -> None:
        given = request.headers.get("X-Auth-Token", "")
        if not self.admin_token:
            raise ApiError(403, "no admin token configured for this api-server (secrets file)")
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise ApiError(401, "admin token required in X-Auth-Token")

    async def issu_status(self, request: web.Request) -> web.Response:
        return _json({"cluster": self.fence.cluster, "version": self.fence.version,
                      "northbound_open": self.fence.open, "pid": os.getpid(), **self.stats,
                      "useragents": dict(self.useragents)})

    async def issu_open(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        if not self.fence.open:
            self.fence.set_open(True)
            log.info("northbound opened by admin call")
            if self.on_open is not None:
                await self._write(self.on_open)
        return _json({"northbound_open": True})

    async def issu_close(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        self.fence.set_open(False)
        return _json({"northbound_open": False})
