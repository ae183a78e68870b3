"""States keep their colours in a 16-colour terminal: only the 16 ANSI colours are used."""

from __future__ import annotations

from rich.color import ColorType
from rich.style import Style

from screens.format import LEVEL_STYLES, STATE_STYLES
from screens.widgets.panes import STEP_MARKS


def test_every_state_colour_is_one_of_the_16() -> None:
    styles = [*STATE_STYLES.values(), *LEVEL_STYLES.values(),
              *(style for _, style in STEP_MARKS.values())]
    for text in styles:
        color = Style.parse(text).color
        assert color is None or (color.type is ColorType.STANDARD and color.number < 16), text
    # and the states stay told apart by colour
    coloured = [s for s in STATE_STYLES.values() if s]
    assert len({Style.parse(s).color for s in coloured}) >= 5
