"""AckWindow: which deliveries one channel acknowledges, and how (no broker needed: the
acks it sends are the outcome)."""

from __future__ import annotations

from backends.runsync.acks import AckWindow


class Clock:
    """The window's time, moved by the test: no assertion depends on how long a step of a
    loaded box takes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def window(clock: Clock | None = None, **kwargs: float
           ) -> tuple[AckWindow, list[tuple[int, bool]]]:
    sent: list[tuple[int, bool]] = []
    return AckWindow(lambda tag, multiple: sent.append((tag, multiple)),
                     clock=clock or Clock(), **kwargs), sent


def test_finished_in_order_go_as_one_multiple_ack() -> None:
    w, sent = window()
    for tag in (1, 2, 3, 4):
        w.delivered(tag)
    for tag in (2, 1, 3):
        w.finished(tag)
    w.flush()
    assert sent == [(3, True)]  # 4 still in hand: not covered


def test_an_unfinished_delivery_is_never_covered_by_a_multiple_ack() -> None:
    w, sent = window(hold_s=60, max_held=100)
    for tag in (1, 2, 3):
        w.delivered(tag)
    w.finished(2)
    w.finished(3)
    w.flush()
    assert sent == []  # 1 (e.g. abandoned while stopping) must stay unacknowledged
    w.flush(everything=True)
    assert sorted(sent) == [(2, False), (3, False)]


def test_held_behind_a_slow_one_are_acked_alone_after_hold_s() -> None:
    clock = Clock()
    w, sent = window(clock, hold_s=0.05, max_held=100)
    for tag in (1, 2):
        w.delivered(tag)
    w.finished(2)
    clock.now += 0.049
    w.flush()
    assert sent == []
    clock.now += 0.002
    w.flush()
    assert sent == [(2, False)]
    w.finished(1)
    w.flush()
    assert sent == [(2, False), (1, True)]


def test_no_more_than_max_held_wait() -> None:
    w, sent = window(hold_s=60, max_held=2)
    for tag in range(1, 6):
        w.delivered(tag)
    for tag in (2, 3, 4, 5):
        w.finished(tag)
    w.flush()
    assert sent == [(2, False), (3, False)]


def test_a_requeued_delivery_no_longer_stands_in_the_way() -> None:
    w, sent = window(hold_s=60, max_held=100)
    for tag in (1, 2, 3):
        w.delivered(tag)
    w.settled(1)  # requeued on its own
    w.finished(2)
    w.finished(3)
    w.flush()
    assert sent == [(3, True)]
