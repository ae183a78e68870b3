"""issu's backends: Cassandra, ZooKeeper, RabbitMQ, SSH, the api-servers and analytics."""


def import_kombu_whole() -> None:
    """Import kombu once, in the calling (main) thread, before any thread can.

    kombu replaces its own module object at the end of its import (its attributes are
    lazy); a thread that imports it while another thread is importing it gets the object
    being replaced, without `Connection`. The console's workers and the demo's startup
    threads import the RabbitMQ backends lazily, so every entry point calls this before it
    starts a thread (not at module level: loading the screens must not load kombu)."""
    import kombu  # noqa: F401
