"""A good document with one part (or the whole) replaced: the shape checks of every reader
that takes JSON from outside (snapshot files, rehearsal reports, HTTP answers)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.test_fuzz_messages import json_values


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON-like value, the root `()` first."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def misshapen(draw: st.DrawFn, good: Any, odd: Sequence[Any]) -> Any:
    """`good` with a part replaced by any JSON or one of the `odd` values (or the whole of it
    replaced by any JSON)."""
    data = json.loads(json.dumps(good))
    path = draw(st.sampled_from(paths(data)))
    if not path:
        return draw(json_values)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = draw(st.one_of(json_values, st.sampled_from(list(odd))))
    return data
