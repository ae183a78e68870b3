"""The short form of `make chaos`: two whole upgrades of a demo world under load, each with
faults at moments drawn from a fixed seed, each checked by the independent checker
(bench/chaos/checker.py: objects read back with vnc_api, `issu sync verify`, ZooKeeper by
content hash, every compute over SSH, the journal's history). The long form and what each
fault is: docs/chaos.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.chaos.__main__ import fault_kinds, parser, run_trials
from demo.services import Endpoints
from demo.services.launcher import Launcher

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SEED = 11  # the schedule it draws is printed in the failure message (seed, fault timeline)


def test_two_chaos_trials_end_with_new_an_exact_copy(
        launcher: Launcher, services: Endpoints, tmp_path: Path) -> None:
    net = int(services.cassandra_old.host.split(".")[1])
    computes = len(services.ssh.names)
    args = parser().parse_args([
        "--trials", "2", "--seed", str(SEED), "--minutes", "1", "--computes", str(computes),
        "--rate", "10", "--install-seconds", "0.5", "--net", str(net),
        "--report", str(tmp_path / "chaos")])
    command = f"make chaos ARGS='--trials 2 --seed {SEED} --minutes 1 --rate 10'"
    results = run_trials(launcher, services, args, fault_kinds(parser(), ""), command)
    launcher.ensure_up()  # a restart fault must leave the services as the next tests expect
    report = (tmp_path / "chaos.md").read_text()
    failed = [r for r in results if not r.get("ok")]
    assert not failed, report + "\n" + json.dumps(failed, indent=1, default=str)[:6000]
    injected = [f for r in results for f in r["faults"] if f["outcome"] == "injected"]
    assert injected, report  # the seed's schedule hit something
    for r in results:
        assert r["load"]["changes"] > 0 and r["checks"]["objects"]["objects"] > 0, r["load"]
        assert r["checks"]["computes"]["computes"] == computes
