#!/usr/bin/env bash
# `make bench`: every benchmark, each side by side with its peer in one run, on net 50
# (services started by the benchmarks themselves, stopped at the end). Results go to docs/.
# BENCH_NET moves them; the demo worlds go on BENCH_DEMO_NET (default BENCH_NET + 1) and the
# containers on BENCH_CONTAINERS_NET (default BENCH_NET + 2), on a box whose nets are shared;
# BENCH_PY: the interpreter (default .venv/bin/python), e.g. a worktree's for a checkout of a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BENCH_PY:-.venv/bin/python}
NET=${BENCH_NET:-50}
DEMO_NET=${BENCH_DEMO_NET:-$((NET + 1))}
CONTAINERS_NET=${BENCH_CONTAINERS_NET:-$((NET + 2))}
trap '$PY -m demo.services down --net $NET --profile test >/dev/null 2>&1 || true' EXIT
$PY -m bench.bench_presync --net "$NET" --cells 1000000 --wide 1000000 --pairs 2
$PY -m bench.bench_runsync --net "$NET" --drain 20000 --fractions 0.2,0.4,0.6,0.8 --seconds 20 --original --ceiling-lag \
    --write --plot docs/plots/runsync-lag.png
# where run-sync's CPU goes (py-spy on its processes, GIL samples), in a run of its own: the
# sampling costs run-sync a share of the cores, so it is kept out of the figures above
$PY -m bench.bench_runsync --net "$NET" --drain 20000 --fractions 0.6 --seconds 20 \
    --profile "${TMPDIR:-/tmp}/issu-runsync-profile.txt" --profile-steps --profile-gil \
    --write --block runsync-profile
$PY -m bench.bench_zksync --net "$NET" --nodes 100000 --write
$PY bench/bench_tui.py --write
$PY bench/bench_orchestrator.py --net "$NET" --computes 1000 --parallel 50 --work-s 2 --write
$PY -m bench.bench_startup --net "$DEMO_NET" --runs 2 --write
# the demo's containers beside its loopback hosts (needs the engine: skipped, saying why, without)
if $PY -m demo.containers check >/dev/null 2>&1; then
    $PY -m bench.bench_containers --net "$CONTAINERS_NET" --computes 12 --write
    $PY -m bench.bench_containers --net "$CONTAINERS_NET" --computes 12 --world --write
else
    echo "bench_containers skipped: $($PY -m demo.containers check 2>&1)"
fi
