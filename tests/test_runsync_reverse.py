"""The reverse replication new -> old after finalize (what `issu revert` drains), against the
real RabbitMQ and Cassandra: a stand-in for new's 5.0 api-server writes rows spelled as 5.0
spells them into new's Cassandra and announces them on new's vhost; run-sync --reverse
(reversed registry, its own queue) carries them to old through the inverse translators.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from backends.cassandra.connection import CassandraSide, Connection, connect, connect_pair
from backends.cassandra.registry import load_reverse_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.schema import keyspace_exists
from backends.cassandra.tables import Quarantine, Rejected, SyncSettings
from backends.cassandra.verify import Verifier
from backends.progress import MemoryCheckpoints, MemoryCounters, MemoryEvents
from backends.rabbit import RabbitSide, connection
from backends.runsync.options import RunSyncOptions
from backends.runsync.processes import WorkerSpec
from backends.runsync.service import ReplayService
from issu_tui.cli import cli
from issu_tui.journal import Journal
from issu_tui.orchestrator.finalize import COMMIT_STEP
from tests import contrail_data as cd
from tests.runsync_config import runsync_toml
from tests.test_runsync import CONFIG_DB, OldApi, applied, start_thread, stop_thread, wait_until


@dataclass
class Back:
    """new (the source, 5.0) and old (the target, 4.1) as the reverse replication sees them."""

    new_side: CassandraSide
    old_side: CassandraSide
    new_rabbit: RabbitSide
    old_rabbit: RabbitSide
    new_prefix: str
    old_prefix: str
    queue: str
    api: NewApi
    old: Connection
    project: str = ""

    def run_sync(self) -> ReplayService:
        opts = RunSyncOptions(queue_name=self.queue, old_version="5.0.0",
                              new_version="4.1.0", reverse=True, catch_up=False,
                              reconcile_slices=8, backoff_max_s=2.0, counters_interval_s=0.5,
                              metrics_listen=None, reconcile_interval_s=3600.0,
                              reconcile_after_catch_up=False, concurrency=4)
        settings = SyncSettings(slices_per_table=8, concurrency=4)
        both = functools.partial(connect_pair, self.new_side, self.old_side)
        spec = WorkerSpec(connect=both, new_rabbit=self.old_rabbit, settings=settings,
                          options=opts, registry=load_reverse_registry)
        return ReplayService(old_rabbit=self.new_rabbit, new_rabbit=self.old_rabbit,
                             connect_cassandra=both, registry=load_reverse_registry(),
                             settings=settings, options=opts, checkpoints=MemoryCheckpoints(),
                             events=MemoryEvents(), counters=MemoryCounters(),
                             worker_spec=spec)

    def old_table(self, table: cd.Table) -> cd.TableIO:
        return cd.TableIO(self.old.session, self.old_prefix, table)

    def verify_back(self) -> list[str]:
        """What `issu revert`'s verify-back finds: new translated back against old."""
        new, old = connect_pair(self.new_side, self.old_side)
        try:
            settings = SyncSettings(slices_per_table=8, concurrency=4,
                                    keyspaces=("config_db_uuid",))
            report = Verifier(new, old, load_reverse_registry(), settings,
                              recheck_delay_s=0.5).run()
            return [f"{t.keyspace}.{t.table} {t.status} {t.samples[:3]}"
                    for t in report.tables if t.status != "ok"]
        finally:
            new.close()
            old.close()


class NewApi(OldApi):
    """OldApi on new's keyspaces and vhost: types are given as 5.0 spells them."""


@pytest.fixture()
def back(services) -> Iterator[Back]:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    new_prefix, old_prefix = f"rvn{tag}", f"rvo{tag}"
    ch, nh = services.cassandra_old, services.cassandra_new
    new_side = CassandraSide("new", (nh.host,), nh.port, prefix=new_prefix, version="5.0.0")
    old_side = CassandraSide("old", (ch.host,), ch.port, prefix=old_prefix, version="4.1.0")
    r = services.rabbit
    new_rabbit = RabbitSide("new", (r.host,), r.port, r.user, r.password, r.vhost_new)
    old_rabbit = RabbitSide("old", (r.host,), r.port, r.user, r.password, r.vhost_old)
    new, old = connect(new_side), connect(old_side)
    cd.create_schema(new.session, new_prefix, tables=CONFIG_DB)
    cd.create_schema(old.session, old_prefix, tables=CONFIG_DB)
    api = NewApi(new.session, new_prefix, new_rabbit)
    b = Back(new_side, old_side, new_rabbit, old_rabbit, new_prefix, old_prefix,
             f"issu-test-{tag}.reverse", api, old)
    try:
        yield b
    finally:
        api.close()
        conn = connection(new_rabbit)
        try:
            channel = conn.channel()
            for name in (b.queue, b.queue + ".quarantine"):
                channel.queue_delete(name)
        finally:
            conn.release()
        cd.drop_schema(new.session, new_prefix)
        cd.drop_schema(old.session, old_prefix)
        new.close()
        old.close()


def test_a_share_made_on_new_reaches_old_under_the_type_old_spells(back: Back) -> None:
    """A network shared with a tenant on new after finalize: old's obj_shared_table holds the
    share under `virtual-network` (what the 4.x api-server reads), not under new's
    `virtual_network`, and verify-back finds no difference."""
    api = back.api
    rs = back.run_sync()
    thread = start_thread(rs)
    try:
        domain = api.create("domain", ["default-domain"])
        project = api.create("project", ["default-domain", "p1"], parent=domain)
        vn = api.create("virtual_network", ["default-domain", "p1", "vn1"], parent=project)
        api.share(vn, project)
        wait_until(lambda: applied(rs) >= api.published, 120, "all messages applied")
    finally:
        stop_thread(rs, thread)
    shared = back.old_table(cd.SHARED_TABLE)
    assert f"tenant:{project}:{vn}" in shared.read_partition("virtual-network")
    assert shared.read_partition("virtual_network") == {}
    row = back.old_table(cd.UUID_TABLE).read_partition(vn)
    assert row["type"][0] == '"virtual-network"'
    assert back.verify_back() == []


RT_TABLE: cd.Table = ("to_bgp_keyspace", "route_target_table")


def test_post_sync_back_carries_route_targets_new_made_after_finalize(
        services, back: Back, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Revert's post-sync-back (`issu sync post --reverse`): the route targets new's
    schema-transformer allocated after finalize (to_bgp_keyspace, which the reverse
    replication does not carry) reach old, one new released is gone from old; refused
    before finalize's commit."""
    monkeypatch.setenv("ISSU_TEST_RABBIT_PASSWORD", services.rabbit.password)
    path = tmp_path / "issu.toml"
    path.write_text(runsync_toml(services, state_dir=tmp_path / "state", queue=back.queue,
                                 old_prefix=back.old_prefix, new_prefix=back.new_prefix,
                                 password_env="ISSU_TEST_RABBIT_PASSWORD",
                                 keyspaces=["to_bgp_keyspace"]))
    new = connect(back.new_side)
    try:
        tables = {"to_bgp_keyspace": ["route_target_table"]}
        cd.create_schema(new.session, back.new_prefix, tables=tables)
        cd.create_schema(back.old.session, back.old_prefix, tables=tables)
        new_rt = cd.TableIO(new.session, back.new_prefix, RT_TABLE)
        old_rt = back.old_table(RT_TABLE)
        kept, made, released = ("default-domain:p1:vn1:vn1", "default-domain:p1:after:after",
                                "default-domain:p1:gone:gone")
        ts = cd.now_us()
        for table in (new_rt, old_rt):  # what finalize's post-sync left equal
            table.write(kept, {"rtgt_num": "8000001"}, ts)
        old_rt.write(released, {"rtgt_num": "8000002"}, ts)  # released on new since
        new_rt.write(made, {"rtgt_num": "8000003"}, ts + 1)  # allocated on new since

        argv = ["sync", "post", "--reverse", "-c", str(path), "-k", "to_bgp_keyspace"]
        Journal.open(tmp_path / "state").close()  # an upgrade under way, not committed
        refused = CliRunner().invoke(cli, argv)
        assert refused.exit_code == 2, refused.output
        assert "no finalize commit" in refused.output
        assert old_rt.read_partition(made) == {}

        journal = Journal.open(tmp_path / "state")
        journal.mark_step(COMMIT_STEP)
        journal.close()
        done = CliRunner().invoke(cli, argv)
        assert done.exit_code == 0, done.output
        assert old_rt.read_partition(made)["rtgt_num"][0] == "8000003"
        assert old_rt.read_partition(kept)["rtgt_num"][0] == "8000001"
        assert old_rt.read_partition(released) == {}
        assert new_rt.read_partition(made)["rtgt_num"][0] == "8000003"  # new untouched
    finally:
        cd.drop_schema(new.session, back.new_prefix, keyspaces=["to_bgp_keyspace"])
        cd.drop_schema(back.old.session, back.old_prefix, keyspaces=["to_bgp_keyspace"])
        new.close()


def test_the_reverse_keeps_on_old_what_forward_quarantined_and_quarantines_on_new(
        back: Back) -> None:
    """A cell old holds that the forward direction could not translate (quarantined on new's
    ring, so new never had it) survives on old the reverse replication's apply of a change
    and a replace of the object's partition; a cell of new the inverse translator rejects is
    quarantined on new's ring (`reverse_rows`), and old's ring gets no issu keyspace."""
    api = back.api
    rs = back.run_sync()
    thread = start_thread(rs)
    try:
        domain = api.create("domain", ["default-domain"])
        vn = api.create("virtual_network", ["default-domain", "vn1"], parent=domain)
        wait_until(lambda: applied(rs) >= api.published, 120, "the create applied")
    finally:
        stop_thread(rs, thread)
    old_uuid = back.old_table(cd.UUID_TABLE)
    assert old_uuid.read_partition(vn)["type"][0] == '"virtual-network"'
    # what forward left (before the reverse started): old's cell it could not translate,
    # quarantined on new's ring
    old_uuid.write(vn, {"prop:legacy": "not json"}, cd.now_us() - 10**6)
    new = connect(back.new_side)
    try:
        Quarantine(new, "forward").put("config_db_uuid", "obj_uuid_table", vn, Rejected(
            "prop:legacy", "prop:legacy", "not json", 1, "value is not JSON"))
        # a cell new holds that the inverse rejects
        cd.TableIO(new.session, back.new_prefix, cd.UUID_TABLE).write(
            vn, {"prop:junk": "{broken"})
    finally:
        new.close()
    published = api.published
    rs = back.run_sync()
    thread = start_thread(rs)
    try:
        api.update(vn, display_name="renamed-on-new")
        wait_until(lambda: applied(rs) >= api.published - published, 120, "the update applied")
    finally:
        stop_thread(rs, thread)
    row = back.old_table(cd.UUID_TABLE).read_partition(vn)
    assert row["prop:display_name"][0] == '"renamed-on-new"'
    assert row["prop:legacy"][0] == "not json"  # the apply's gathered deletes skip it
    assert "prop:junk" not in row

    new, old = connect_pair(back.new_side, back.old_side)
    try:
        repl = Replicator(new, old, load_reverse_registry())
        repl.replace_partition("config_db_uuid", "obj_uuid_table", vn)  # delete_leftovers
        assert "prop:legacy" in back.old_table(cd.UUID_TABLE).read_partition(vn)
        reverse_rows = new.session.execute(
            f'SELECT key, column_name FROM "{back.new_prefix}_issu_quarantine".reverse_rows')
        assert (vn, "prop:junk") in {(str(k), str(c)) for k, c in reverse_rows}
        assert not keyspace_exists(old.session, f"{back.old_prefix}_issu_quarantine")
    finally:
        new.close()
        old.close()


def test_revert_reconciles_new_into_old_what_no_message_carried(
        services, back: Back, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Revert's reconcile-back, before old reopens: a network new's writers made before the
    reverse queue was bound (no message ever reaches the reverse replication) is on old
    after it, spelled as 4.x spells it, and verify-back then finds no difference."""
    from issu_tui.config import load_config
    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.revert import reconcile_back

    monkeypatch.setenv("ISSU_TEST_RABBIT_PASSWORD", services.rabbit.password)
    path = tmp_path / "issu.toml"
    path.write_text(runsync_toml(services, state_dir=tmp_path / "state", queue=back.queue,
                                 old_prefix=back.old_prefix, new_prefix=back.new_prefix,
                                 password_env="ISSU_TEST_RABBIT_PASSWORD",
                                 keyspaces=["config_db_uuid"]))
    api = back.api
    domain = api.create("domain", ["default-domain"], announce=False)
    vn = api.create("virtual_network", ["default-domain", "unannounced"], parent=domain,
                    announce=False)
    assert back.old_table(cd.UUID_TABLE).read_partition(vn) == {}
    journal = Journal.open(tmp_path / "state")
    try:
        ctx = Context(config=load_config(path), config_path=path, journal=journal)
        said = reconcile_back(ctx)
    finally:
        journal.close()
    assert "partition(s) replaced on old" in said and not said.startswith("0 "), said
    row = back.old_table(cd.UUID_TABLE).read_partition(vn)
    assert row["type"][0] == '"virtual-network"'
    assert f"children:virtual-network:{vn}" in back.old_table(cd.UUID_TABLE).read_partition(
        domain)
    assert back.verify_back() == []


def test_new_writers_first_write_reaches_old_through_the_reverse_replication(
        services, back: Back, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """finalize's normal path (new shown fenced; the commit after new's writers and the
    northbound switch): a network new's schema-transformer writes and announces right after
    start-new-writers, before the commit, reaches old through the reverse replication
    finalize starts at the commit, by its message (the replication's reconciliation is an
    hour away; revert's reconcile-back does not run here). Before, the reverse queue was
    declared only at start-reverse-sync, after the commit: that message went nowhere."""
    from issu_tui.config import load_config
    from issu_tui.orchestrator import finalize
    from issu_tui.orchestrator.context import Context

    monkeypatch.setenv("ISSU_TEST_RABBIT_PASSWORD", services.rabbit.password)
    path = tmp_path / "issu.toml"
    path.write_text(runsync_toml(services, state_dir=tmp_path / "state",
                                 queue=back.queue.removesuffix(".reverse"),
                                 old_prefix=back.old_prefix, new_prefix=back.new_prefix,
                                 password_env="ISSU_TEST_RABBIT_PASSWORD",
                                 keyspaces=["config_db_uuid"], reconcile_interval_s=3600))
    api = back.api
    made: list[str] = []

    def new_writers_start(ctx: Context) -> str:  # new's schema-transformer's first write
        domain = api.create("domain", ["default-domain"])
        made.append(api.create("virtual_network", ["default-domain", "by-new-writers"],
                               parent=domain))
        return "new's writers started (the test's stand-in)"

    monkeypatch.setattr(finalize, "start_new_writers", new_writers_start)
    monkeypatch.setattr(finalize, "new_fence", lambda run: (True, "new fenced (the test)"))
    names = [s.name for s in finalize.STEPS]
    # finalize up to the reverse replication's start; what comes before check-new-fenced
    # (old stopped, run-sync stopped, the copies verified) is marked done
    monkeypatch.setattr(finalize, "STEPS",
                        finalize.STEPS[:names.index("start-reverse-sync") + 1])
    journal = Journal.open(tmp_path / "state")
    ctx = Context(config=load_config(path), config_path=path, journal=journal)
    try:
        for each in finalize.STEPS[:names.index("check-new-fenced")]:
            if each.name != "bind-reverse-queue":
                ctx.mark_step(each.marker)
        finalize.finalize(ctx, no_northbound=True)
        assert ctx.step_done(finalize.COMMIT_STEP) and ctx.step_done(finalize.REVERSE_STARTED)
        (vn,) = made
        old_uuid = back.old_table(cd.UUID_TABLE)
        wait_until(lambda: old_uuid.read_partition(vn) != {}, 120,
                   "new's writers' network on old")
    finally:
        finalize.ReverseSyncSupervisor(ctx).stop()
        journal.close()
    assert old_uuid.read_partition(vn)["type"][0] == '"virtual-network"'
    assert back.verify_back() == []


def test_bind_reverse_queue_refuses_a_queue_in_use_and_empties_a_leftover(
        services, back: Back, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """finalize's bind-reverse-queue on a reverse queue an earlier upgrade left: while a
    reverse replication still consumes it, refused (its messages are not this upgrade's to
    drop), nothing committed; once nothing consumes it, what it holds is dropped and the
    queue stays bound for this finalize."""
    import kombu

    from backends.rabbit import issu_queue, queue_state
    from issu_tui.config import load_config
    from issu_tui.orchestrator import finalize
    from issu_tui.orchestrator.context import Context, OrchestratorError

    monkeypatch.setenv("ISSU_TEST_RABBIT_PASSWORD", services.rabbit.password)
    path = tmp_path / "issu.toml"
    path.write_text(runsync_toml(services, state_dir=tmp_path / "state",
                                 queue=back.queue.removesuffix(".reverse"),
                                 old_prefix=back.old_prefix, new_prefix=back.new_prefix,
                                 password_env="ISSU_TEST_RABBIT_PASSWORD",
                                 keyspaces=["config_db_uuid"]))
    back.api.create("domain", ["default-domain"])  # no queue yet: announced to nobody
    conn = connection(back.new_rabbit)
    journal = Journal.open(tmp_path / "state")
    try:
        run = finalize.FinalizeRun(Context(config=load_config(path), config_path=path,
                                           journal=journal))
        channel = conn.channel()
        leftover = issu_queue(back.new_rabbit, back.queue)(channel)
        leftover.declare()
        back.api.create("domain", ["earlier-upgrade"])  # what the leftover holds
        consumer = kombu.Consumer(channel, [leftover], callbacks=[lambda body, message: None],
                                  no_ack=False)  # holds it unacknowledged until closed
        consumer.consume()
        with pytest.raises(OrchestratorError, match="has 1 consumer"):
            finalize.bind_reverse_queue(run)
        consumer.cancel()
        channel.close()
        said = finalize.bind_reverse_queue(run)
        assert "there already: 1 earlier message(s) dropped" in said, said
        back.api.create("domain", ["this-upgrade"])
        assert queue_state(back.new_rabbit, back.queue) == (1, 0)
    finally:
        journal.close()
        conn.release()
