"""The key bar at the bottom of every console screen: Textual's Footer, recomposed less.

Textual's Footer removes and mounts all its keys again whenever the bindings might have
changed (any focus change, any refresh of the bindings), which costs as much as a whole
filter of thousands of computes. This one recomposes only when the keys it shows change, and
keeps its keys while a filter line (an Input with class `filter`) is typed into: the bar
would otherwise flip to a lone "/ Filter" for the few keys of a filter, and back.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer

Shown = tuple[tuple[str, str, str, bool, str], ...]


def shown_keys(screen: Screen[object]) -> Shown:
    """What the Footer composes from: the bindings it shows, and whether each is enabled."""
    return tuple((binding.key, binding.description, binding.action, enabled, tooltip)
                 for _node, binding, enabled, tooltip in screen.active_bindings.values()
                 if binding.show or binding.action == "command_palette")


class ConsoleFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._composed: Shown | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        focused = screen.focused
        if focused is not None and focused.has_class("filter"):
            return  # typing a filter: keep the keys of the view being filtered
        shown = shown_keys(screen)
        if shown != self._composed:
            self._composed = shown
            self.call_after_refresh(self.recompose)
