"""The applying half of run-sync: the messages of one object, re-read from old, translated,
replaced on new with one write, then republished translated on the new exchange, in order.
The re-read and replace of one object is apply.py's ObjectApplier; this module adds what a
message needs around it (parsing, coalescing, retries, quarantine reasons, republishing).

It knows no broker queue and no acknowledgement: the consuming service (service.py) and
each apply process (processes.py) feed it through their lanes (lanes.py) and act on the
Outcome it returns for every message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from backends.group_commit import GroupCommit
from backends.rabbit import Publisher, RabbitSide
from backends.runsync.apply import ApplyResult, ObjectApplier
from backends.runsync.messages import BadMessage, Change, parse, translate
from backends.runsync.metrics import RunSyncMetrics
from backends.runsync.options import RunSyncOptions
from backends.runsync.retry import TRANSIENT, Backoff

log = logging.getLogger(__name__)

MAX_PUBLISH_GROUP = 200  # messages published back to back before one wait for confirms


@dataclass
class Outcome:
    kind: str  # "applied" | "quarantine" | "abandoned" | "requeue" (an apply process died)
    reason: str = ""
    attempts: int = 0
    result: ApplyResult | None = None


class ChangeApplier:
    """Applies and republishes; safe to call from several lanes at once. The lanes publish
    through one connection: what they publish at the same moment goes back to back and is
    confirmed by the broker together (a group commit, as their Cassandra requests), each lane
    still waiting for its own messages' confirm before it reports them applied."""

    def __init__(self, objects: ObjectApplier, new_rabbit: RabbitSide,
                 options: RunSyncOptions, metrics: RunSyncMetrics,
                 stop: threading.Event) -> None:
        self.objects, self.new_rabbit = objects, new_rabbit
        self.options, self.metrics, self.stop = options, metrics, stop
        self._publisher = Publisher(new_rabbit)
        self._publishes: GroupCommit[Mapping[str, Any], None] = GroupCommit(
            self._publish_group, fits=lambda bodies: len(bodies) <= MAX_PUBLISH_GROUP)

    def process(self, bodies: list[bytes | str], *, thorough: bool = False) -> list[Outcome]:
        """Apply the messages of one object (queued in this order) with one re-read and
        replace, then republish each, in order. One outcome per message. `thorough`: every
        linked cell is replaced (see ObjectApplier.apply); so it is when one of the messages
        is a CREATE or DELETE."""
        if self.stop.is_set():
            return [Outcome("abandoned") for _ in bodies]
        outcomes: list[Outcome | None] = [None] * len(bodies)
        changes = []
        for i, body in enumerate(bodies):
            try:
                changes.append((i, parse(body)))
            except BadMessage as exc:
                self.metrics.failed.inc()
                outcomes[i] = Outcome("quarantine", str(exc), 1)
        if changes:
            # The newest message stands for the object; an fq_name from any of them helps
            # find its fq-name index entry once the object is gone, and so do the links
            # their obj_dicts name.
            change = replace(changes[-1][1], coalesced=tuple(c for _, c in changes[:-1]))
            if not change.fq_name:
                named = [c for _, c in changes if c.fq_name]
                if named:
                    change = replace(change, fq_name=named[-1].fq_name)
            thorough = thorough or any(c.oper != "UPDATE" for _, c in changes)
            applied = self._apply(change, thorough=thorough)
            if isinstance(applied, Outcome):
                for i, _ in changes:
                    outcomes[i] = applied
            else:
                self.metrics.object_writes.inc()
                self.metrics.coalesced.inc(len(changes) - 1)
                self.metrics.cells_quarantined.inc(applied.quarantined)
                for n, (i, one) in enumerate(changes):
                    outcome = self._republish(one, applied, first=n == 0)
                    outcomes[i] = outcome
                    if outcome.kind == "abandoned":  # stopping: the rest stay queued,
                        break                        # redelivered in order
        return [o if o is not None else Outcome("abandoned") for o in outcomes]

    def _apply(self, change: Change, *, thorough: bool = False) -> ApplyResult | Outcome:
        """Re-read the object from old and replace it on new, retrying failures of the
        surroundings (a retry is thorough: a failed attempt may have written part of the
        change); an Outcome when it is quarantined or abandoned."""
        opts = self.options
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        attempts = 0
        while True:
            attempts += 1
            try:
                if thorough or attempts > 1:
                    return self.objects.apply(change, thorough=True)
                return self.objects.apply(change)
            except TRANSIENT as exc:
                self.metrics.failed.inc()
                log.warning("applying %s %s: %s: %s (retrying)", change.type, change.uuid,
                            type(exc).__name__, exc)
                if backoff.wait(self.stop):
                    return Outcome("abandoned")
            except Exception as exc:
                self.metrics.failed.inc()
                reason = f"{change.oper} {change.type} {change.uuid}: {type(exc).__name__}: {exc}"
                log.warning("applying failed (attempt %d/%d): %s", attempts,
                            opts.max_attempts, reason)
                if attempts >= opts.max_attempts:
                    return Outcome("quarantine", reason, attempts)
                if backoff.wait(self.stop):
                    return Outcome("abandoned")

    def _republish(self, change: Change, result: ApplyResult, first: bool) -> Outcome:
        opts = self.options
        out_body = translate(change.body, opts.old_version, opts.new_version,
                             reverse=opts.reverse)
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        while True:
            try:
                self._publishes.call(out_body)
                break
            except Exception as exc:  # the new broker is down: the change waits
                log.warning("republishing on %s failed: %s (retrying)",
                            self.new_rabbit.describe(), exc)
                if backoff.wait(self.stop):
                    return Outcome("abandoned")
        self.metrics.applied.inc()
        self.metrics.republished.inc()
        self.metrics.last_applied.set(time.time())
        if first and result.newest_writetime:
            self.metrics.observe_lag(time.time() - result.newest_writetime / 1e6)
        return Outcome("applied", result=result)

    def _publish_group(self, bodies: list[Mapping[str, Any]]) -> list[None]:
        self._publisher.publish_many(bodies)
        return [None] * len(bodies)

    def connect_publisher(self) -> None:
        """Open the publisher's connection now, not on the first change: after a start,
        the first changes would otherwise wait for it."""
        try:
            self._publisher.connect()
        except Exception as exc:  # the broker is down: the first publish retries
            log.debug("publisher not connected ahead: %s", exc)

    def close(self) -> None:
        self._publisher.close()
