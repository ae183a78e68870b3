"""run-sync against the real RabbitMQ, Cassandra (old and new clusters) and the journal.

A small stand-in for the old api-server (`OldApi`) writes Contrail-shaped rows into the old
Cassandra and announces each change on the old vhost's `vnc_config.object-update` exchange,
as Contrail does. Each test has its own keyspace prefixes and queue name.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kombu
import pytest

from backends.cassandra.connection import CassandraSide, connect, connect_pair
from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.cassandra.verify import Verifier, VerifyReport
from backends.progress import MemoryCheckpoints, MemoryCounters, MemoryEvents
from backends.rabbit import (
    RabbitSide,
    connection,
    issu_queue,
    object_update_exchange,
    queue_depth,
)
from backends.runsync.options import RunSyncOptions
from backends.runsync.processes import WorkerSpec
from backends.runsync.service import ReplayService
from tests import contrail_data as cd
from tests.runsync_config import runsync_toml

CONFIG_DB = {"config_db_uuid": cd.CONTRAIL_TABLES["config_db_uuid"]}
ROOT = Path(__file__).resolve().parent.parent


def wait_until(pred: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.2)


def wait_verified(world: World, timeout: float, what: str) -> None:
    """Wait until verify finds new equal to old; on timeout, say what still differs."""
    last: list[VerifyReport] = []

    def verified() -> bool:
        last[:] = [world.verify()]
        return last[0].ok

    try:
        wait_until(verified, timeout, what)
    except AssertionError as exc:
        diffs = [(f"{t.keyspace}.{t.table}", t.status, t.missing, t.extra, t.different,
                  t.samples[:5], t.errors[:3]) for t in last[0].tables if t.status != "ok"] \
            if last else []
        raise AssertionError(f"{exc}; still differing: {diffs}") from None


# ------------------------------------------------------------------------------ the world


class OldApi:
    """Writes objects into old's config_db_uuid the way the api-server does, and announces
    each change on the old exchange (types spelled the 4.x way: `virtual-network`)."""

    def __init__(self, session, prefix: str, rabbit: RabbitSide) -> None:  # type: ignore[no-untyped-def]
        self.uuid_io = cd.TableIO(session, prefix, cd.UUID_TABLE)
        self.fq_io = cd.TableIO(session, prefix, cd.FQ_TABLE)
        self.shared_io = cd.TableIO(session, prefix, cd.SHARED_TABLE)
        self.rabbit = rabbit
        self.objects: dict[str, tuple[str, list[str], str | None]] = {}  # uuid -> type, fq, parent
        self.lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self.published = 0
        self.unannounced = 0

    def _publish(self, body: dict) -> None:
        for attempt in range(200):
            try:
                if self._producer is None:
                    self._conn = connection(self.rabbit)
                    self._conn.connect()
                    channel = self._conn.channel()
                    exchange = object_update_exchange(self.rabbit)
                    exchange(channel).declare()
                    self._producer = kombu.Producer(channel, exchange=exchange)
                self._producer.publish(json.dumps(body), content_type="application/json")
                self.published += 1
                return
            except Exception:
                self._producer = None
                if self._conn is not None:
                    self._conn.release()
                if attempt > 3:  # the broker is down: the change stays unannounced
                    self.unannounced += 1
                    return
                time.sleep(0.3)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.release()

    def create(self, type_name: str, fq_name: list[str], parent: str | None = None,
               refs: list[str] = (), announce: bool = True, **props: object) -> str:
        ds = cd.Dataset()
        parent_ref = (self.objects[parent][0], parent) if parent else None
        uid = cd.add_object(ds, type_name, fq_name, parent=parent_ref,
                            refs=[(self.objects[r][0], r) for r in refs], props=props)
        ts = cd.now_us()
        for key, cells in ds.tables[cd.UUID_TABLE].items():
            self.uuid_io.write(key, cells, ts)
        for key, cells in ds.tables[cd.FQ_TABLE].items():
            self.fq_io.write(key, cells, ts)
        with self.lock:
            self.objects[uid] = (type_name, fq_name, parent)
        if announce:
            self._publish({"request-id": f"req-{uuid.uuid4()}", "oper": "CREATE",
                           "type": type_name, "uuid": uid, "fq_name": fq_name,
                           "obj_dict": {"uuid": uid, "fq_name": fq_name, **props}})
        else:
            self.unannounced += 1
        return uid

    def update(self, uid: str, announce: bool = True, drop: str | None = None,
               **props: object) -> None:
        type_name, fq_name, _ = self.objects[uid]
        self.uuid_io.write(uid, {f"prop:{k}": json.dumps(v) for k, v in props.items()})
        if drop:
            self.uuid_io.delete(uid, [f"prop:{drop}"])
        if announce:
            self._publish({"request-id": f"req-{uuid.uuid4()}", "oper": "UPDATE",
                           "type": type_name, "uuid": uid, "fq_name": fq_name})
        else:
            self.unannounced += 1

    def share(self, uid: str, tenant: str) -> None:
        """Share an object with a tenant (perms2 + obj_shared_table), announced."""
        type_name, fq_name, _ = self.objects[uid]
        perms2 = {"owner": "admin", "owner_access": 7, "global_access": 0,
                  "share": [{"tenant": f"tenant:{tenant}", "tenant_access": 5}]}
        self.uuid_io.write(uid, {"prop:perms2": json.dumps(perms2)})
        self.shared_io.write(type_name, {f"tenant:{tenant}:{uid}": "5"})
        self._publish({"request-id": "r", "oper": "UPDATE", "type": type_name, "uuid": uid,
                       "fq_name": fq_name})

    def delete(self, uid: str, announce: bool = True) -> None:
        with self.lock:
            type_name, fq_name, parent = self.objects.pop(uid)
        if parent:
            self.uuid_io.delete(parent, [f"children:{type_name}:{uid}"])
        self.fq_io.delete(type_name, [":".join(fq_name) + ":" + uid])
        self.uuid_io.delete_partition(uid)
        if announce:
            self._publish({"request-id": f"req-{uuid.uuid4()}", "oper": "DELETE",
                           "type": type_name, "uuid": uid, "fq_name": fq_name})
        else:
            self.unannounced += 1


@dataclass
class World:
    services: object
    tag: str
    old_prefix: str
    new_prefix: str
    queue: str
    old_side: CassandraSide
    new_side: CassandraSide
    old_rabbit: RabbitSide
    new_rabbit: RabbitSide
    api: OldApi
    conns: list = field(default_factory=list)
    project: str = ""

    def connect_both(self):  # type: ignore[no-untyped-def]
        return connect(self.old_side), connect(self.new_side)

    def new_table(self, table: str) -> cd.TableIO:
        """A reader of one of new's config_db_uuid tables (its driver cluster is shut down
        when the test ends)."""
        conn = connect(self.new_side)
        self.conns.append(conn)
        return cd.TableIO(conn.session, self.new_prefix, table)

    def queue_depth(self) -> int:
        """Messages ready in run-sync's queue, asked of the broker now (exact when no
        consumer holds any, e.g. after run-sync stopped)."""
        conn = connection(self.old_rabbit)
        try:
            conn.connect()
            return queue_depth(conn.channel(), self.queue)
        finally:
            conn.release()

    def verify(self) -> VerifyReport:
        old, new = self.connect_both()
        try:
            settings = SyncSettings(slices_per_table=8, concurrency=4,
                                    keyspaces=("config_db_uuid",))
            return Verifier(old, new, load_registry(), settings, recheck_delay_s=0.5).run()
        finally:
            old.close()
            new.close()

    def run_sync(self, **options: object) -> ReplayService:
        opts = RunSyncOptions(queue_name=self.queue, old_version="4.1.0",
                              new_version="5.0.0", reconcile_slices=8,
                              backoff_max_s=2.0, counters_interval_s=0.5,
                              **{"metrics_listen": None, "reconcile_interval_s": 3600.0,
                                 "reconcile_after_catch_up": False,
                                 "concurrency": 4, **options})  # type: ignore[arg-type]
        settings = SyncSettings(slices_per_table=8, concurrency=4)
        # the apply processes (options processes > 1) connect with a picklable factory
        spec = WorkerSpec(connect=functools.partial(connect_pair, self.old_side, self.new_side),
                          new_rabbit=self.new_rabbit, settings=settings, options=opts)
        return ReplayService(old_rabbit=self.old_rabbit, new_rabbit=self.new_rabbit,
                             connect_cassandra=self.connect_both, registry=load_registry(),
                             settings=settings, options=opts, checkpoints=MemoryCheckpoints(),
                             events=MemoryEvents(), counters=MemoryCounters(),
                             worker_spec=spec)

    def toml(self, state_dir: Path) -> str:
        return runsync_toml(self.services, state_dir=state_dir,  # type: ignore[arg-type]
                            queue=self.queue, old_prefix=self.old_prefix,
                            new_prefix=self.new_prefix, password_env="ISSU_TEST_RABBIT_PASSWORD",
                            concurrency=4, slices_per_table=8)


@pytest.fixture()
def world(services) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    old_prefix, new_prefix = f"rso{tag}", f"rsn{tag}"
    ch, nh = services.cassandra_old, services.cassandra_new
    old_side = CassandraSide("old", (ch.host,), ch.port, prefix=old_prefix, version="4.1.0")
    new_side = CassandraSide("new", (nh.host,), nh.port, prefix=new_prefix, version="5.0.0")
    r = services.rabbit
    old_rabbit = RabbitSide("old", (r.host,), r.port, r.user, r.password, r.vhost_old)
    new_rabbit = RabbitSide("new", (r.host,), r.port, r.user, r.password, r.vhost_new)
    old = connect(old_side)
    cd.create_schema(old.session, old_prefix, tables=CONFIG_DB)
    api = OldApi(old.session, old_prefix, old_rabbit)
    w = World(services, tag, old_prefix, new_prefix, f"issu-test-{tag}", old_side, new_side,
              old_rabbit, new_rabbit, api)
    # A base the catch-up copy has to bring over: a domain and a project.
    dom = api.create("domain", ["default-domain"], announce=False)
    w.project = api.create("project", ["default-domain", "p1"], parent=dom, announce=False)
    api.unannounced = 0
    yield w
    api.close()
    for reader in w.conns:
        reader.close()
    conn = connection(old_rabbit)
    try:
        channel = conn.channel()
        for name in (w.queue, w.queue + ".quarantine"):
            channel.queue_delete(name)
    finally:
        conn.release()
    new = connect(new_side)
    cd.drop_schema(old.session, old_prefix)
    cd.drop_schema(new.session, new_prefix)
    old.close()
    new.close()


class NewListener:
    """A queue of our own on the NEW vhost's exchange: what run-sync republished."""

    def __init__(self, side: RabbitSide) -> None:
        self.conn = connection(side)
        self.conn.connect()
        channel = self.conn.channel()
        self.queue = kombu.Queue(f"listener-{uuid.uuid4().hex[:6]}",
                                 object_update_exchange(side), exclusive=True)(channel)
        self.queue.declare()

    def take_all(self) -> list[dict]:
        out = []
        while (msg := self.queue.get(no_ack=True)) is not None:
            out.append(json.loads(msg.body))
        return out

    def close(self) -> None:
        self.conn.release()


def start_thread(rs: ReplayService) -> threading.Thread:
    thread = threading.Thread(target=rs.run, name="run-sync-under-test", daemon=True)
    thread.start()
    wait_until(rs.ready.is_set, 180, "run-sync consuming")
    return thread


def stop_thread(rs: ReplayService, thread: threading.Thread) -> None:
    rs.stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive()


def applied(rs: ReplayService) -> float:
    return rs.metrics.applied._value.get()


# ------------------------------------------------------------------------------ tests


def test_changes_applied_translated_and_republished(world: World) -> None:
    api = world.api
    listener = NewListener(world.new_rabbit)
    rs = world.run_sync(metrics_listen="127.0.0.1:0")
    thread = start_thread(rs)
    try:
        # the catch-up copy brought the unannounced base over, translated
        new_uuid = world.new_table(cd.UUID_TABLE)
        assert json.loads(new_uuid.read_partition(world.project)["type"][0]) == "project"

        ipam = api.create("network-ipam", ["default-domain", "p1", "ipam"], parent=world.project)
        vn = api.create("virtual-network", ["default-domain", "p1", "vn1"], parent=world.project,
                        refs=[ipam], virtual_network_network_id=7, is_shared=False)
        api.update(vn, drop="is_shared", display_name="vn-one")
        api.share(vn, world.project)
        gone = api.create("virtual-network", ["default-domain", "p1", "tmp"],
                          parent=world.project)
        api.delete(gone)
        wait_until(lambda: applied(rs) >= api.published, 60, "all messages applied")

        row = {c: json.loads(v) for c, (v, _) in new_uuid.read_partition(vn).items()}
        assert row["type"] == "virtual_network"
        assert row["prop:virtual_network_id"] == 7          # renamed property
        assert "prop:virtual_network_network_id" not in row
        assert "prop:is_shared" not in row                   # replace, not merge
        assert row["prop:display_name"] == "vn-one"
        assert f"ref:network_ipam:{ipam}" in row
        ipam_row = new_uuid.read_partition(ipam)
        assert f"backref:virtual_network:{vn}" in ipam_row
        project_row = new_uuid.read_partition(world.project)
        assert f"children:virtual_network:{vn}" in project_row
        assert f"children:virtual_network:{gone}" not in project_row
        assert new_uuid.read_partition(gone) == {}
        fq = world.new_table(cd.FQ_TABLE)
        fq_cols = fq.read_partition("virtual_network")
        assert f"default-domain:p1:vn1:{vn}" in fq_cols
        assert f"default-domain:p1:tmp:{gone}" not in fq_cols

        wait_verified(world, 60, "verify clean")

        # republished on the new vhost, translated (`_` type names), in order per object
        got: list[dict] = []
        wait_until(lambda: (got.extend(listener.take_all()) or len(got)) >= api.published, 30,
                   "republished messages")
        assert {m["type"] for m in got} == {"network_ipam", "virtual_network"}
        assert [m["oper"] for m in got if m["uuid"] == vn] == ["CREATE", "UPDATE", "UPDATE"]
        create_vn = next(m for m in got if m["uuid"] == vn and m["oper"] == "CREATE")
        assert create_vn["obj_dict"]["virtual_network_id"] == 7

        # lag and counts: journal (CounterSink) and the Prometheus endpoint on loopback
        rs._publish_counters()
        counters = rs.counters.values["runsync"]  # type: ignore[union-attr]
        assert counters["applied"] == api.published
        assert counters["quarantined"] == 0
        assert 0 <= counters["lag_p50_s"] <= counters["lag_p99_s"]
        host, port = rs.metrics_address  # type: ignore[misc]
        assert host == "127.0.0.1"
        text = httpx.get(f"http://{host}:{port}/metrics").text
        assert f"issu_runsync_applied_total {float(api.published)}" in text
        assert 'issu_runsync_lag_seconds{quantile="0.99"}' in text
    finally:
        stop_thread(rs, thread)
        listener.close()


def test_concurrent_writes_updates_deletes_then_verify_is_clean(world: World) -> None:
    api = world.api
    rng = random.Random(5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        live: list[str] = []
        n = 0
        try:
            while not stop.is_set() or n < 150:
                n += 1
                roll = rng.random()
                if roll < 0.5 or len(live) < 5:
                    live.append(api.create("virtual-network", ["default-domain", "p1", f"vn{n}"],
                                           parent=world.project,
                                           virtual_network_network_id=n))
                elif roll < 0.8:
                    api.update(rng.choice(live), drop=rng.choice([None, "display_name"]),
                               is_shared=bool(n % 2))
                else:
                    api.delete(live.pop(rng.randrange(len(live))))
                if n >= 400:
                    break
        except BaseException as exc:
            errors.append(exc)

    # The queue exists before the first change (as after a previous run), so every announced
    # change is in it and the count to wait for is exact.
    conn = connection(world.old_rabbit)
    try:
        issu_queue(world.old_rabbit, world.queue)(conn.channel()).declare()
    finally:
        conn.release()
    writer = threading.Thread(target=churn)
    writer.start()  # changes start before run-sync: during its start-up and catch-up copy
    time.sleep(0.3)
    rs = world.run_sync()
    thread = start_thread(rs)
    try:
        stop.set()
        writer.join(timeout=300)
        assert not errors, errors
        wait_until(lambda: applied(rs) >= api.published and rs._in_flight == 0, 120,
                   "every announced change applied")
        report = world.verify()
        assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]
    finally:
        stop_thread(rs, thread)
    assert world.queue_depth() == 0


def test_a_reconciliation_pass_follows_the_catch_up_backlog(world: World) -> None:
    """Changes made during the catch-up copy are applied from the queue, then one pass
    compares old and new (the periodic ones are an hour apart here)."""
    api = world.api
    made = [api.create("virtual-network", ["default-domain", "p1", f"cu{i}"],
                       parent=world.project) for i in range(10)]
    rs = world.run_sync(reconcile_after_catch_up=True)
    thread = start_thread(rs)
    try:
        more = [api.create("virtual-network", ["default-domain", "p1", f"cv{i}"],
                           parent=world.project) for i in range(10)]
        for uid in made[:3]:
            api.delete(uid)
        wait_until(lambda: rs.metrics.reconcile_passes._value.get() >= 1, 120,
                   "a pass once the backlog is applied")
        events = [m for k, m, _ in rs.events.events  # type: ignore[union-attr]
                  if k == "run-sync" and "catch-up copy are applied" in m]
        assert len(events) == 1
        new_uuid = world.new_table(cd.UUID_TABLE)
        # the pass starts when the queue is empty for a moment: changes announced after that
        # moment may still be on their way through the lanes
        wait_verified(world, 120, "new equal to old after the pass")
        assert all(new_uuid.read_partition(uid) for uid in more)
        time.sleep(3)  # several queue checks later: still one pass
        assert rs.metrics.reconcile_passes._value.get() == 1
    finally:
        stop_thread(rs, thread)


def test_poison_message_is_quarantined_with_reason(world: World) -> None:
    rs = world.run_sync(max_attempts=2, backoff_initial_s=0.05)
    thread = start_thread(rs)
    try:
        conn = connection(world.old_rabbit)
        producer = kombu.Producer(conn.channel(), exchange=object_update_exchange(world.old_rabbit))
        producer.publish(b"{not json", content_type="application/octet-stream",
                         content_encoding="binary")
        producer.publish(json.dumps({"oper": "CREATE", "type": "virtual-network",
                                     "uuid": "not-a-uuid", "fq_name": ["a"]}))
        good = world.api.create("virtual-network", ["default-domain", "p1", "ok"],
                                parent=world.project)
        wait_until(lambda: rs.metrics.quarantined._value.get() >= 2 and applied(rs) >= 1, 60)

        channel = conn.channel()
        reasons = []
        while (msg := kombu.Queue(world.queue + ".quarantine")(channel).get(no_ack=True)):
            reasons.append(msg.headers["x-issu-reason"])
        conn.release()
        assert len(reasons) == 2
        assert any("not JSON" in r for r in reasons)
        assert any("not-a-uuid" in r for r in reasons)
        events = [m for k, m, _ in rs.events.events  # type: ignore[union-attr]
                  if k == "run-sync" and m.startswith("message quarantined")]
        assert len(events) == 2
        new_uuid = world.new_table(cd.UUID_TABLE)
        assert new_uuid.read_partition(good)  # the good message behind them went through
    finally:
        stop_thread(rs, thread)
    assert world.queue_depth() == 0  # all three acknowledged (no consumer left)


def test_reconciliation_finds_a_change_no_message_announced(world: World) -> None:
    api = world.api
    rs = world.run_sync()
    thread = start_thread(rs)
    try:
        silent = api.create("virtual-network", ["default-domain", "p1", "silent"],
                            parent=world.project, announce=False)
        api.update(world.project, announce=False, description="changed quietly")
        new_uuid = world.new_table(cd.UUID_TABLE)
        time.sleep(1)
        assert new_uuid.read_partition(silent) == {}  # no message, nothing replayed
        rs.request_reconcile()
        wait_until(lambda: rs.metrics.reconcile_passes._value.get() >= 1, 120, "a pass")
        assert rs.metrics.reconciled._value.get() >= 2
        assert json.loads(new_uuid.read_partition(silent)["type"][0]) == "virtual_network"
        assert world.verify().ok
    finally:
        stop_thread(rs, thread)


def test_rabbitmq_restarted_mid_stream(world: World, launcher) -> None:  # type: ignore[no-untyped-def]
    api = world.api
    rs = world.run_sync(backoff_initial_s=0.2)
    thread = start_thread(rs)
    try:
        made = [api.create("virtual-network", ["default-domain", "p1", f"a{i}"],
                           parent=world.project) for i in range(30)]
        launcher.restart("rabbitmq")
        made += [api.create("virtual-network", ["default-domain", "p1", f"b{i}"],
                            parent=world.project) for i in range(30)]
        for uid in made[:10]:
            api.update(uid, display_name="after restart")
        wait_until(lambda: rs.metrics.reconnects._value.get() >= 1 and rs.ready.is_set(), 120,
                   "reconnected")
        later = api.create("virtual-network", ["default-domain", "p1", "later"],
                           parent=world.project)
        new_uuid = world.new_table(cd.UUID_TABLE)
        wait_until(lambda: bool(new_uuid.read_partition(later)), 60,
                   "a change announced after the restart replayed (no reconciliation yet)")
        assert rs.metrics.reconcile_passes._value.get() == 0
        # Changes announced while the broker was down never reached any queue (the
        # api-server's message was lost with it): reconciliation brings them over.
        rs.request_reconcile()
        passes = rs.metrics.reconcile_passes._value.get()
        wait_until(lambda: rs.metrics.reconcile_passes._value.get() > passes, 120)
        wait_verified(world, 60, "verify clean")
    finally:
        stop_thread(rs, thread)


def _spawn(world: World, tmp_path: Path) -> subprocess.Popen:
    config = tmp_path / "issu.toml"
    config.write_text(world.toml(tmp_path / "state"))
    env = {**os.environ, "ISSU_TEST_RABBIT_PASSWORD": world.old_rabbit.password}
    log = open(tmp_path / "run-sync.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "issu_tui.runsync_cli", "run", "-c", str(config),
         "--reconcile-interval", "3600"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _journal_counter(tmp_path: Path, name: str) -> float:
    from issu_tui.journal import Journal

    path = tmp_path / "state" / "journal.db"
    if not path.exists():
        return 0.0
    try:
        journal = Journal(path, read_only=True)
    except Exception:  # being created by the child right now
        return 0.0
    try:
        return journal.counters("runsync").get(name, 0.0)
    except Exception:  # tables not created yet
        return 0.0
    finally:
        journal.close()


def test_sigkill_mid_stream_then_restart_loses_nothing(world: World, tmp_path: Path) -> None:
    """The queue is durable and messages are acknowledged only after the write: whatever the
    killed process had in hand or never received is applied by the next one. No
    reconciliation runs here (interval 1 h), so the queue alone must carry every change."""
    api = world.api
    proc = _spawn(world, tmp_path)
    killed = False
    try:
        log_file = tmp_path / "run-sync.log"
        wait_until(lambda: "replaying changes" in log_file.read_text() or proc.poll() is not None,
                   180, f"run-sync started: {log_file}")
        assert proc.poll() is None, log_file.read_text()[-3000:]
        live: list[str] = []
        errors: list[BaseException] = []

        finish = threading.Event()
        made = [0]

        def stream() -> None:  # a steady stream of changes across the kill and the restart
            try:
                for i in range(3000):
                    if finish.is_set() and i >= 300:
                        break
                    made[0] = i
                    live.append(api.create("virtual-network", ["default-domain", "p1", f"k{i}"],
                                           parent=world.project))
                    if i % 5 == 4:
                        api.update(live[-2], drop="display_name", is_shared=True)
                    if i % 7 == 6:
                        api.delete(live.pop(0))
                    time.sleep(0.03)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=stream)
        writer.start()
        wait_until(lambda: _journal_counter(tmp_path, "applied") >= 10, 60, "some applied")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = True
        at_kill = made[0]  # the stream runs until `finish`: changes keep coming while dead
        wait_until(lambda: made[0] >= at_kill + 10 or bool(errors), 60, "changes while dead")
        proc = _spawn(world, tmp_path)
        killed = False
        wait_until(lambda: made[0] >= at_kill + 20 or bool(errors), 60, "changes after")
        finish.set()
        writer.join(timeout=300)
        assert not errors, errors
        try:
            wait_verified(world, 180, "new == old after the restart")
        except AssertionError:
            log_tail = (tmp_path / "run-sync.log").read_text()[-3000:]
            raise AssertionError(f"{world.verify().as_dict()}\n{log_tail}") from None
        log_text = (tmp_path / "run-sync.log").read_text()
        assert "catch-up copy of config_db_uuid skipped" in log_text  # not copied again
        # graceful stop: SIGTERM -> exit 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if not killed and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_new_cassandra_restarted_mid_stream(world: World, launcher) -> None:  # type: ignore[no-untyped-def]
    """While the new Cassandra is down, messages are retried with backoff, not acknowledged
    and not quarantined; once it is back every change lands (no reconciliation here)."""
    api = world.api
    rs = world.run_sync(backoff_initial_s=0.2)
    thread = start_thread(rs)
    try:
        made = [api.create("virtual-network", ["default-domain", "p1", f"c{i}"],
                           parent=world.project) for i in range(20)]
        wait_until(lambda: applied(rs) >= 20, 60, "first changes applied")
        launcher.stop("cassandra-new")
        try:
            made += [api.create("virtual-network", ["default-domain", "p1", f"d{i}"],
                                parent=world.project) for i in range(20)]
            for uid in made[:5]:
                api.update(uid, display_name="while new was down")
            wait_until(lambda: rs.metrics.failed._value.get() >= 1, 60, "apply failing")
        finally:  # later tests of the session need it, whatever happened here
            launcher.start("cassandra-new")
        wait_until(lambda: applied(rs) >= api.published, 300, "all applied after the restart")
        assert rs.metrics.quarantined._value.get() == 0
        assert rs.metrics.reconcile_passes._value.get() == 0
        wait_verified(world, 120, "verify clean")
    finally:
        stop_thread(rs, thread)


def test_cleanup_queues_reports_depth_then_deletes_both(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`issu sync cleanup-queues` (finalize/abort): each queue's depth, then both gone from
    the old vhost, so later config changes no longer pile up there; a second call is a no-op.
    Messages are deleted only when confirmed (--yes without a terminal), and nothing while
    run-sync consumes."""
    from click.testing import CliRunner

    from backends.rabbit import delete_issu_queues, issu_queue, quarantine_queue, queue_exists
    from issu_tui.runsync_cli import cleanup_command

    conn = connection(world.old_rabbit)
    try:
        channel = conn.channel()
        issu_queue(world.old_rabbit, world.queue)(channel).declare()
        quarantine_queue(world.queue)(channel).declare()
        kombu.Producer(channel).publish("poison", routing_key=world.queue + ".quarantine")
    finally:
        conn.release()
    for i in range(3):
        world.api.create("virtual-network", ["default-domain", "p1", f"c{i}"],
                         parent=world.project)

    (tmp_path / "issu.toml").write_text(world.toml(tmp_path / "state"))
    monkeypatch.setenv("ISSU_TEST_RABBIT_PASSWORD", world.old_rabbit.password)
    config = ["-c", str(tmp_path / "issu.toml")]
    # messages in the queues: without a terminal, only with --yes
    asked = CliRunner().invoke(cleanup_command, config)
    assert asked.exit_code == 2, asked.output
    assert f"{world.queue} holds 3 message(s)" in asked.output and "--yes" in asked.output
    # a consumer (run-sync running): refused, whatever --yes says
    conn = connection(world.old_rabbit)
    try:
        channel = conn.channel()
        channel.basic_consume(queue=world.queue, callback=lambda *_: None)
        busy = CliRunner().invoke(cleanup_command, [*config, "--yes"])
        assert busy.exit_code == 1, busy.output
        assert "has 1 consumer(s): run-sync is still running" in busy.output
    finally:
        conn.release()
    conn = connection(world.old_rabbit)
    try:
        conn.connect()
        assert queue_exists(conn.channel(), world.queue)  # nothing deleted so far
        assert queue_exists(conn.channel(), world.queue + ".quarantine")
    finally:
        conn.release()
    result = CliRunner().invoke(cleanup_command, [*config, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"{world.queue}: deleted, held 3 message(s)" in result.output
    assert f"{world.queue}.quarantine: deleted, held 1 message(s)" in result.output
    conn = connection(world.old_rabbit)
    try:
        conn.connect()
        for name in (world.queue, world.queue + ".quarantine"):
            assert not queue_exists(conn.channel(), name)
    finally:
        conn.release()
    again = delete_issu_queues(world.old_rabbit, world.queue)
    assert [(r.depth, r.deleted) for r in again] == [(None, False), (None, False)]
    result = CliRunner().invoke(cleanup_command, config)
    assert result.exit_code == 0 and "absent" in result.output, result.output


def test_second_run_sync_on_one_state_dir_exits_3_naming_the_holder(
        world: World, tmp_path: Path) -> None:
    """Two run-syncs on one state directory would consume one queue and share checkpoints:
    the second exits 3 naming the first one's pid; once the first is gone the lock is free."""
    first = _spawn(world, tmp_path)
    try:
        lock = tmp_path / "state" / "run-sync.lock"
        wait_until(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), 60,
                   "the first run-sync holding the lock")
        env = {**os.environ, "ISSU_TEST_RABBIT_PASSWORD": world.old_rabbit.password}
        second = subprocess.run(
            [sys.executable, "-m", "issu_tui.runsync_cli", "run", "-c",
             str(tmp_path / "issu.toml")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None  # the holder is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)

    from issu_tui.runsync_cli import take_run_lock

    handle = take_run_lock(tmp_path / "state")  # released by the exit
    handle.close()


def _hold_the_lane(monkeypatch: pytest.MonkeyPatch,
                   blocker: str) -> tuple[threading.Event, threading.Event]:
    """Applying `blocker` holds its lane (run-sync with one lane: every lane) until
    `release` is set, so the messages behind it queue up; `started` tells it holds."""
    from backends.runsync.apply import ObjectApplier

    started, release = threading.Event(), threading.Event()
    original = ObjectApplier.apply

    def gated(self: ObjectApplier, change, **options):  # type: ignore[no-untyped-def]
        if change.uuid == blocker:
            started.set()
            release.wait(120)
        return original(self, change, **options)

    monkeypatch.setattr(ObjectApplier, "apply", gated)
    return started, release


def test_queued_changes_of_one_object_coalesce_into_one_write(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages of one object waiting in its lane are served by one re-read and replace:
    each is still republished, in order, and acknowledged after the write."""
    api = world.api
    blocker = api.create("virtual-network", ["default-domain", "p1", "blocker"],
                         parent=world.project, announce=False)
    busy = api.create("virtual-network", ["default-domain", "p1", "busy"],
                      parent=world.project, announce=False)
    started, release = _hold_the_lane(monkeypatch, blocker)
    listener = NewListener(world.new_rabbit)
    rs = world.run_sync(concurrency=1, prefetch=50)
    thread = start_thread(rs)
    try:
        api.update(blocker, display_name="b")
        wait_until(started.is_set, 60, "the lane busy")
        for i in range(5):
            api.update(busy, display_name=f"v{i}")
        wait_until(lambda: rs._in_flight == 6, 60, "all six delivered")
        release.set()
        wait_until(lambda: applied(rs) == 6 and rs._in_flight == 0, 60, "six applied")
        assert rs.metrics.object_writes._value.get() == 2  # the blocker, then `busy` once
        assert rs.metrics.coalesced._value.get() == 4
        new_uuid = world.new_table(cd.UUID_TABLE)
        assert json.loads(new_uuid.read_partition(busy)["prop:display_name"][0]) == "v4"
        republished: list[dict] = []
        wait_until(lambda: len(republished.__iadd__(listener.take_all())) >= 6, 30,
                   "six republished")
        assert [m["uuid"] for m in republished] == [blocker] + [busy] * 5
        assert {m["type"] for m in republished} == {"virtual_network"}
    finally:
        release.set()
        stop_thread(rs, thread)
        listener.close()
    assert world.queue_depth() == 0  # every message acknowledged


def test_a_change_does_not_wait_behind_another_objects_change(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a lane idle, a change is applied at once, whatever object holds another lane:
    lanes were picked by a hash of the uuid, and a change waited behind an unrelated slow
    one in its lane while the other lane idled (most of the lag at a low rate). The object
    is picked so that the hash would have put it in the blocker's lane."""
    api = world.api
    blocker = api.create("virtual-network", ["default-domain", "p1", "slow"],
                         parent=world.project, announce=False)
    lane = zlib.crc32(blocker.encode()) % 2  # the lane the hash gave it, of 2
    other = next(vn for vn in (
        api.create("virtual-network", ["default-domain", "p1", f"quick-{i}"],
                   parent=world.project, announce=False) for i in range(64))
        if zlib.crc32(vn.encode()) % 2 == lane)
    started, release = _hold_the_lane(monkeypatch, blocker)
    rs = world.run_sync(concurrency=2, prefetch=50)
    thread = start_thread(rs)
    new_uuid = world.new_table(cd.UUID_TABLE)
    try:
        api.update(blocker, display_name="held")
        wait_until(started.is_set, 60, "one lane busy")
        api.update(other, display_name="quick")
        wait_until(lambda: applied(rs) == 1, 60, "the other object's change applied while "
                   "the first one holds its lane")
        assert json.loads(new_uuid.read_partition(other)["prop:display_name"][0]) == "quick"
        assert not release.is_set() and rs._in_flight == 1  # the blocker: still in its lane
        release.set()
        wait_until(lambda: applied(rs) == 2 and rs._in_flight == 0, 60, "both applied")
    finally:
        release.set()
        stop_thread(rs, thread)
    assert world.queue_depth() == 0


def test_a_stalled_write_does_not_hold_another_objects_change(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write to new that hangs (a Cassandra node pausing a few hundred ms on a loaded box)
    held every lane of the apply process: one write of a kind in flight at a time, the other
    lanes' writes queued behind it (most of run-sync's p99 lag). Now another object's
    change is written and republished meanwhile; the held object's change still lands
    after, and new equals old."""
    api = world.api
    blocker = api.create("virtual-network", ["default-domain", "p1", "stalled"],
                         parent=world.project, announce=False)
    other = api.create("virtual-network", ["default-domain", "p1", "quick"],
                       parent=world.project, announce=False)
    armed, started, release = threading.Event(), threading.Event(), threading.Event()
    original = Replicator.write_changes

    def stalling(self: Replicator, changes):  # type: ignore[no-untyped-def]
        if armed.is_set() and any(key == blocker and cell.column == "prop:display_name"
                                  for _, key, cell in changes.inserts):
            started.set()
            release.wait(120)
        return original(self, changes)

    monkeypatch.setattr(Replicator, "write_changes", stalling)
    listener = NewListener(world.new_rabbit)
    republished: list[str] = []
    rs = world.run_sync(concurrency=2, prefetch=50)
    thread = start_thread(rs)
    new_uuid = world.new_table(cd.UUID_TABLE)

    def name_on_new(uid: str) -> str:
        cell = new_uuid.read_partition(uid).get("prop:display_name")
        return json.loads(cell[0]) if cell else ""

    def republished_has(uid: str) -> bool:
        republished.extend(m["uuid"] for m in listener.take_all())
        return uid in republished

    try:
        armed.set()
        api.update(blocker, display_name="held")
        wait_until(started.is_set, 60, "the blocker's write in flight")
        api.update(other, display_name="moved")
        wait_until(lambda: name_on_new(other) == "moved", 30,
                   "the other object's change written while the blocker's write hangs")
        wait_until(lambda: republished_has(other), 30,
                   "the other object's change republished while the blocker's write hangs")
        assert not release.is_set() and blocker not in republished
        assert name_on_new(blocker) == "stalled"  # its create's, not yet the change's
        release.set()
        wait_until(lambda: applied(rs) == 2 and rs._in_flight == 0, 60, "both applied")
        assert name_on_new(blocker) == "held" and republished_has(blocker)
    finally:
        release.set()
        stop_thread(rs, thread)
        listener.close()
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_coalesced_messages_count_the_links_each_obj_dict_names(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy took a ref target's partition (with the object's `backref:`) and the parent's
    (with its `children:`) before the object was deleted, and the object's own after: only
    the messages can say where those cells are. When an UPDATE whose obj_dict names them
    and a DELETE without obj_dict are applied together, the UPDATE's links count too."""
    api = world.api
    blocker = api.create("virtual-network", ["default-domain", "p1", "blocker-2"],
                         parent=world.project, announce=False)
    target = api.create("network-ipam", ["default-domain", "p1", "ipam-c"],
                        parent=world.project, announce=False)
    fq = ["default-domain", "p1", "vn-c"]
    vn = api.create("virtual-network", fq, parent=world.project, refs=[target],
                    announce=False)
    started, release = _hold_the_lane(monkeypatch, blocker)
    rs = world.run_sync(concurrency=1, prefetch=50)
    thread = start_thread(rs)  # its catch-up copy brings everything, vn included
    new_uuid = world.new_table(cd.UUID_TABLE)
    try:
        wait_until(rs.ready.is_set, 120, "run-sync consuming")
        backref, child = f"backref:virtual_network:{vn}", f"children:virtual_network:{vn}"
        assert backref in new_uuid.read_partition(target)
        new_uuid.delete_partition(vn)  # as if the copy had taken vn's partition after ...
        api.uuid_io.delete(target, [f"backref:virtual-network:{vn}"])
        api.delete(vn, announce=False)  # ... its delete on old
        api.update(blocker, display_name="holds the lane")
        wait_until(started.is_set, 60, "the lane busy")
        api._publish({"request-id": "r-u", "oper": "UPDATE", "type": "virtual-network",
                      "uuid": vn, "fq_name": fq,
                      "obj_dict": {"uuid": vn, "fq_name": fq, "parent_uuid": world.project,
                                   "network_ipam_refs": [
                                       {"uuid": target, "to": [*fq[:2], "ipam-c"]}]}})
        api._publish({"request-id": "r-d", "oper": "DELETE", "type": "virtual-network",
                      "uuid": vn, "fq_name": fq})
        wait_until(lambda: rs._in_flight == 3, 60, "all three delivered")
        release.set()
        wait_until(lambda: applied(rs) == 3 and rs._in_flight == 0, 60, "three applied")
        assert rs.metrics.coalesced._value.get() == 1  # the UPDATE and the DELETE together
        assert backref not in new_uuid.read_partition(target)
        assert child not in new_uuid.read_partition(world.project)
    finally:
        release.set()
        stop_thread(rs, thread)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def _cql(statement: object) -> str:
    prepared = getattr(statement, "prepared_statement", None)
    return str(getattr(prepared or statement, "query_string", statement))


def test_apply_reads_the_object_row_on_new_once(world: World) -> None:
    """Applying a change reads the object's row on new once (its links before, and the
    replicator's cells to delete); the row after is what the replicator wrote, not re-read.
    Counted at the driver: requests per session for one update of a VN with a parent."""
    from backends.runsync.apply import ObjectApplier
    from backends.runsync.messages import parse

    api = world.api
    vn = api.create("virtual-network", ["default-domain", "p1", "counted"],
                    parent=world.project, announce=False, is_shared=False)
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    change = parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn,
                    "fq_name": ["default-domain", "p1", "counted"]})
    applier.apply(change)  # prepares the statements
    api.update(vn, announce=False, display_name="counted")
    sent: dict[str, list[str]] = {"old": [], "new": []}
    for name, conn in (("old", old), ("new", new)):
        conn.session.add_request_init_listener(
            lambda rf, *_, name=name: sent[name].append(_cql(rf.query)))
    result = applier.apply(change)
    assert result.present_on_old
    new_obj_reads = [q for q in sent["new"] if q.startswith("SELECT") and "obj_uuid_table"
                     in q and q.endswith("WHERE key = ?")]
    assert len(new_obj_reads) == 1, sent["new"]
    new_table = world.new_table(cd.UUID_TABLE)
    assert json.loads(new_table.read_partition(vn)["prop:display_name"][0]) == "counted"
