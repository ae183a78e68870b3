"""A small async client of the VNC REST API: what the seeder and the workload need."""

from __future__ import annotations

from typing import Any

import httpx


class RestError(Exception):
    """The api-server answered an error; carries the HTTP status and names the request."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class VncRest:
    def __init__(self, api_url: str, timeout_s: float = 30.0):
        self.api_url = api_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.api_url, timeout=timeout_s,
                                      headers={"Content-Type": "application/json"})

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, body: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        resp = await self.http.request(method, path, json=body, params=params)
        if resp.status_code != 200:
            raise RestError(resp.status_code,
                            f"{method} {self.api_url}{path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    async def create(self, res_type: str, obj: dict[str, Any]) -> str:
        data = await self._call("POST", f"/{res_type}s", {res_type: obj})
        return str(data[res_type]["uuid"])

    async def update(self, res_type: str, obj_uuid: str, obj: dict[str, Any]) -> None:
        await self._call("PUT", f"/{res_type}/{obj_uuid}", {res_type: obj})

    async def delete(self, res_type: str, obj_uuid: str) -> None:
        await self._call("DELETE", f"/{res_type}/{obj_uuid}")

    async def read(self, res_type: str, obj_uuid: str) -> dict[str, Any]:
        data = await self._call("GET", f"/{res_type}/{obj_uuid}")
        return dict(data[res_type])

    async def fq_name_to_id(self, res_type: str, fq_name: list[str]) -> str | None:
        try:
            data = await self._call("POST", "/fqname-to-id", {"type": res_type, "fq_name": fq_name})
        except RestError as exc:
            if exc.status == 404:
                return None
            raise
        return str(data["uuid"])

    async def ensure(self, res_type: str, obj: dict[str, Any]) -> str:
        """Create unless an object of that fq_name exists; return its uuid either way."""
        try:
            return await self.create(res_type, obj)
        except RestError as exc:
            if exc.status != 409:
                raise
        found = await self.fq_name_to_id(res_type, obj["fq_name"])
        if found is None:
            raise RestError(409, f"{res_type} {':'.join(obj['fq_name'])}: conflict on create "
                                 "but no object of that name")
        return found

    async def count(self, res_type: str) -> int:
        data = await self._call("GET", f"/{res_type}s", params={"count": "true"})
        return int(data[f"{res_type}s"]["count"])
