"""Where the copy's batches end (backends/cassandra/batching.py): the policy alone, fed the
items of a stream of partitions; the batches it makes are checked against every bound."""

from __future__ import annotations

import random
from types import SimpleNamespace

from backends.cassandra.batching import BatchBounds, Batching, grouped
from backends.cassandra.tables import _everywhere

BOUNDS = BatchBounds(cells=20, nbytes=2000, group_cells=8, group_bytes=500, group_partitions=3)


def batches_of(items: list[tuple[str, int]], batching: Batching) -> list[list[tuple[str, int]]]:
    """The batches the policy makes of (key, size) items."""
    return list(grouped(items, batching, key=lambda i: i[0], size=lambda i: i[1]))


def check_bounds(batches: list[list[tuple[str, int]]], bounds: BatchBounds) -> None:
    for batch in batches:
        keys = {k for k, _ in batch}
        size = sum(s for _, s in batch)
        if len(keys) == 1:
            assert len(batch) <= bounds.cells and (size <= bounds.nbytes or len(batch) == 1)
        else:
            assert len(keys) <= bounds.group_partitions
            assert len(batch) <= bounds.group_cells and size <= bounds.group_bytes


def test_small_partitions_share_batches_within_the_group_bounds() -> None:
    items = [(f"p{p}", 50) for p in range(9) for _ in range(2)]  # 9 partitions of 2 x 50 B
    batches = batches_of(items, Batching(BOUNDS))
    assert [b for batch in batches for b in batch] == items  # nothing lost, order kept
    check_bounds(batches, BOUNDS)
    assert [len({k for k, _ in b}) for b in batches] == [3, 3, 3]  # group_partitions


def test_a_partition_outgrowing_a_group_moves_on_alone() -> None:
    # p0 small, then p1 grows past the group's 500 bytes: p0 goes alone, p1 continues in a
    # single-partition batch (up to 2000 bytes), then p2 starts afresh
    items = [("p0", 100)] + [("p1", 100)] * 12 + [("p2", 100)]
    batches = batches_of(items, Batching(BOUNDS))
    assert [[k for k, _ in b] for b in batches] == [["p0"], ["p1"] * 12, ["p2"]]
    check_bounds(batches, BOUNDS)


def test_wide_partition_is_split_into_single_partition_batches() -> None:
    items = [("wide", 10)] * 45 + [("next", 10)]
    batches = batches_of(items, Batching(BOUNDS))
    assert [len(b) for b in batches] == [20, 20, 5 + 1]  # the tail is small: next joins it
    check_bounds(batches, BOUNDS)


def test_partitions_join_only_batches_of_the_same_replicas() -> None:
    asked: list[str] = []

    def replicas(key: object) -> str:
        asked.append(str(key))
        return "a" if int(str(key)[1:]) % 2 else "b"

    items = [(f"p{p}", 40) for p in range(12)]
    batches = batches_of(items, Batching(BOUNDS, replicas))
    for batch in batches:
        assert len({replicas(k) for k, _ in batch}) == 1
    assert [b for batch in batches for b in batch] == items


def test_random_streams_keep_every_bound_and_every_item() -> None:
    rng = random.Random(3)
    for _ in range(200):
        items: list[tuple[str, int]] = []
        for p in range(rng.randrange(1, 30)):
            items += [(f"k{p}", rng.choice([1, 30, 120, 600, 2500]))] * rng.randrange(1, 40)
        batching = Batching(BOUNDS, lambda key: hash(key) % 3)
        batches = batches_of(items, batching)
        assert [b for batch in batches for b in batch] == items
        check_bounds(batches, BOUNDS)


def test_replica_grouping_is_skipped_only_where_every_node_holds_everything() -> None:
    def metadata(hosts: list[str], strategy: object) -> SimpleNamespace:
        nodes = [SimpleNamespace(datacenter=dc) for dc in hosts]
        return SimpleNamespace(all_hosts=lambda: nodes,
                               keyspaces={"ks": SimpleNamespace(replication_strategy=strategy)})

    simple = SimpleNamespace
    assert _everywhere(metadata(["dc1"], None), "ks")
    assert _everywhere(metadata(["dc1"] * 3, simple(replication_factor=3)), "ks")
    assert not _everywhere(metadata(["dc1"] * 5, simple(replication_factor=3)), "ks")
    both = simple(dc_replication_factors={"dc1": 3, "dc2": 3})
    assert _everywhere(metadata(["dc1"] * 3 + ["dc2"] * 3, both), "ks")
    assert not _everywhere(metadata(["dc1"] * 3 + ["dc2"] * 4, both), "ks")
    assert not _everywhere(metadata(["dc1"] * 3, simple()), "ks")  # unknown strategy
