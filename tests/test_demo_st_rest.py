"""The demo schema-transformer's REST objects (demo/controller/writers.py RestObjects): a network
deleted between the pass's read and its routing instance's create (the api-server answers 404)
is skipped, not the end of the pass. The pass used to fail there and start over; under a load
that deletes networks old's schema-transformer then fell minutes behind (make chaos seed 357:
47 networks had no routing instance on old at the fence, and new's schema-transformer made
them on new only)."""

from __future__ import annotations

import json

import httpx

from demo.controller.writers import RestObjects

GONE = "default-domain:p:gone:gone"
HERE = "default-domain:p:here:here"


def test_a_network_deleted_during_the_pass_is_skipped_and_the_next_one_made() -> None:
    made: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"routing-instances": []})
        body = json.loads(request.content)
        if request.url.path == "/route-targets":
            return httpx.Response(200, json={"route-target": {"uuid": "rt"}})
        fq_name = ":".join(body["routing-instance"]["fq_name"])
        if fq_name == GONE:  # the api-server: the parent network does not exist (any more)
            return httpx.Response(404, text="parent virtual-network not found")
        made.append(fq_name)
        return httpx.Response(200, json={"routing-instance": {"uuid": "ri"}})

    rest = RestObjects("http://api.invalid:8082", 64512)
    rest.http = httpx.Client(base_url="http://api.invalid:8082", transport=httpx.MockTransport(api))
    try:
        assert rest.ensure(GONE, 8000001) is False
        assert rest.ensure(HERE, 8000002) is True
    finally:
        rest.close()
    assert made == [HERE]
    assert rest.load() == {HERE}
