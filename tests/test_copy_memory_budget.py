"""pre-sync's memory does not grow with a partition's width (real Cassandra, both sides).

The original tool read whole tables into memory; a 1,000,000-column obj_fq_name_table
partition must copy within a fixed budget. The budget is set by the page size (rows held
from old) and the spill threshold (new's (key, column) map beyond it goes to SQLite), not
by the partition. Measured here with tracemalloc (every Python allocation, the driver's
decoded rows included) for two widths four times apart, into an empty new side and onto a
full one (the spilling path); bench/bench_presync.py measures RSS at 1,000,000 columns."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from tests import contrail_data as cd
from tests.test_cassandra_sync import Pair, presync

SETTINGS = {"page_size": 500, "spill_threshold": 5_000, "batch_cells": 100, "slices": 2}


@pytest.fixture(scope="module")
def cassandra(launcher):  # type: ignore[no-untyped-def]
    return launcher.up(only=["cassandra-old", "cassandra-new"])


@pytest.fixture
def pairs(cassandra) -> Iterator[list[Pair]]:  # type: ignore[no-untyped-def]
    made: list[Pair] = []
    yield made
    for pair in made:
        pair.close()


def _peak_copy_mib(pair: Pair) -> float:
    tracemalloc.start()
    try:
        report = presync(pair, **SETTINGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.as_dict()
    return peak / 2**20


def _wide_pair(cassandra, pairs: list[Pair], width: int) -> Pair:  # type: ignore[no-untyped-def]
    pair = Pair(cassandra, "separate")
    pairs.append(pair)
    pair.schema()
    ds = cd.Dataset()
    cd.wide_fq_partition(ds, "virtual-machine-interface", width)
    pair.write(ds)
    return pair


def test_wide_partition_copy_memory_is_flat_in_the_width(cassandra, pairs) -> None:  # type: ignore[no-untyped-def]
    narrow, wide = 15_000, 60_000
    peaks: dict[tuple[int, str], float] = {}
    for width in (narrow, wide):
        pair = _wide_pair(cassandra, pairs, width)
        peaks[(width, "empty")] = _peak_copy_mib(pair)
        peaks[(width, "full")] = _peak_copy_mib(pair)  # new holds every cell: the map spills
        assert pair.io("new", cd.FQ_TABLE).count("virtual_machine_interface") == width
    print({f"{w} {side}": round(p, 1) for (w, side), p in peaks.items()})
    # Four times the columns: the peak stays within a small slack of the narrow one's
    # (before the driver's finished requests were released it doubled)...
    for side in ("empty", "full"):
        assert peaks[(wide, side)] < peaks[(narrow, side)] * 1.25 + 0.5, peaks
    # ...and far below what holding the partition would take (60,000 decoded columns of
    # ~60 bytes as Python objects: well over 10 MiB).
    assert max(peaks.values()) < 6.0, peaks
