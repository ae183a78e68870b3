"""Group commit of run-sync's requests (backends/runsync/combine.py).

The first tests drive GroupCommit with plain functions: which items travel together, who
gets which result, what a failure does. The last one applies many changes at once through
one ObjectApplier against the real Cassandra clusters: the lanes' reads and writes are
combined, and new ends up exactly the translation of old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.group_commit import GroupCommit
from backends.runsync.apply import ObjectApplier
from backends.runsync.messages import parse
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World

world = test_runsync.world  # the fixture, reused


def _gated(results: Callable[[list[int]], list[int]]) -> tuple[
        GroupCommit[int, int], list[list[int]], threading.Event]:
    """A GroupCommit whose first group blocks until the gate opens (so others queue)."""
    groups: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        groups.append(list(items))
        if len(groups) == 1:
            assert gate.wait(10)
        return results(items)

    return GroupCommit(run, fits=lambda items: len(items) <= 8), groups, gate


def _in_threads(n: int, fn: Callable[[int], object]) -> tuple[dict[int, object],
                                                               list[threading.Thread]]:
    out: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            out[i] = fn(i)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return out, threads


def _queued(commit: GroupCommit[int, int], n: int) -> None:
    deadline = time.monotonic() + 10
    while len(commit._queue) < n:
        assert time.monotonic() < deadline, f"{len(commit._queue)} of {n} queued"
        time.sleep(0.005)


def test_a_lone_request_runs_at_once_and_alone() -> None:
    groups: list[list[int]] = []
    commit = GroupCommit(lambda items: groups.append(items) or [i * 2 for i in items],
                         fits=lambda items: True)
    assert commit.call(21) == 42
    assert commit.call(5) == 10
    assert groups == [[21], [5]]
    assert (commit.requests, commit.items) == (2, 2)


def test_requests_of_a_moment_go_together_and_each_gets_its_own_answer() -> None:
    commit, groups, gate = _gated(lambda items: [i * 10 for i in items])
    first, lead = _in_threads(1, lambda i: commit.call(100))
    _queued(commit, 0)
    while not groups:
        time.sleep(0.005)
    out, threads = _in_threads(20, lambda i: commit.call(i))
    _queued(commit, 20)  # every one waits while the first group is in flight
    gate.set()
    for t in lead + threads:
        t.join(10)
    assert first == {0: 1000}
    assert out == {i: i * 10 for i in range(20)}
    assert groups[0] == [100]
    # the 20 waiting went in groups of at most 8 (the `fits` bound), each once
    assert [len(g) for g in groups[1:]] == [8, 8, 4]
    assert sorted(i for g in groups[1:] for i in g) == list(range(20))
    assert (commit.requests, commit.items) == (4, 21)


def test_a_failed_group_fails_each_member_and_the_next_group_runs() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            assert gate.wait(10)
        if len(calls) == 2:
            raise TimeoutError("injected")
        return list(items)

    commit = GroupCommit(run, fits=lambda items: len(items) <= 3)
    _, lead = _in_threads(1, lambda i: commit.call(-1))
    while not calls:
        time.sleep(0.005)
    out, threads = _in_threads(5, commit.call)
    _queued(commit, 5)
    gate.set()
    for t in lead + threads:
        t.join(10)
    failed = {i for i, v in out.items() if isinstance(v, TimeoutError)}
    assert failed == set(calls[1])  # exactly the second group's members
    assert all(out[i] == i for i in out if i not in failed)
    assert commit.call(7) == 7  # and the commit still works


def test_a_request_nobody_waits_for_is_still_sent_with_the_next_group() -> None:
    """A lane may start a read it then does not need (the object turned out wide): the
    request must not hold up the others."""
    groups: list[list[int]] = []
    commit = GroupCommit(lambda items: groups.append(items) or list(items),
                         fits=lambda items: True)
    commit.submit(1)  # never waited
    assert commit.call(2) == 2
    assert groups == [[1, 2]]


@pytest.mark.timeout(300)
def test_a_stalled_group_lets_the_next_go_and_a_quick_one_does_not() -> None:
    """A group out longer than `stall_s` no longer holds the requests behind it (a
    Cassandra request hanging on a loaded box held every lane of the process); a group
    that answers in time keeps them waiting, so they still go together; at most `leaders`
    groups are out at once."""
    gate = threading.Event()
    groups: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        groups.append(list(items))
        if items[0] == 0:
            assert gate.wait(10)  # the stalled group
        return [i * 2 for i in items]

    commit = GroupCommit(run, fits=lambda items: len(items) <= 8, leaders=2, stall_s=0.3)
    first, first_threads = _in_threads(1, commit.call)
    while not groups:
        time.sleep(0.001)
    started = time.monotonic()
    out, threads = _in_threads(3, lambda i: commit.call(i + 1))
    for t in threads:
        t.join(5)
    took = time.monotonic() - started
    assert out == {0: 2, 1: 4, 2: 6}  # answered while group 0 still hangs
    assert not first and 0.2 <= took < 3.0, took
    assert sorted(map(sorted, groups[1:])) == [[1, 2, 3]]  # they waited, then went together
    # two groups out (the stalled one and one more): a third waits for one of them
    slow = threading.Event()
    commit2 = GroupCommit(lambda items: [slow.wait(10) and i for i in items],
                          fits=lambda items: len(items) <= 1, leaders=2, stall_s=0.05)
    out2, threads2 = _in_threads(3, commit2.call)
    time.sleep(0.5)
    assert commit2._leaders == 2 and not out2
    slow.set()
    for t in threads2:
        t.join(5)
    assert out2 == {0: 0, 1: 1, 2: 2}
    gate.set()
    for t in first_threads:
        t.join(5)
    assert first == {0: 0}


def test_concurrent_changes_share_requests_and_new_equals_old(world: World) -> None:
    api = world.api
    objects = [(api.create("virtual-network", ["default-domain", "p1", f"gc{i}"],
                           parent=world.project, announce=False),
                ["default-domain", "p1", f"gc{i}"]) for i in range(24)]
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    # the base (domain and project) first, one at a time
    domain = next(iter(api.fq_io.read_partition("domain"))).rsplit(":", 1)[1]
    applier.apply(parse({"oper": "CREATE", "type": "domain", "uuid": domain,
                         "fq_name": ["default-domain"]}))
    applier.apply(parse({"oper": "CREATE", "type": "project", "uuid": world.project,
                         "fq_name": ["default-domain", "p1"]}))
    before = applier.io.stats()
    sent: list[str] = []
    slow_first = threading.Event()

    def listener(rf: object, *_: object) -> None:
        query = str(getattr(getattr(rf, "query", None), "prepared_statement", None) and
                    rf.query.prepared_statement.query_string)  # type: ignore[attr-defined]
        sent.append(query)
        if not slow_first.is_set():  # the first request is slow: the others queue up
            slow_first.set()
            time.sleep(0.3)

    new.session.add_request_init_listener(listener)
    start = threading.Barrier(len(objects))

    def apply_one(i: int) -> object:
        uuid, fq = objects[i]
        start.wait(10)
        return applier.apply(parse({"oper": "CREATE", "type": "virtual-network",
                                    "uuid": uuid, "fq_name": fq}))

    try:
        out, threads = _in_threads(len(objects), apply_one)
        for t in threads:
            t.join(120)
    finally:
        new.session.remove_request_init_listener(listener)
    failures = [v for v in out.values() if isinstance(v, Exception)]
    assert not failures, failures
    stats = applier.io.stats()
    sent_total = sum(s for s, _ in stats.values()) - sum(s for s, _ in before.values())
    asked_total = sum(a for _, a in stats.values()) - sum(a for _, a in before.values())
    assert sent_total < asked_total / 2, stats  # combined, not one request per lane
    assert any("PER PARTITION LIMIT" in q for q in sent), "no combined partition read"
    new_uuid = world.new_table(cd.UUID_TABLE)
    for uuid, _ in objects:
        assert new_uuid.read_partition(uuid), uuid
        assert f"children:virtual_network:{uuid}" in new_uuid.read_partition(world.project)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_many_lanes_many_rounds_each_get_their_own_answer() -> None:
    """No lost wake-up and no answer crossed: 16 lanes, 300 rounds each, every round a
    request to one of two kinds (as a lane's reads then its write)."""
    kinds = [GroupCommit(lambda items: [i * 3 for i in items],
                         fits=lambda items: len(items) <= 8) for _ in range(2)]
    wrong: list[tuple[int, int]] = []

    def lane(n: int) -> None:
        for r in range(300):
            item = n * 1000 + r
            got = kinds[r % 2].call(item)
            if got != item * 3:
                wrong.append((item, got))

    threads = [threading.Thread(target=lane, args=(n,), daemon=True) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a lane never got its answer"
    assert wrong == []
    assert sum(k.items for k in kinds) == 16 * 300
