"""SVG snapshots of the dialogs that refuse: nothing eligible, a refused letter, a mistyped
word. Update as in test_snapshots.py (`--snapshot-update`, then look at the SVGs)."""

from __future__ import annotations

import pytest

from tests.tui.test_snapshots import prepare

TO_CMP_06 = ("j",) * 5  # the first old compute below cmp-01..04 (upgraded, failed)


@pytest.mark.parametrize("size", [(80, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dialog,keys", [
    ("rollback-none-eligible", (*TO_CMP_06, "r")),
    ("batch-size-refused", (*TO_CMP_06, "u", "shift+tab", "shift+tab", "end", "x")),
    ("abort-mistyped", ("X", "a", "b", "r", "t")),
])
def test_refusing_dialog(snap_compare, make_app, dialog: str, keys: tuple[str, ...],
                         size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=prepare(keys))
