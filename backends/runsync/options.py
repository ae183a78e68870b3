"""run-sync's knobs, shared by the consuming service and its apply processes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunSyncOptions:
    queue_name: str = "vnc-config.issu-queue"
    concurrency: int = 32             # lanes: a message waits on ~6 Cassandra round trips
    prefetch: int = 64
    max_attempts: int = 3             # per message, for failures of the message itself
    reconcile_interval_s: float = 300.0
    reconcile_slices: int = 64
    # A pass as soon as the changes queued during a catch-up copy are applied: a copy taken
    # while old changed can leave cells no message places (a parent copied before a delete,
    # the object after it, and a message without obj_dict).
    reconcile_after_catch_up: bool = True
    catch_up: bool = True
    force_catch_up: bool = False
    old_version: str = ""
    new_version: str = ""
    # the reverse replication new -> old after finalize: old/new_version are the source's
    # (newer) and the target's; messages go through the inverse steps
    reverse: bool = False
    metrics_listen: str | None = "127.0.0.1:9109"
    counters_interval_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    processes: int = 1                # apply processes (1: the lanes run in this process)
