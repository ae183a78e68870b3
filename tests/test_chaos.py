"""The short form of `make chaos` (docs/chaos.md): a whole upgrade of a demo world (4 computes,
10 changes/s through old's api-server) with faults drawn from the seed, checked by the
independent checker (bench/chaos/checker.py: every object the load touched read back with
vnc_api, node records, `issu sync verify`, ZooKeeper by content hash, every compute over SSH,
the journal's history).

The faults land after pre-sync (`--after-run-sync`: their moments count from run-sync's start
and run-sync is held until the last one). Seed 605 draws new Cassandra restarted at 9.3 s, then
an apply process SIGKILLed and RabbitMQ restarted at once at 19.4 s: run-sync's write target,
its process and its queue's broker. A fast test checks the seed still draws these (the schedule
is a function of the seed and the fault list), so a change there shows here instead of
silently testing something else. One trial, not two: two took 5.7 to 9.7 minutes on the loaded
2-core box, too much of `make test`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from bench.chaos.__main__ import fault_kinds, parser, run_trials
from bench.chaos.faults import FAULTS
from bench.chaos.trial import draw_schedule
from demo.services import Endpoints
from demo.services.launcher import Launcher

SEED = 605
SCHEDULE = [[9.3, ["restart-cassandra-new"]], [19.4, ["kill-apply", "restart-rabbitmq"]]]
MINUTES = 0.5
RUN_SYNC_FAULTS = {"kill-run-sync", "kill-apply", "stall-run-sync"}
BEFORE_RUN_SYNC = {"plan", "preflight", "pair", "pre-sync"}


def _why(report: str, result: dict[str, Any]) -> str:
    return report + "\n" + json.dumps(result, indent=1, default=str)[:6000]


def _schedule(seed: int) -> list[list[Any]]:
    kinds = tuple(f.kind for f in FAULTS)
    return [[round(at, 1), drawn]
            for at, drawn in draw_schedule(random.Random(seed), MINUTES, kinds)]


def test_the_seed_draws_the_faults_the_short_form_promises() -> None:
    assert _schedule(SEED) == SCHEDULE


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_chaos_trial_ends_with_new_an_exact_copy(
        launcher: Launcher, services: Endpoints, tmp_path: Path) -> None:
    net = int(services.cassandra_old.host.split(".")[1])
    computes = len(services.ssh.names)
    assert _schedule(SEED) == SCHEDULE
    argv = ["--trials", "1", "--seed", str(SEED), "--minutes", str(MINUTES), "--after-run-sync",
            "--computes", str(computes), "--rate", "10", "--install-seconds", "0.5",
            "--net", str(net), "--report", str(tmp_path / "chaos")]
    try:
        results = run_trials(launcher, services, parser().parse_args(argv),
                             fault_kinds(parser(), ""),
                             "make chaos ARGS='" + " ".join(argv) + "'")
    finally:
        launcher.ensure_up()  # a restart fault must leave the services as the next tests expect
    report = (tmp_path / "chaos.md").read_text()
    (result,) = results
    assert result["schedule"] == SCHEDULE, report
    why = _why(report, result)
    assert result.get("ok"), why
    checks = result["checks"]
    differences = (checks["objects"]["differences"] + checks["verify"]["differences"]
                   + checks["zookeeper"]["differences"])
    assert differences == 0, why
    assert checks["computes"]["computes"] == computes, why
    assert checks["computes"]["unknown"] == 0, why
    assert result["load"]["changes"] > 0 and checks["objects"]["objects"] > 0, why
    injected = [f for f in result["faults"] if f["outcome"] == "injected"]
    assert RUN_SYNC_FAULTS & {f["kind"] for f in injected}, why
    assert [f for f in injected if f["kind"].startswith("restart-")], why
    assert [f for f in injected if f["together_with"]], why  # the pair came at once
    assert not [f for f in result["faults"] if f["phase"] in BEFORE_RUN_SYNC], why
    # finalize removed old's node records from new and new has its own: the checker saw both
    assert checks["node_records"]["removed_from_new"] and checks["node_records"]["new_own"]
