"""The api-server's and analytics-api's answers as any server may give them: any status,
bodies that are not JSON or not of the expected shape, slow or endless bodies, served by a
real HTTP server on 127.0.0.1. The console's analytics poll (ConsoleBackend, the poller under
it) reports each cluster's failure naming its URL (never raises, never hangs), its panes render
what it got, and the next poll, answered well, is whole again; the api-server client (pairing,
fence, preflight counts) raises ApiServerError naming the URL, never anything else, and works
again once the answers are right. One Pilot test drives the whole console through every kind
of bad answer.

The properties share one server and cut slow and endless answers off after DEADLINE_S, so an
example costs milliseconds, not the production deadline: `make fuzz` runs ten thousand each.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from backends.analytics import AnalyticsPoller
from backends.apiserver import AnalyticsClient, ApiServerClient, ApiServerError, BgpRouterSpec
from issu_tui.console_api import ConsoleBackend
from issu_tui.journal import Journal
from screens.widgets.panes import _vrouter_table, analytics_summary
from tests.fuzz.contract import budget
from tests.fuzz.http_server import Answer, serving, shared, url
from tests.fuzz.shapes import misshapen

# A slow answer trickles a byte every TRICKLE_S (each read in time for the read timeout) and
# is cut off at DEADLINE_S, as the production deadline cuts it off after minutes.
TRICKLE_S = 0.005
DEADLINE_S = 0.05
READ_TIMEOUT_S = 5.0
# Answered well again, the same client must work: within the production-like deadline
# (a loaded box may hold a good answer back longer than DEADLINE_S), and after at most one
# more failure on a connection the bad server left in a wrong state (see below).
RECOVERY_DEADLINE_S = 30.0
RECOVERY_TRIES = 2


def recovering(client: Any) -> None:
    """The hostile part is over: the client's answers get a production-like deadline again
    (it is the client's own setting, fixed at construction in the product)."""
    client._answer_deadline_s = RECOVERY_DEADLINE_S


def plain_http() -> httpx.HTTPTransport:
    """The clients' transport without TLS certificates to load: the servers here speak plain
    HTTP, and loading the CA bundle for each example's new client would cost more than the
    example."""
    return httpx.HTTPTransport(verify=False)

UUID = "8d6e1c4a-2f5b-4a8e-9d7c-0b1a2c3d4e5f"
UVE = {"VrouterAgent": {"control_ip": "127.0.0.60", "build_info": json.dumps(
    {"build-info": [{"build-version": "4.1.0"}]}),
    "xmpp_peer_list": [{"ip": "127.0.0.101", "status": True, "primary": True}]},
    "NodeStatus": {"process_status": [{"module_id": "contrail-vrouter-agent",
                                       "state": "Functional"}]}}
GOOD_ANALYTICS: dict[str, Any] = {
    "/analytics/uves/vrouters": [{"name": "compute-1", "href": "x"}],
    "/analytics/uves/vrouter/*": {"value": [{"name": "compute-1", "value": UVE}]},
    "/analytics/uves/vrouter/compute-1": UVE,
    "/analytics/uves/control-nodes": [{"name": "ctl-v1", "href": "x"}],
    "/analytics/alarms": {"vrouter": [{"name": "compute-1", "value": {"UVEAlarms": {"alarms": [
        {"type": "t", "severity": 1, "ack": False, "timestamp": 1_700_000_000_000_000,
         "description": "d"}]}}}]},
}
GOOD_API: dict[str, Any] = {
    "GET /": {"links": [{"link": {"rel": "collection", "name": "virtual-network"}}]},
    "POST /fqname-to-id": {"uuid": UUID},
    "GET /bgp-routers": {"bgp-routers": [{"fq_name": ["d", "p", "ip-fabric", "__default__",
                                                      "ctl-v1"], "uuid": UUID}]},
    "POST /bgp-routers": {"bgp-router": {"uuid": UUID}},
    f"DELETE /bgp-router/{UUID}": {},
    "GET /virtual-networks": {"virtual-networks": {"count": 3}},
    "GET /issu/status": {"northbound_open": False},
    "POST /issu/close": {"northbound_open": False},
    "GET /analytics/uves/vrouter/compute-1": UVE,
}


# values a reader is most likely to mishandle, besides any JSON
_ODD: list[Any] = [1e308 * 10, -1e308 * 10, 10**30, "", [], {}, None]


@st.composite
def answers(draw: st.DrawFn, good: Any) -> Answer:
    status = draw(st.one_of(st.just(200), st.sampled_from(
        [201, 204, 301, 400, 401, 403, 404, 409, 500, 502, 503]), st.integers(200, 599)))
    kind = draw(st.sampled_from(["good", "misshapen", "misshapen", "bytes", "deep", "huge"]))
    if kind == "good":
        body = json.dumps(good).encode()
    elif kind == "misshapen":
        body = json.dumps(draw(misshapen(good, _ODD)), allow_nan=True).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "deep":
        body = b"[" * 100_000 + b"]" * 100_000
    else:
        body = b'["' + b"x" * 3_000_000 + b'"]'
    how = draw(st.sampled_from(["whole"] * 12 + ["slow", "endless", "gzip-garbage",
                                                 "no-length"]))
    return Answer(status, body, draw(st.sampled_from(["application/json", "text/html"])), how)


def _good(table: dict[str, Any]) -> dict[str, Answer]:
    return {path: Answer(200, json.dumps(body).encode()) for path, body in table.items()}


CONTROL = {"old": {"127.0.0.101"}}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    journal = Journal.open(tmp_path_factory.mktemp("console"))
    yield journal
    journal.close()


def _console(journal: Journal, endpoints: dict[str, str]) -> ConsoleBackend:
    """The console's core API as `issu tui` builds it, its poller on the given servers."""
    from tests.tui.tui_world import config_for, make_backend

    backend = make_backend(journal, config_for(Path(journal.path).parent))
    backend.analytics = AnalyticsPoller(endpoints, CONTROL, timeout_s=READ_TIMEOUT_S,
                                        answer_deadline_s=DEADLINE_S, transport=plain_http())
    return backend


def _render(snap: Any) -> None:
    """What the dashboard's and the analytics screen's panes draw from the poll."""
    console = Console(file=io.StringIO(), width=120, color_system="truecolor")
    console.print(analytics_summary(snap, None))
    for name in snap.clusters:
        console.print(_vrouter_table(snap, name))


@budget(100)
@given(data=st.data())
def test_console_analytics_reports_each_cluster_renders_and_recovers(
        journal: Journal, data: st.DataObject) -> None:
    server = shared(TRICKLE_S)
    base = url(server)
    server.answers = {path: data.draw(answers(good), label=path)
                      for path, good in GOOD_ANALYTICS.items()}
    backend = _console(journal, {"old": f"{base}/", "new": base})
    try:
        snap = backend.poll_analytics()
        assert snap is not None
        for name, cluster in snap.clusters.items():
            assert cluster.ok or base in (cluster.error or ""), (name, cluster.error)
        _render(snap)
        server.answers = _good(GOOD_ANALYTICS)  # the analytics-api is well again
        recovering(backend.analytics)
        for _ in range(RECOVERY_TRIES):
            snap = backend.poll_analytics()
            assert snap is not None
            if all(c.ok for c in snap.clusters.values()):
                break
            assert all(c.ok or base in (c.error or "") for c in snap.clusters.values())
        assert all(c.ok for c in snap.clusters.values()), snap.clusters
        assert snap.computes["compute-1"].reports_to == "old"
        assert snap.computes["compute-1"].version == "4.1.0"
        _render(snap)
    finally:
        assert backend.analytics is not None
        backend.analytics.close()


SPEC = BgpRouterSpec("ctl-v2", "127.0.0.102", 64512)


def _api_calls(client: ApiServerClient) -> list[Any]:
    return [lambda: client.pair([SPEC]), client.bgp_router_names, client.fence_state,
            lambda: client.set_fence(True), lambda: client.object_counts(["virtual-network"]),
            client.collection_types, lambda: client.unpair(["ctl-v1"])]


@budget(100)
@given(data=st.data(), call=st.integers(0, 6))
def test_api_server_client_raises_only_api_server_errors(data: st.DataObject,
                                                         call: int) -> None:
    server = shared(TRICKLE_S)
    base = url(server)
    server.answers = {path: data.draw(answers(good), label=path)
                      for path, good in GOOD_API.items()}
    with ApiServerClient(base, timeout_s=READ_TIMEOUT_S, answer_deadline_s=DEADLINE_S,
                         transport=plain_http()) as client:
        try:
            _api_calls(client)[call]()
        except ApiServerError as exc:
            assert base in str(exc), str(exc)
        server.answers = _good(GOOD_API)
        recovering(client)
        for attempt in range(RECOVERY_TRIES):  # the same call, answered well, works again
            try:
                _api_calls(client)[call]()
                break
            except ApiServerError as exc:
                assert base in str(exc), str(exc)
                if attempt == RECOVERY_TRIES - 1:
                    raise


@budget(100)
@given(answer=answers(UVE))
def test_analytics_client_vrouter(answer: Answer) -> None:
    server = shared(TRICKLE_S)
    base = url(server)
    server.answers = {"/analytics/uves/vrouter/compute-1": answer}
    with AnalyticsClient(base, timeout_s=READ_TIMEOUT_S, answer_deadline_s=DEADLINE_S,
                         transport=plain_http()) as client:
        try:
            uve = client.vrouter("compute-1")
            assert uve is None or isinstance(uve, dict)
        except ApiServerError as exc:
            assert base in str(exc), str(exc)


# ------------------------------------------------------------------------------ the console
BAD_ANSWERS = {
    "HTTP 500": Answer(500, b'{"error": "down"}'),
    "not JSON": Answer(200, b"<html>proxy error</html>", "text/html"),
    "wrong shape": Answer(200, json.dumps({"value": [{"name": 7, "value": ["x"]}]}).encode()),
    "nested past the stack": Answer(200, b"[" * 100_000 + b"]" * 100_000),
    "slow": Answer(200, b"", how="slow"),
    "endless": Answer(200, b"", how="endless"),
    "gzip that is not": Answer(200, b"not gzip", how="gzip-garbage"),
    "204 with a body": Answer(204, json.dumps(GOOD_ANALYTICS["/analytics/uves/vrouters"])
                              .encode()),
}


async def test_the_console_keeps_running_through_every_kind_of_bad_answer(
        tmp_path: Path) -> None:
    """The whole console (Pilot), its analytics screen open and polling, while both
    analytics-api give every kind of bad answer in turn: it keeps running and shows each
    cluster's error naming its URL; answered well again, it shows the vrouter."""
    from issu_tui.app import IssuApp
    from tests.tui.tui_world import build_journal, config_for, make_backend

    journal = build_journal(tmp_path, computes=3)
    with serving() as server:
        server.trickle_s = TRICKLE_S
        base = url(server)
        backend = make_backend(journal, config_for(tmp_path))
        backend.analytics = AnalyticsPoller({"old": base, "new": f"{base}/"}, CONTROL,
                                            timeout_s=READ_TIMEOUT_S, answer_deadline_s=0.5,
                                            transport=plain_http())
        app = IssuApp(backend, refresh_interval=3600, analytics_interval=0.05)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")

            async def polled_under(answers: dict[str, Answer]) -> None:
                server.answers = answers
                seen = app.analytics_polls
                for _ in range(1200):   # a poll begun after the change, then one more
                    await pilot.pause(0.05)
                    if app.analytics_polls >= seen + 2:
                        return
                raise AssertionError(f"no analytics poll finished (polls {seen})")

            for name, answer in BAD_ANSWERS.items():
                await polled_under({path: answer for path in GOOD_ANALYTICS})
                snap = app.state.analytics
                assert app.is_running and snap is not None, name
                for cluster in snap.clusters.values():
                    assert not cluster.ok and base in (cluster.error or ""), (name, cluster)
            recovering(backend.analytics)
            await polled_under(_good(GOOD_ANALYTICS))
            for _ in range(1200):  # at most one more poll fails (a connection left bad)
                snap = app.state.analytics
                if snap is not None and all(c.ok for c in snap.clusters.values()):
                    break
                await pilot.pause(0.05)
            assert snap is not None and all(c.ok for c in snap.clusters.values()), snap
            assert snap.computes["compute-1"].reports_to == "old"
            await pilot.press("q")
    backend.close()


# ------------------------------------------------------------------------------ seeds
# Failures the fuzzing found, kept as plain cases (each raised another exception, or hung).

def test_seed_api_server_body_not_json_names_the_url() -> None:
    with serving() as server:
        server.answers = {"GET /bgp-routers": Answer(200, b"<html>proxy error</html>")}
        with ApiServerClient(url(server), timeout_s=0.5, answer_deadline_s=1.0) as client:
            try:
                client.bgp_router_names()
            except ApiServerError as exc:
                assert url(server) in str(exc) and "unexpected answer" in str(exc)
            else:
                raise AssertionError("no error")


def test_seed_api_server_endless_body_is_cut_off() -> None:
    with serving() as server:
        server.answers = {"POST /fqname-to-id": Answer(200, b"", how="endless")}
        with ApiServerClient(url(server), timeout_s=0.5, answer_deadline_s=1.0) as client:
            try:
                client.pair([SPEC])
            except ApiServerError as exc:
                assert url(server) in str(exc)
            else:
                raise AssertionError("no error")


def test_seed_analytics_uve_of_the_wrong_shape_is_the_cluster_error() -> None:
    with serving() as server:
        base = url(server)
        server.answers = _good(GOOD_ANALYTICS)
        server.answers["/analytics/uves/vrouter/*"] = Answer(200, json.dumps(
            {"value": [{"name": "compute-1", "value": {"VrouterAgent": ["x"]}}]}).encode())
        with AnalyticsPoller({"old": base}, {}, timeout_s=0.5, answer_deadline_s=1.0) as poller:
            cluster = poller.poll().clusters["old"]
        assert not cluster.ok and base in (cluster.error or "")
