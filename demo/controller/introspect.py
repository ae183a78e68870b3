"""Control node introspect (:8083), JSON rendering of the sandesh requests the tool needs.

- `GET /`: the requests it answers (the introspect's index page);
- `GET /Snh_BgpNeighborReq`: {"BgpNeighborListResp": {"neighbors": [...]}}, BGP and XMPP peers
  with their state (Established, Active, Idle), as in the control node's neighbour table;
- `GET /issu-demo/bgp-config`: the bgp-router pairing this cluster's config holds (what the
  other cluster's control node asks to decide whether the iBGP session comes up).
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from .control import ControlPlane


class Introspect:
    def __init__(self, control: ControlPlane):
        self.control = control

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/Snh_BgpNeighborReq", self.bgp_neighbours)
        app.router.add_get("/issu-demo/bgp-config", self.bgp_config)
        return app

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response({"cluster": self.control.spec.cluster,
                                  "requests": ["Snh_BgpNeighborReq"]})

    async def bgp_neighbours(self, request: web.Request) -> web.Response:
        neighbours = await self.control.neighbours()
        encoding = request.query.get("encoding")
        wanted = [n for n in neighbours if encoding is None or n.encoding == encoding]
        return web.json_response({"BgpNeighborListResp": {
            "neighbors": [self.control.neighbour_dict(n) for n in wanted]}})

    async def bgp_config(self, request: web.Request) -> web.Response:
        routers = await self.control.run_blocking(self.control.bgp_config)
        return web.json_response({"cluster": self.control.spec.cluster,
                                  "routers": [asdict(r) for r in routers]})
