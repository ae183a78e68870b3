"""Acknowledgements of one consuming channel, sent together.

A message is acknowledged only once everything it implies is on new (service.py); that does
not change here. What changes is how: the broker's `basic.ack` with `multiple` acknowledges
every unacknowledged delivery of the channel up to a tag, so the finished deliveries that
have no unfinished one before them go as one ack. A finished delivery behind one still in a
lane (deliveries finish out of order across lanes) waits for it, at most `hold_s` and while
fewer than `max_held` wait; then it is acknowledged alone: unacknowledged deliveries count
against the prefetch window, and a slow change (retrying while Cassandra is down) must not
hold the others' acks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# (delivery tag, multiple) -> sends the ack on the channel
AckSender = Callable[[int, bool], None]


class AckWindow:
    def __init__(self, send: AckSender, hold_s: float = 0.02, max_held: int = 8, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send, self.hold_s, self.max_held = send, hold_s, max_held
        self._clock = clock
        self._order: OrderedDict[int, bool] = OrderedDict()  # in hand: tag -> finished
        self._held: OrderedDict[int, float] = OrderedDict()  # finished: tag -> when
        self.acks_sent = 0

    def delivered(self, tag: int) -> None:
        self._order[tag] = False

    def finished(self, tag: int) -> None:
        """The delivery may be acknowledged (applied, or quarantined: copied aside)."""
        if tag in self._order:
            self._order[tag] = True
            self._held[tag] = self._clock()

    def settled(self, tag: int) -> None:
        """The delivery was rejected or requeued on its own: no longer unacknowledged on
        the broker, so it no longer stands in the way of the ones after it."""
        self._order.pop(tag, None)
        self._held.pop(tag, None)

    def flush(self, *, everything: bool = False) -> None:
        """Acknowledge the finished deliveries with no unfinished one before them in one
        ack, then each finished one held longer than `hold_s` or beyond `max_held`
        (`everything`: all of them)."""
        last = None
        while self._order:
            tag, done = next(iter(self._order.items()))
            if not done:
                break
            self._order.popitem(last=False)
            del self._held[tag]
            last = tag
        if last is not None:
            self._send(last, True)
            self.acks_sent += 1
        oldest = self._clock() - self.hold_s
        while self._held:
            tag, when = next(iter(self._held.items()))
            if not everything and when > oldest and len(self._held) <= self.max_held:
                break
            self._held.popitem(last=False)
            del self._order[tag]
            self._send(tag, False)
            self.acks_sent += 1
