"""The compute grid's index: natural order, filtered views patched from changes only."""

from __future__ import annotations

import random
from dataclasses import replace

from issu_tui.journal import ComputeRow
from screens.widgets.compute_index import (
    COLUMN_KEYS,
    LOG_KEEP,
    ComputeStore,
    ComputeView,
    matches,
    natural_key,
    parse_filter,
)

STATES = ("old", "queued", "upgrading", "upgraded", "rolling-back", "failed", "unknown")


def row(name: str, state: str = "old", **fields: object) -> ComputeRow:
    values: dict[str, object] = dict(address=f"127.0.{len(name)}.1", state=state,
                                     version="4.1.0", cluster="old", agent_state="Functional",
                                     batch=None, last_action="", gap_ms=None, updated_at=0.0)
    values.update(fields)
    return ComputeRow(name=name, **values)  # type: ignore[arg-type]


def test_names_sort_naturally() -> None:
    names = ["compute-10", "compute-2", "compute-1", "Compute-3", "web-1", "compute-02"]
    assert sorted(names, key=natural_key) == \
        ["compute-1", "compute-02", "compute-2", "Compute-3", "compute-10", "web-1"]
    store = ComputeStore()
    store.apply(row(n) for n in names)
    store.apply([row("compute-9")])  # one more, inserted in place
    assert store.order == ["compute-1", "compute-02", "compute-2", "Compute-3", "compute-9",
                           "compute-10", "web-1"]


def test_store_keeps_changes_only_and_widths_grow() -> None:
    store = ComputeStore()
    assert store.apply([row("c1"), row("c2")]) == ("c1", "c2")
    assert store.apply([row("c1"), row("c2")]) == ()  # the same rows again: no change
    assert store.version == 1
    last = COLUMN_KEYS.index("last")
    narrow = store.widths[last]
    store.apply([row("c1", "failed", last_action="restart failed on the second attempt")])
    assert store.widths[last] == len("restart failed on the second attempt") > narrow
    store.apply([row("c1", "failed", last_action="ok")])
    assert store.widths[last] == len("restart failed on the second attempt")  # never cut
    assert store.changed_since(1) == {"c1"}
    assert store.changed_since(store.version) == set()


def test_filtered_views_patched_from_changes_equal_a_rebuild() -> None:
    rng = random.Random(20)
    store = ComputeStore()
    store.apply(row(f"cmp-{i}", rng.choice(STATES)) for i in range(1, 400))
    live = ComputeView(store)
    live.set_filter("state:fail")
    plain = ComputeView(store)
    plain.rebuild()
    late = ComputeView(store)
    late.set_filter("cmp-1")
    added = 400
    for n in range(LOG_KEEP + 40):
        changes = [row(f"cmp-{rng.randrange(1, added)}", rng.choice(STATES))
                   for _ in range(rng.randrange(1, 30))]
        if n % 7 == 0:
            added += 1
            changes.append(row(f"cmp-{added - 1}", "failed"))
        store.apply(changes)
        live.sync()
        plain.sync()
        for view in (live, plain):
            expected = [name for name in store.order if matches(store.rows[name], view.terms)]
            assert view.shown == expected
            for name in rng.sample(store.order, 20):
                assert view.index(name) == (expected.index(name) if name in expected else None)
    assert "cmp-401" in plain and len(plain) == len(store)
    # a view that fell further behind than the log reaches rebuilds, and is right too
    late.sync()
    assert late.shown == [n for n in store.order if matches(store.rows[n], parse_filter("cmp-1"))]


def test_sync_says_whether_rows_came_or_went() -> None:
    store = ComputeStore()
    store.apply([row("c1"), row("c2"), row("c3", "failed")])
    view = ComputeView(store)
    view.set_filter("state:failed")
    store.apply([row("c1", "upgrading")])  # changes, stays out of the filter
    assert view.sync() == (False, {"c1"})
    store.apply([row("c2", "failed")])
    assert view.sync() == (True, {"c2"})
    assert view.shown == ["c2", "c3"]
    store.apply([replace(store.rows["c3"], state="upgraded")])
    assert view.sync() == (True, {"c3"}) and view.shown == ["c2"]


def test_sort_by_state_version_cluster_gap_keeps_up_with_changes() -> None:
    store = ComputeStore()
    store.apply([row("c-10", "upgraded", version="5.0.0", cluster="new", gap_ms=300.0),
                 row("c-2", "failed"), row("c-1", "old"),
                 row("c-3", "upgraded", version="5.0.0", cluster="new", gap_ms=900.0)])
    view = ComputeView(store)
    view.rebuild()
    assert view.shown == ["c-1", "c-2", "c-3", "c-10"]
    view.set_sort("state")  # what needs a look first; names in natural order within a state
    assert view.shown == ["c-2", "c-1", "c-3", "c-10"]
    view.set_sort("gap")  # the longest gap first, none last
    assert view.shown == ["c-3", "c-10", "c-1", "c-2"]
    view.set_sort("version")
    assert view.shown == ["c-1", "c-2", "c-3", "c-10"]
    store.apply([row("c-1", "upgraded", version="5.0.0", cluster="new")])
    view.sync()
    assert view.shown == ["c-2", "c-1", "c-3", "c-10"]
    assert [view.index(n) for n in view.shown] == [0, 1, 2, 3]
    view.set_sort("cluster")
    assert view.shown == ["c-1", "c-3", "c-10", "c-2"]


def test_addr_filter_is_exact() -> None:
    store = ComputeStore()
    store.apply([row("a", address="127.24.1.1"), row("b", address="127.24.1.10")])
    view = ComputeView(store)
    view.set_filter("addr:127.24.1.1")
    assert view.shown == ["a"]
    view.set_filter("127.24.1.1")  # a plain word matches part of the address
    assert view.shown == ["a", "b"]


def test_columns_are_as_wide_as_their_widest_value_from_the_start() -> None:
    store = ComputeStore()
    store.apply([row("c-1")])
    widths = dict(zip(COLUMN_KEYS, store.widths, strict=True))
    assert widths["state"] == len("rolling-back") and widths["agent"] == len("Non-Functional?")
    assert widths["gap"] == len("9999ms")
    before = list(store.widths)
    store.apply([row("c-1", "rolling-back", agent_state="Non-Functional", gap_ms=9999.0)])
    assert store.widths == before  # nothing widens while the upgrade runs


def test_agent_state_comes_from_the_analytics_when_they_say() -> None:
    store = ComputeStore()
    store.apply([row("c-1", agent_state=""), row("c-2", agent_state="Functional")])
    assert store.apply_agents({"c-1": "Functional", "c-2": "Non-Functional"}) == ("c-1", "c-2")
    store.apply([row("c-1", "queued", agent_state="")])  # a journal change keeps it
    assert store.rows["c-1"].agent_state == "Functional"
    assert store.rows["c-2"].agent_state == "Non-Functional"
