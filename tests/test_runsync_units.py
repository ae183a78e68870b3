"""run-sync pieces that need no service: message checks and translation, lanes, shares,
lag quantiles, the loopback-only metrics address."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
import zlib
from collections import Counter

import pytest

from backends.runsync.applier import Outcome
from backends.runsync.apply import link_uuids, share_keys
from backends.runsync.lanes import DoneQueue, Lanes
from backends.runsync.messages import BadMessage, parse, translate
from backends.runsync.metrics import LagWindow, RunSyncMetrics, parse_listen
from backends.runsync.processes import Delivery
from backends.runsync.routing import process_of

UUID = "8d6e1c4a-2f5b-4a8e-9d7c-0b1a2c3d4e5f"


def test_parse_accepts_contrail_messages_and_names_what_is_wrong() -> None:
    body = {"request-id": "req-1", "oper": "UPDATE", "type": "virtual-network",
            "uuid": UUID, "fq_name": ["default-domain", "p", "vn"]}
    change = parse(json.dumps(body).encode())
    assert (change.oper, change.type, change.uuid) == ("UPDATE", "virtual-network", UUID)
    assert change.fq_name == ("default-domain", "p", "vn")
    assert parse({**body, "fq_name": None}).fq_name is None
    for bad, reason in ((b"{x", "not JSON"), (b"[1]", "JSON list"),
                        (json.dumps({**body, "oper": "PATCH"}), "oper 'PATCH'"),
                        (json.dumps({**body, "uuid": "42"}), "uuid '42'"),
                        (json.dumps({**body, "type": ""}), "type ''"),
                        (json.dumps({**body, "fq_name": "a:b"}), "fq_name")):
        with pytest.raises(BadMessage, match=reason):
            parse(bad)


def test_translate_follows_the_version_path() -> None:
    body = {"oper": "CREATE", "type": "virtual-network", "uuid": UUID,
            "obj_dict": {"virtual_network_network_id": 5, "display_name": "x"}}
    out = translate(body, "4.1.0", "5.0.0")
    assert out["type"] == "virtual_network"
    assert out["obj_dict"] == {"virtual_network_id": 5, "display_name": "x"}
    assert body["type"] == "virtual-network"  # the original is left alone
    assert translate(body, "3.2.5", "5.1.0")["type"] == "virtual_network"  # chained
    assert translate(body, "5.0.0", "5.1.2") == body  # identity step
    assert translate(body, "", "") == body


class _Recorder:
    """Stands for the ChangeApplier: records which bodies each call got, checks that no two
    calls for one object overlap, and holds the first call for `held` until `release`."""

    def __init__(self, held: str) -> None:
        self.held, self.release = held, threading.Event()
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.calls: list[list[dict[str, object]]] = []
        self.overlaps = 0
        self.rng = random.Random(7)

    def process(self, bodies: list[bytes | str], *, thorough: bool = False) -> list[Outcome]:
        decoded = [json.loads(b) for b in bodies]
        key = decoded[0]["uuid"]
        with self.lock:
            self.overlaps += key in self.running
            self.running.add(key)
            pause = self.rng.random() * 0.002
        if key == self.held:
            self.release.wait(60)
        time.sleep(pause)
        with self.lock:
            self.running.discard(key)
            self.calls.append(decoded)
        return [Outcome("applied") for _ in bodies]

    def connect_publisher(self) -> None:
        pass


def test_lanes_take_any_object_and_keep_each_ones_order() -> None:
    """Any idle lane takes the next object: while one object's change is held, the others'
    are all applied (a lane picked by a hash of the uuid made those that hashed to the
    held one's lane wait for it). One object's changes are never applied by two lanes at
    once, and in the order they came (several at once when coalesced)."""
    held = str(uuid.UUID(int=0, version=4))
    lane = zlib.crc32(held.encode()) % 8  # the lane a hash gave it, of 8
    others = [k for k in (str(uuid.UUID(int=i, version=4)) for i in range(1, 200))
              if zlib.crc32(k.encode()) % 8 == lane][:2]
    others += [str(uuid.UUID(int=i, version=4)) for i in range(1000, 1003)]
    recorder = _Recorder(held)
    done: DoneQueue = queue.Queue()
    lanes = Lanes(recorder, 8, done)
    rng = random.Random(3)
    sent = [(held, 0)] + [(rng.choice([held, *others]), n) for n in range(1, 2000)]
    try:
        for key, n in sent:
            lanes.dispatch(key, Delivery(n, json.dumps({"uuid": key, "n": n}), False), 1)
        for _ in range(sum(1 for k, _ in sent if k != held)):
            message, _, outcome = done.get(timeout=30)  # type: ignore[misc]
            assert json.loads(message.body)["uuid"] != held and outcome.kind == "applied"
    finally:
        recorder.release.set()
        lanes.shutdown()
    assert recorder.overlaps == 0
    assert done.qsize() == sum(1 for k, _ in sent if k == held)
    for key in [held, *others]:
        applied = [b["n"] for call in recorder.calls if call[0]["uuid"] == key for b in call]
        assert applied == [n for k, n in sent if k == key]


def test_apply_processes_share_the_objects() -> None:
    rng = random.Random(1)
    keys = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    for processes in (1, 2, 3, 4):
        load = Counter(process_of(k, processes) for k in keys)
        assert set(load) == set(range(processes))
        assert max(load.values()) < 1.1 * len(keys) / processes


def test_share_keys_and_links() -> None:
    perms2 = {"global_access": 5, "share": [{"tenant": "tenant:abc", "tenant_access": 7},
                                            {"tenant": "domain:dom", "tenant_access": 4},
                                            {"tenant": "plain-id", "tenant_access": 4}]}
    assert share_keys(perms2) == {"global:", "tenant:abc", "domain:dom", "tenant:plain-id"}
    assert share_keys({"global_access": 0, "share": []}) == set()
    assert share_keys(None) == set()
    cols = ["parent:project:p1", "ref:network-ipam:i1", "ref:network_ipam:i2", "prop:x",
            "backref:virtual-machine-interface:v1"]
    assert link_uuids(cols, "parent") == {"p1"}
    assert link_uuids(cols, "ref") == {"i1", "i2"}


def test_lag_window_quantiles_and_counters_snapshot() -> None:
    window = LagWindow(window_s=60)
    assert all(q != q for q in window.quantiles(0.5, 0.99))  # NaN without samples
    for i in range(1, 101):
        window.add(i / 100)
    assert window.quantiles(0.5, 0.99) == [0.5, 0.99]
    metrics = RunSyncMetrics()
    metrics.applied.inc(3)
    metrics.observe_lag(0.25)
    snap = metrics.refresh()
    assert snap["applied"] == 3 and snap["lag_s"] == 0.25 and snap["lag_p99_s"] == 0.25


def test_metrics_listen_is_loopback_only() -> None:
    assert parse_listen("127.0.0.1:9109") == ("127.0.0.1", 9109)
    assert parse_listen("[::1]:9109") == ("::1", 9109)
    for bad, reason in (("0.0.0.0:9109", "loopback only"), ("10.1.2.3:9109", "loopback only"),
                        ("127.0.0.1", "not address:port"), ("127.0.0.1:65536", "0-65535"),
                        ("localhost:9109", "not an IP address")):
        with pytest.raises(ValueError, match=reason):
            parse_listen(bad)


def test_rabbit_tls_always_verifies_the_broker_and_honours_ssl_version() -> None:
    import ssl

    from backends.rabbit import RabbitSide, tls_version

    plain = RabbitSide("old", ("127.0.0.1",))
    assert plain.ssl_options() is False
    # No CA file: still CERT_REQUIRED (py-amqp then loads the system CA store), never CERT_NONE.
    no_ca = RabbitSide("old", ("127.0.0.1",), use_ssl=True).ssl_options()
    assert isinstance(no_ca, dict)
    assert no_ca["cert_reqs"] == ssl.CERT_REQUIRED
    assert no_ca["ssl_version"] == ssl.PROTOCOL_TLS_CLIENT
    assert "ca_certs" not in no_ca
    assert no_ca["tls_minimum_version"] == ssl.TLSVersion.TLSv1_2
    with_ca = RabbitSide("old", ("127.0.0.1",), use_ssl=True, ssl_ca_certs="/etc/ca.pem",
                         ssl_version="tlsv1_3", ssl_certfile="/c.pem",
                         ssl_keyfile="/k.pem").ssl_options()
    assert isinstance(with_ca, dict)
    assert with_ca["cert_reqs"] == ssl.CERT_REQUIRED
    assert with_ca["ca_certs"] == "/etc/ca.pem"
    assert (with_ca["certfile"], with_ca["keyfile"]) == ("/c.pem", "/k.pem")
    assert with_ca["tls_minimum_version"] == with_ca["tls_maximum_version"] == (
        ssl.TLSVersion.TLSv1_3)
    # The context py-amqp builds from these options verifies the peer.
    ctx = ssl.SSLContext(no_ca["ssl_version"])
    ctx.verify_mode = no_ca["cert_reqs"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert tls_version("sslv23") is None
    assert tls_version("TLSv1_2") == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="'sslv3'"):
        RabbitSide("old", ("h",), use_ssl=True, ssl_version="sslv3").ssl_options()


class _RangesOnly:
    """A replicator for the reconciler's walk alone: `ranges` token ranges per table, each
    taking `took` seconds of a fake clock and differing nowhere."""

    def __init__(self, clock: list[float], ranges: int, took: float) -> None:
        self.clock, self.ranges, self.took = clock, ranges, took

    def context(self, keyspace: str, table: str) -> object:
        return type("Ctx", (), {"translator": type("T", (), {"renames_keys": False})()})()

    def token_ranges(self, slices: int) -> list[tuple[int, int, int]]:
        return [(i, i, i + 1) for i in range(self.ranges)]

    def range_diff(self, keyspace: str, table: str, lo: int, hi: int) -> list[object]:
        self.clock[0] += self.took
        return []


class _ClockStop(threading.Event):
    """A stop event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock, self.waits = clock, []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.clock[0] += timeout or 0.0
        return self.is_set()


def test_a_reconcile_pass_gives_way_to_the_replay_while_changes_flow() -> None:
    """A whole pass run flat out beside the replay took 39 % of the consuming process's CPU
    and the replay's lag grew with it: while changes flow it takes a quarter of the time
    (a pause of 3x each range's time after it), and runs flat out when none do."""
    from backends.runsync.reconcile import MAX_PAUSE_S, Reconciler

    clock = [0.0]
    flowing = [True]
    repl = _RangesOnly(clock, ranges=2, took=1.0)
    reconciler = Reconciler(repl, tables=("a", "b"), busy=lambda: flowing[0],  # type: ignore[arg-type]
                            clock=lambda: clock[0])
    stop = _ClockStop(clock)
    report = reconciler.run_pass(stop)
    assert report.complete and report.ranges == 4
    assert stop.waits == [3.0] * 4
    assert report.paused_s == 12.0 and report.seconds == 16.0  # 4 s of work: a quarter

    flowing[0] = False  # nothing flowing: no pause
    stop = _ClockStop(clock)
    report = reconciler.run_pass(stop)
    assert stop.waits == [] and report.paused_s == 0.0 and report.seconds == 4.0

    flowing[0] = True  # a slow range: the pause is bounded
    repl.took = 100.0
    stop = _ClockStop(clock)
    reconciler.run_pass(stop)
    assert stop.waits == [MAX_PAUSE_S] * 4


def test_a_reconcile_pass_takes_a_twentieth_while_the_replay_is_behind() -> None:
    """Paced to a quarter, a pass still queued changes when the replay had no room to spare
    (docs/benchmarks-archive.md): while changes wait on the broker it takes a twentieth."""
    from backends.runsync.reconcile import Reconciler

    clock = [0.0]
    behind = [True]
    reconciler = Reconciler(_RangesOnly(clock, ranges=2, took=0.5), tables=("a",),  # type: ignore[arg-type]
                            busy=lambda: True, behind=lambda: behind[0],
                            clock=lambda: clock[0])
    stop = _ClockStop(clock)
    assert reconciler.run_pass(stop).paused_s == pytest.approx(19.0)  # 2 x 0.5 s x 19
    assert stop.waits == pytest.approx([9.5, 9.5])
    behind[0] = False  # caught up, changes still flowing: a quarter again
    stop = _ClockStop(clock)
    reconciler.run_pass(stop)
    assert stop.waits == pytest.approx([1.5, 1.5])
