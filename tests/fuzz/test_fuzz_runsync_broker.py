"""run-sync against the real RabbitMQ and Cassandra, fed fuzzed messages among real ones:
every message is acknowledged, each one that is not a change is in `<queue>.quarantine` with
its reason, the object changes around them are applied, and the consumer keeps going.
(The parsing itself is fuzzed with many more examples in test_fuzz_messages.py.)"""

from __future__ import annotations

import kombu
from hypothesis import Phase, example, given
from hypothesis import strategies as st

from backends.rabbit import connection, object_update_exchange
from backends.runsync.messages import BadMessage, parse
from tests import contrail_data as cd
from tests.fuzz.contract import budget
from tests.fuzz.test_fuzz_messages import payloads
from tests.test_runsync import World, applied, start_thread, stop_thread, wait_until, world

__all__ = ["world"]  # the fixture, from the run-sync tests


def _reason(payload: bytes) -> str | None:
    try:
        parse(payload)
    except BadMessage as exc:
        return str(exc)[:1000]
    return None


def test_fuzzed_messages_are_quarantined_and_the_lane_goes_on(world: World) -> None:
    rs = world.run_sync(max_attempts=2, backoff_initial_s=0.05)
    thread = start_thread(rs)
    conn = connection(world.old_rabbit)
    producer = kombu.Producer(conn.channel(), exchange=object_update_exchange(world.old_rabbit))
    quarantine = kombu.Queue(world.queue + ".quarantine")(conn.channel())
    new_uuid = world.new_table(cd.UUID_TABLE)
    rounds = iter(range(1_000_000))

    # no shrinking: replaying inputs against a live service that moved on is not a replay
    @budget(4, phases=[Phase.explicit, Phase.generate])
    @example(batch=[b""])  # py-amqp gives an empty body as '': its quarantine broke the loop
    @given(batch=st.lists(payloads.filter(lambda p: len(p) < 2_000_000), min_size=1,
                          max_size=6))
    def fuzz(batch: list[bytes]) -> None:
        before = applied(rs) + rs.metrics.quarantined._value.get()
        for payload in batch:
            producer.publish(payload, content_type="application/octet-stream",
                             content_encoding="binary")
        good = world.api.create("virtual-network",
                                ["default-domain", "p1", f"vn-{next(rounds)}"],
                                parent=world.project)
        wait_until(lambda: new_uuid.read_partition(good), 120, "the good change applied")
        wait_until(lambda: applied(rs) + rs.metrics.quarantined._value.get()
                   >= before + len(batch) + 1, 120, "every message settled")
        assert thread.is_alive()
        held = {}
        while (msg := quarantine.get(no_ack=True)) is not None:
            body = msg.body if isinstance(msg.body, bytes) else msg.body.encode()  # '' when empty
            held[body] = msg.headers["x-issu-reason"]
        for payload in batch:
            reason = _reason(payload)
            if reason is not None:
                assert held.get(payload) == reason, (payload[:200], held.get(payload))

    try:
        fuzz()
    finally:
        stop_thread(rs, thread)
        conn.release()
    assert world.queue_depth() == 0  # every message acknowledged
