"""Finalize failing part-way and abort undoing it, over the real sshd of the test network.

The controller and northbound hosts are simulated hosts of the real sshd (systemctl is the
stand-in of tests/fakebin/fakectl.py, see tests/test_controller.py); the northbound client
files are real files edited over SSH. An unreachable host is one whose sshd port answers
nothing (port 1).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from issu_tui.config import ApiServerConfig, IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator import abort as aborting
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.northbound import load_clients, switched_clients
from tests.test_controller import Host, _inventory_config, host, ssh  # noqa: F401

OLD_UNITS = ("contrail-api", "contrail-schema", "contrail-svc-monitor",
             "contrail-device-manager")
OLD_PLUGIN = "[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\nkeep = 1\n"


def _config(base: IssuConfig, tmp_path: Path, *, reachable: bool) -> IssuConfig:
    """Old: one config host (old-ctl-1) whose profile fences with a rule file; new: as
    _inventory_config; two northbound hosts, neutron-1 and neutron-2 (its sshd port 1 when
    not `reachable`)."""
    rules = tmp_path / "rules-old"
    site = base.controller_profiles["site"]
    ctl = base.new.controllers[0]
    old_ctl = ctl.model_copy(update={"name": "old-ctl-1", "profile": "site-old",
                                     "roles": ["config"]})
    nb = [ctl.model_copy(update={"name": name, "roles": ["northbound"]})
          for name in ("neutron-1", "neutron-2")]
    if not reachable:
        nb[1] = nb[1].model_copy(update={"ssh_port": 1})
    fence = {"fence": f"sh -c 'echo REJECT >> \"$0\"' {shlex.quote(str(rules))}",
             "unfence": f"sh -c ': > \"$0\"' {shlex.quote(str(rules))}"}
    return base.model_copy(update={
        "old": base.old.model_copy(update={
            "controllers": [old_ctl],
            "api_server": ApiServerConfig(url="http://10.9.0.1:8082")}),
        "new": base.new.model_copy(update={
            "controllers": [*base.new.controllers, *nb],
            "api_server": ApiServerConfig(url="http://10.9.0.2:8082")}),
        "controller_profiles": {"site": site, "site-old": {**site, **fence}}})


@pytest.fixture
def world(ssh: object, host: Host, tmp_path: Path) -> Iterator[dict[str, object]]:  # noqa: F811
    host.seed({**{f"systemd:{u}": {"running": True, "enabled": True} for u in OLD_UNITS},
               **{f"systemd:{u}": {"running": False, "enabled": False}
                  for u in ("contrail-kube-manager",)},
               "systemd:neutron-server": {"running": True, "enabled": True}})
    files = {name: tmp_path / f"{name}.ini" for name in ("a", "b", "c")}
    for file in files.values():
        file.write_text(OLD_PLUGIN)
    listing = tmp_path / "northbound.toml"
    listing.write_text("".join(
        f'[[client]]\nkind = "neutron"\nhost = "{where}"\npath = "{files[name]}"\n'
        'service = "neutron-server"\n'
        for name, where in (("a", "neutron-1"), ("b", "neutron-2"), ("c", "neutron-1"))))
    (tmp_path / "rules-old").write_text("")
    yield {"files": files, "listing": listing, "rules": tmp_path / "rules-old"}


def _ctx(config: IssuConfig, tmp_path: Path) -> Context:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    return Context(config=config, config_path=tmp_path / "issu.toml",
                   journal=Journal.open(tmp_path / "journal"))


def test_abort_reopens_old_although_a_northbound_host_does_not_answer(
        ssh: object, host: Host, tmp_path: Path, world: dict[str, object]) -> None:  # noqa: F811
    """Audit D1/D10: finalize failed at switch-northbound on neutron-2 (its host down). The
    journal says which client was switched and which not. abort then could not point
    neutron-2's client back and raised before anything else: old's api-server and writers
    stayed stopped and fenced. Now abort points back what it can, starts old's services,
    unfences old, and fails at the end naming neutron-2; run again with the host back, it
    finishes, leaving neutron-2's file (never edited) as it is, not overwritten by a stale
    backup of an earlier upgrade."""
    files: dict[str, Path] = world["files"]  # type: ignore[assignment]
    base = _inventory_config(ssh, host, tmp_path)  # type: ignore[arg-type]
    down = _config(base, tmp_path, reachable=False)
    stale = OLD_PLUGIN.replace("keep = 1", "from = the previous upgrade")
    Path(f"{files['b']}.issu-backup").write_text(stale)
    ctx = _ctx(down, tmp_path)
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(world["listing"]))  # type: ignore[arg-type]
        for name in ("fence-old", "stop-old-services"):
            fin._run_once(run, fin.step(name))
        assert world["rules"].read_text() == "REJECT\n"  # type: ignore[attr-defined]
        assert not any(host.state()[f"systemd:{u}"]["running"] for u in OLD_UNITS)
        with pytest.raises(OrchestratorError, match="northbound neutron on neutron-2"):
            fin._run_once(run, fin.step("switch-northbound"))
        assert "api_server_ip=10.9.0.2" in files["a"].read_text()
        assert files["b"].read_text() == OLD_PLUGIN and files["c"].read_text() == OLD_PLUGIN
        # the journal says which clients were switched and which not
        [failed] = ctx.journal.events(kind="finalize", text=" failed: ")
        assert failed.fields["switched"] == [f"neutron neutron-1:{files['a']}"]
        assert failed.fields["failed"] == f"neutron neutron-2:{files['b']}"
        assert failed.fields["pending"] == [f"neutron neutron-1:{files['c']}"]

        with pytest.raises(OrchestratorError) as refused:
            aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        said = str(refused.value)
        assert "switch-northbound not undone: northbound: 1 client(s) NOT pointed back at " \
               f"old: neutron neutron-2:{files['b']} (northbound neutron on neutron-2" in said
        # everything else was undone: old's services running again, old open
        assert all(host.state()[f"systemd:{u}"]["running"] for u in OLD_UNITS)
        assert world["rules"].read_text() == ""  # type: ignore[attr-defined]
        assert "old's config services enabled and started again" in said
        assert files["a"].read_text() == OLD_PLUGIN
        assert [c.host for c in switched_clients(ctx)] == ["neutron-2"]
    finally:
        ctx.journal.close()

    # the host answers again: abort run again finishes the one client left, reading its
    # file first (it names old: never edited), so the stale backup is not restored over it
    ctx = _ctx(_config(base, tmp_path, reachable=True), tmp_path)
    try:
        restarts = host.calls().count(["systemctl", "restart", "neutron-server"])
        done = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert (f"northbound pointed back at old: neutron neutron-2:{files['b']}: names "
                "old, read back, neutron-server restarted, running") in done
        assert files["b"].read_text() == OLD_PLUGIN
        assert not Path(f"{files['b']}.issu-backup").exists()
        assert host.calls().count(["systemctl", "restart",
                                   "neutron-server"]) == restarts + 1  # neutron-2's only
        assert switched_clients(ctx) == []
    finally:
        ctx.journal.close()


def test_abort_skips_a_northbound_host_that_will_not_come_back_when_told(
        ssh: object, host: Host, tmp_path: Path, world: dict[str, object]) -> None:  # noqa: F811
    """Issue 14 leftover: neutron-2 died for good after finalize switched it. abort points
    back the others but fails naming it, run after run. `--skip-client neutron-2` (a host, or
    HOST:PATH) leaves it switched, journaled and named in abort's summary with what to do by
    hand, and abort finishes; a name that is no switched client is refused first."""
    files: dict[str, Path] = world["files"]  # type: ignore[assignment]
    base = _inventory_config(ssh, host, tmp_path)  # type: ignore[arg-type]
    ctx = _ctx(_config(base, tmp_path, reachable=True), tmp_path)
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(world["listing"]))  # type: ignore[arg-type]
        for name in ("fence-old", "stop-old-services", "switch-northbound"):
            fin._run_once(run, fin.step(name))
        assert all("api_server_ip=10.9.0.2" in f.read_text() for f in files.values())
    finally:
        ctx.journal.close()

    ctx = _ctx(_config(base, tmp_path, reachable=False), tmp_path)  # neutron-2 gone
    try:
        with pytest.raises(OrchestratorError, match="NOT pointed back at old: neutron "
                           f"neutron-2:{files['b']}"):
            aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        refused = aborting.refusal(ctx, skip=("neutron-9",))
        assert refused is not None and refused.startswith(
            "--skip-client neutron-9: no switched northbound client of that host or path "
            f"(switched: neutron neutron-2:{files['b']})")
        done = aborting.undo_finalize(aborting.AbortRun(  # type: ignore[arg-type]
            ctx, runner=None, skip_clients=(f"neutron-2:{files['b']}",)))
        line = (f"northbound: neutron neutron-2:{files['b']} NOT pointed back at old "
                f"(--skip-client): by hand, restore {files['b']}.issu-backup over "
                f"{files['b']} on neutron-2 (or set it to old's address) and restart or "
                "signal neutron-server (runbook 8)")
        assert done[0] == line
        [event] = ctx.journal.events(kind="abort", text="(--skip-client)")
        assert event.message == line and event.level == "warning"
        assert switched_clients(ctx) == []
        assert "api_server_ip=10.9.0.2" in files["b"].read_text()  # left for the operator
        assert files["a"].read_text() == OLD_PLUGIN and files["c"].read_text() == OLD_PLUGIN
        assert all(host.state()[f"systemd:{u}"]["running"] for u in OLD_UNITS)
        assert world["rules"].read_text() == ""  # type: ignore[attr-defined]
        # a later abort no longer waits for neutron-2
        again = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert "northbound: no client was switched" in again
    finally:
        ctx.journal.close()


def test_check_new_fenced_asks_the_profile_when_the_api_server_has_no_fence_call(
        ssh: object, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """Audit D2: a real Contrail api-server has no /issu/status; check-new-fenced then took
    finalize's point of no return, whatever the profile's fence did. Now the profile's
    `fence_status` step proves new's fence (over SSH on new's config host); without it, a
    fence this upgrade applied (prepare-new's markers) is relied upon, said as unproven;
    without either, or with a step that prints neither word, finalize is refused."""
    from issu_tui.orchestrator.controllers import prepare_new
    from tests.test_phases import _fence_answering

    host.seed({f"systemd:{u}": {"running": False, "enabled": False}
               for u in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager",
                         "contrail-kube-manager")})
    rules = tmp_path / "rules-new"
    rules.write_text("")
    quoted = shlex.quote(str(rules))
    fence = {"fence": f"sh -c 'echo REJECT >> \"$0\"' {quoted}",
             "unfence": f"sh -c ': > \"$0\"' {quoted}"}
    status = {"fence_status": f"sh -c 'grep -q REJECT \"$0\" && echo fenced || echo open' "
                              f"{quoted}"}
    server = _fence_answering(None)  # 404 on /issu/status, as a real api-server
    base = _inventory_config(ssh, host, tmp_path)  # type: ignore[arg-type]
    site = base.controller_profiles["site"]

    def ctx_with(steps: dict[str, str]) -> Context:
        config = base.model_copy(update={
            "new": base.new.model_copy(update={"api_server": ApiServerConfig(
                url=f"http://127.0.0.1:{server.server_address[1]}")}),
            "controller_profiles": {"site": {**site, **steps}}})
        return _ctx(config, tmp_path)

    def check(ctx: Context) -> str:
        return fin.check_new_fenced(fin.FinalizeRun(ctx, fence_tries=2, fence_retry_s=0.1))

    ctx = ctx_with({**fence, **status})
    try:
        prepare_new(ctx)  # stops new's writers and fences new with the profile step
        assert rules.read_text() == "REJECT\n"
        assert check(ctx) == ("new's api-server fenced on new-ctl-1, as the profile's "
                              "fence_status step says")
        assert not ctx.step_done(fin.COMMIT_STEP)
    finally:
        ctx.journal.close()

    # no fence_status: the fence prepare-new applied (its journal markers) is relied upon
    ctx = ctx_with(fence)
    try:
        said = check(ctx)
        assert said.startswith("the new api-server has no fence call; relied upon: the "
                               "profile's fence step fenced new-ctl-1 (profile site)")
        assert "not proven" in said and not ctx.step_done(fin.COMMIT_STEP)
        ctx.journal.clear_steps("fence.new.")  # as if this upgrade never fenced new
        with pytest.raises(OrchestratorError, match=r"no fence call .* and no profile step "
                           r"fenced new in this upgrade\. Nothing was committed"):
            check(ctx)
        assert not ctx.step_done(fin.COMMIT_STEP)
    finally:
        ctx.journal.close()

    # a fence_status step that prints neither word: asked again, then refused
    ctx = ctx_with({**fence, "fence_status": "echo maybe"})
    try:
        with pytest.raises(OrchestratorError, match=r"cannot be confirmed after 2 tries .*"
                           r"printed 'maybe', not 'fenced' or 'open'"):
            check(ctx)
        assert not ctx.step_done(fin.COMMIT_STEP)
    finally:
        ctx.journal.close()
        server.shutdown()


def test_stop_old_services_disables_them_and_says_which_hosts_were_done(
        ssh: Any, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """Audit D7: old's config services were stopped, not disabled: a reboot of an old config
    host brought back its api-server (unfenced) and writers. Audit D10: a failure part-way
    lost which hosts were done; a retry redid them all and abort started every host. Now
    each host is stopped and disabled and marked; the failure says which hosts were done and
    which not; a retry acts on the others only; abort enables and starts only the hosts
    stop-old-services reached."""
    from backends.ssh import SshTarget

    s = ssh.ssh
    second = Host(SshTarget(s.names[2], s.addresses[2], s.port, s.user, s.key_path),
                  host.state_dir.parent / s.names[2], host.tools)
    units = {f"systemd:{u}": {"running": True, "enabled": True} for u in OLD_UNITS}
    base = _inventory_config(ssh, host, tmp_path)
    site = base.controller_profiles["site"]
    ctl = base.new.controllers[0]
    old = [ctl.model_copy(update={"name": "old-ctl-1", "profile": "site-1", "roles": ["config"]}),
           ctl.model_copy(update={"name": "old-ctl-2", "profile": "site-2", "roles": ["config"],
                                  "address": second.target.address})]

    def ctx_with(one: dict[str, str], two: dict[str, str]) -> Context:
        return _ctx(base.model_copy(update={
            "old": base.old.model_copy(update={"controllers": old}),
            "controller_profiles": {"site": site, "site-1": {**site, **one},
                                    "site-2": {**site, **two}}}), tmp_path)

    def stops(h: Host) -> int:
        return sum(1 for c in h.calls() if c[:2] == ["systemctl", "stop"])

    def starts(h: Host) -> int:
        return sum(1 for c in h.calls() if c[:2] == ["systemctl", "start"])

    host.seed(units)
    second.seed(units)
    # old-ctl-2's disable fails: old-ctl-1 was done, old-ctl-2 begun
    ctx = ctx_with({}, {"disable": "false"})
    run = fin.FinalizeRun(ctx)
    try:
        with pytest.raises(OrchestratorError, match="old-ctl-2: disable schema-transformer"):
            fin._run_once(run, fin.step("stop-old-services"))
        [failed] = ctx.journal.events(kind="finalize", text="stop-old-services: old-ctl-2 "
                                      "failed")
        assert failed.fields["done"] == ["old-ctl-1"] and failed.fields["pending"] == []
        assert all(not st["running"] and not st["enabled"] for st in host.state().values())
    finally:
        ctx.journal.close()
    # the retry: old-ctl-1 left alone, old-ctl-2 stopped and disabled
    ctx = ctx_with({}, {})
    run = fin.FinalizeRun(ctx)
    try:
        before = stops(host)
        fin._run_once(run, fin.step("stop-old-services"))
        assert stops(host) == before
        for h in (host, second):
            assert all(not st["running"] and not st["enabled"] for st in h.state().values()), \
                h.state()
        undone = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert any(u.startswith("old's config services enabled and started again: old-ctl-1: "
                                "api-server, device-manager, svc-monitor, schema-transformer; "
                                "old-ctl-2: ") for u in undone), undone
        for h in (host, second):
            assert all(st["running"] and st["enabled"] for st in h.state().values())
        ctx.journal.clear_steps("finalize.")  # abort's end
    finally:
        ctx.journal.close()

    # old-ctl-1 fails to stop: old-ctl-2, acted on at the same time, is done all the same;
    # the failure says so, and abort starts both (one begun, one done)
    ctx = ctx_with({"stop": "false"}, {})
    run = fin.FinalizeRun(ctx)
    try:
        with pytest.raises(OrchestratorError, match="old-ctl-1: stop schema-transformer"):
            fin._run_once(run, fin.step("stop-old-services"))
        [failed] = ctx.journal.events(kind="finalize", text="stop-old-services: old-ctl-1 "
                                      "failed")
        assert failed.fields["done"] == ["old-ctl-2"] and failed.fields["pending"] == []
        assert not any(st["running"] for st in second.state().values())
        before = starts(second)
        undone = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert starts(second) > before and starts(host) > 0
        assert any(u.startswith("old's config services enabled and started again: old-ctl-1: ")
                   for u in undone), undone
    finally:
        ctx.journal.close()


def test_revert_points_the_collectors_back_with_this_upgrades_backup(
        ssh: Any, host: Host, tmp_path: Path, world: dict[str, object]) -> None:  # noqa: F811
    """Audit D5: the analytics step re-pointed the collectors' clients without recording
    them, so `issu revert` (undo-finalize after the commit) left every collector sending to
    new's analytics; its backup, never made afresh, was one an earlier upgrade left. Now
    the collectors are recorded and pointed back at old's analytics from this upgrade's
    backup, which then goes."""
    from issu_tui.config import AnalyticsConfig

    base = _config(_inventory_config(ssh, host, tmp_path), tmp_path, reachable=True)
    config = base.model_copy(update={
        "old": base.old.model_copy(update={"analytics": AnalyticsConfig(
            url="http://10.9.0.1:8081")}),
        "new": base.new.model_copy(update={"analytics": AnalyticsConfig(
            url="http://10.9.0.2:8081")})})
    agent = tmp_path / "contrail-vrouter-nodemgr.conf"
    original = "[DEFAULT]\ncollectors = 10.9.0.1:8086\nlog_level = SYS_NOTICE\n"
    agent.write_text(original)
    # left by an earlier upgrade (from 10.8.0.1): a revert must not bring that file back
    Path(f"{agent}.issu-backup").write_text(original.replace("10.9.0.1", "10.8.0.1"))
    listing = tmp_path / "collectors.toml"
    listing.write_text(f'[[client]]\nkind = "collector"\nhost = "neutron-1"\npath = "{agent}"\n'
                       'service = "neutron-server"\n')
    ctx = _ctx(config, tmp_path)
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(listing))
        fin._run_once(run, fin.step("switch-northbound"))  # no api client: nothing switched
        fin._run_once(run, fin.step("analytics"))
        assert "collectors=10.9.0.2:8086" in agent.read_text()
        assert Path(f"{agent}.issu-backup").read_text() == original
        # issu revert after the commit runs undo-finalize: the collector comes back too
        done = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert (f"northbound pointed back at old: collector neutron-1:{agent}: restored, "
                "read back, neutron-server restarted, running") in done, done
        assert agent.read_text() == original
        assert not Path(f"{agent}.issu-backup").exists()
        assert switched_clients(ctx) == []
    finally:
        ctx.journal.close()


def test_stop_old_services_acts_on_every_config_host_at_once(
        ssh: Any, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """Issue 14 leftover: the controller steps acted host after host (a 3-controller world
    spent 14-19 s per step). Now the hosts' parts run at once: each host's disable step
    (slowed down, logging when it runs) overlaps the others'; every host is still stopped
    and marked done, and abort starts them all again."""
    from backends.ssh import SshTarget

    s = ssh.ssh
    hosts = [host] + [Host(SshTarget(s.names[i], s.addresses[i], s.port, s.user, s.key_path),
                           host.state_dir.parent / s.names[i], host.tools) for i in (2, 0)]
    units = {f"systemd:{u}": {"running": True, "enabled": True} for u in OLD_UNITS}
    base = _inventory_config(ssh, host, tmp_path)
    site = base.controller_profiles["site"]
    ctl = base.new.controllers[0]
    logs = [tmp_path / f"disable-{i}.log" for i in range(3)]
    old = [ctl.model_copy(update={"name": f"old-ctl-{i}", "profile": f"site-{i}",
                                  "roles": ["config"], "address": h.target.address})
           for i, h in enumerate(hosts)]
    slow = {f"site-{i}": {**site, "disable": (
        "sh -c 'echo begin $(date +%s.%N) >> \"$0\"; sleep 0.4; "
        f"echo end $(date +%s.%N) >> \"$0\"' {shlex.quote(str(log))}")}
        for i, log in enumerate(logs)}
    for h in hosts:
        h.seed(units)
    ctx = _ctx(base.model_copy(update={
        "old": base.old.model_copy(update={"controllers": old}),
        "controller_profiles": {"site": site, **slow}}), tmp_path)
    try:
        fin._run_once(fin.FinalizeRun(ctx), fin.step("stop-old-services"))
        spans = []
        for log in logs:
            times = [float(line.split()[1]) for line in log.read_text().splitlines()]
            spans.append((min(times), max(times)))
        # all three hosts were in their disable step at the same moment
        assert max(b for b, _ in spans) < min(e for _, e in spans), spans
        for h in hosts:
            assert not any(st["running"] for st in h.state().values()), h.state()
        assert all(ctx.step_done(f"finalize.stop-old-services.host:old-ctl-{i}.done")
                   for i in range(3))
        undone = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert any(u.startswith("old's config services enabled and started again: old-ctl-0: ")
                   and "old-ctl-2: " in u for u in undone), undone
        for h in hosts:
            assert all(st["running"] for st in h.state().values()), h.state()
    finally:
        ctx.journal.close()


def test_the_profile_fence_acts_on_every_config_host_at_once(
        ssh: Any, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """The fence by profile (fence-old, open-new, abort's unfence) and check-new-fenced's
    fence_status ran host after host; now on every config host at once: three hosts' slowed
    fence steps overlap, every host is marked fenced, and unfence opens them all."""
    from backends.ssh import SshTarget
    from issu_tui.orchestrator.controllers import fence_by_profile, fence_marker

    s = ssh.ssh
    hosts = [host] + [Host(SshTarget(s.names[i], s.addresses[i], s.port, s.user, s.key_path),
                           host.state_dir.parent / s.names[i], host.tools) for i in (2, 0)]
    base = _inventory_config(ssh, host, tmp_path)
    site = base.controller_profiles["site"]
    ctl = base.new.controllers[0]
    logs = [tmp_path / f"fence-{i}.log" for i in range(3)]
    old = [ctl.model_copy(update={"name": f"old-ctl-{i}", "profile": f"site-{i}",
                                  "roles": ["config"], "address": h.target.address})
           for i, h in enumerate(hosts)]
    slow = {f"site-{i}": {**site, **{step: (
        f"sh -c 'echo begin $(date +%s.%N) >> \"$0\"; sleep 0.6; "
        f"echo end $(date +%s.%N) >> \"$0\"; echo {word}' {shlex.quote(str(log))}")
        for step, word in (("fence", "fenced"), ("unfence", "open"))}}
        for i, log in enumerate(logs)}
    ctx = _ctx(base.model_copy(update={
        "old": base.old.model_copy(update={"controllers": old}),
        "controller_profiles": {"site": site, **slow}}), tmp_path)
    try:
        said = fence_by_profile(ctx, "old", closed=True)
        assert said == ("old's api-server fenced by the profile's fence step on old-ctl-0 "
                        "(fenced), old-ctl-1 (fenced), old-ctl-2 (fenced)")
        spans = []
        for log in logs:
            times = [float(line.split()[1]) for line in log.read_text().splitlines()]
            spans.append((min(times), max(times)))
        assert max(b for b, _ in spans) < min(e for _, e in spans), spans
        assert all(ctx.step_done(fence_marker("old", h, "done")) for h in old)
        opened = fence_by_profile(ctx, "old", closed=False, only_fenced=True)
        assert opened is not None and opened.endswith("old-ctl-2 (open)")
        assert not any(ctx.step_done(fence_marker("old", h, "done")) for h in old)
    finally:
        ctx.journal.close()
