"""run-sync's measures: lag (p50/p99 over a sliding window), counts, exported on a
Prometheus endpoint on loopback and pushed to the journal (CounterSink).

Lag of one applied change = now - the newest source WRITETIME among the cells it replaced:
how far the new database is behind the old one for that object (0 samples for deletes,
whose cells are gone on old).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TypedDict
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from backends.progress import CounterSink

COUNTER_SCOPE = "runsync"  # the journal's counter scopes: docs/architecture.md
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Deltas(TypedDict):
    """What an apply process sends its parent (take_deltas -> apply_deltas)."""

    counters: dict[str, float]          # DELTA_COUNTERS name -> increment
    lags: list[float]                   # lag samples, seconds
    last_applied: float                 # Unix time of its last applied change
    requests: dict[str, tuple[int, int]]  # kind -> (requests sent, requests asked)


class LagWindow:
    """Lag samples of the last `window_s` seconds (at most `max_samples`)."""

    def __init__(self, window_s: float = 60.0, max_samples: int = 100_000) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, lag_s: float, at: float | None = None) -> None:
        with self._lock:
            self._samples.append((at if at is not None else time.monotonic(), lag_s))

    def quantiles(self, *qs: float) -> list[float]:
        """Nearest-rank quantiles of the window; NaN when it holds no sample."""
        cutoff = time.monotonic() - self.window_s
        with self._lock:
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            values = sorted(v for _, v in self._samples)
        if not values:
            return [float("nan")] * len(qs)
        return [values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))]
                for q in qs]


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:9109" -> (host, port); only loopback addresses are accepted."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics_listen {listen!r} is not address:port (port 0-65535; "
                         "0: any free)")
    host = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ValueError(f"metrics_listen {listen!r}: {host!r} is not an IP address") from None
    if not loopback:
        raise ValueError(f"metrics_listen {listen!r}: the metrics endpoint binds loopback only")
    return host, int(port)


class RunSyncMetrics:
    """Counters and gauges in a private Prometheus registry (several instances may live in
    one process, e.g. in tests)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.applied = Counter("issu_runsync_applied", "Changes applied on new", registry=r)
        self.failed = Counter("issu_runsync_failed_attempts",
                              "Attempts that failed (retried or then quarantined)", registry=r)
        self.quarantined = Counter("issu_runsync_quarantined",
                                   "Messages set aside with a reason", registry=r)
        self.cells_quarantined = Counter("issu_runsync_cells_quarantined",
                                         "Cells a translator rejected", registry=r)
        self.republished = Counter("issu_runsync_republished",
                                   "Messages republished on the new exchange", registry=r)
        self.coalesced = Counter("issu_runsync_coalesced",
                                 "Messages served by the write of an earlier queued message of "
                                 "the same object", registry=r)
        self.object_writes = Counter("issu_runsync_object_writes",
                                     "Objects re-read from old and replaced on new", registry=r)
        self.reconnects = Counter("issu_runsync_reconnects", "RabbitMQ reconnections",
                                  registry=r)
        self.reconciled = Counter("issu_runsync_reconcile_repaired",
                                  "Partitions repaired by reconciliation", registry=r)
        self.reconcile_passes = Counter("issu_runsync_reconcile_passes",
                                        "Completed reconciliation passes", registry=r)
        self.lag_hist = Histogram("issu_runsync_lag_seconds_hist", "Lag of applied changes",
                                  buckets=LAG_BUCKETS, registry=r)
        self.lag = Gauge("issu_runsync_lag_seconds", "Lag quantiles over the window",
                         ["quantile"], registry=r)
        self.queue_depth = Gauge("issu_runsync_queue_depth", "Messages waiting on old",
                                 registry=r)
        self.in_flight = Gauge("issu_runsync_in_flight", "Messages being applied", registry=r)
        self.last_applied = Gauge("issu_runsync_last_applied_timestamp_seconds",
                                  "Unix time of the last applied change", registry=r)
        self.requests = Gauge("issu_runsync_cassandra_requests",
                              "Cassandra requests sent by the lanes, by kind (`asked`: what "
                              "the lanes asked for; `sent`: after combining those of a moment)",
                              ["kind", "count"], registry=r)
        self._requests_total = (0, 0)  # (sent, asked)
        self.window = LagWindow(window_s)
        self._exported: list[float] | None = None  # an apply process's lags, for its parent
        self._export_lock = threading.Lock()
        self._sent: dict[str, float] = {}
        self.last_lag = float("nan")
        self._rate_mark: tuple[float, float] = (time.monotonic(), 0.0)
        self._server: WSGIServer | None = None

    def observe_lag(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.last_lag = lag_s
        self.window.add(lag_s)
        self.lag_hist.observe(lag_s)
        if self._exported is not None:
            with self._export_lock:
                self._exported.append(lag_s)

    # An apply process counts in its own metrics and sends the increments to its parent.
    DELTA_COUNTERS = ("applied", "failed", "cells_quarantined", "republished", "coalesced",
                      "object_writes")

    def export_lags(self) -> None:
        """Keep lag samples for take_deltas (in an apply process)."""
        self._exported = []

    def take_deltas(self, requests: Mapping[str, tuple[int, int]] | None = None
                    ) -> Deltas:
        """Counter increments and lag samples since the last call, and request counts."""
        now = {name: getattr(self, name)._value.get() for name in self.DELTA_COUNTERS}
        counters = {name: now[name] - self._sent.get(name, 0.0) for name in now}
        self._sent = now
        with self._export_lock:
            lags, self._exported = self._exported or [], []
        return {"counters": counters, "lags": lags,
                "last_applied": self.last_applied._value.get(),
                "requests": dict(requests or {})}

    def apply_deltas(self, deltas: Deltas) -> None:
        """Add an apply process's take_deltas to these metrics."""
        for name, value in dict(deltas.get("counters") or {}).items():
            if name in self.DELTA_COUNTERS and value:
                getattr(self, name).inc(value)
        for lag in list(deltas.get("lags") or []):
            self.observe_lag(float(lag))
        last = float(deltas.get("last_applied") or 0.0)
        if last > self.last_applied._value.get():
            self.last_applied.set(last)

    def set_requests(self, stats: Mapping[str, tuple[int, int]]) -> None:
        """kind -> (requests sent, requests asked) of the combined request path."""
        for kind, (sent, asked) in stats.items():
            self.requests.labels(kind, "sent").set(sent)
            self.requests.labels(kind, "asked").set(asked)
        self._requests_total = (sum(v[0] for v in stats.values()),
                                sum(v[1] for v in stats.values()))

    def refresh(self) -> dict[str, float]:
        """Recompute the quantile gauges; return the snapshot written to the journal."""
        p50, p99 = self.window.quantiles(0.5, 0.99)
        self.lag.labels("0.5").set(p50)
        self.lag.labels("0.99").set(p99)
        applied = self.applied._value.get()
        now = time.monotonic()
        then, applied_then = self._rate_mark
        rate = (applied - applied_then) / (now - then) if now > then else 0.0
        self._rate_mark = (now, applied)
        return {
            "applied": applied,
            "applied_per_s": rate,
            "lag_s": self.last_lag,
            "reconciled": self.reconciled._value.get(),
            "failed": self.failed._value.get(),
            "quarantined": self.quarantined._value.get(),
            "cells_quarantined": self.cells_quarantined._value.get(),
            "republished": self.republished._value.get(),
            "coalesced": self.coalesced._value.get(),
            "object_writes": self.object_writes._value.get(),
            "reconnects": self.reconnects._value.get(),
            "reconcile_repaired": self.reconciled._value.get(),
            "reconcile_passes": self.reconcile_passes._value.get(),
            "lag_p50_s": p50,
            "lag_p99_s": p99,
            "queue_depth": self.queue_depth._value.get(),
            "in_flight": self.in_flight._value.get(),
            "last_applied_at": self.last_applied._value.get(),
            "cassandra_requests_sent": self._requests_total[0],
            "cassandra_requests_asked": self._requests_total[1],
        }

    def serve(self, listen: str) -> tuple[str, int]:
        host, port = parse_listen(listen)
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return host, server.server_address[1]

    def stop_serving(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def push(counters: CounterSink | None, values: Mapping[str, float]) -> None:
    """Write the snapshot through a CounterSink (NaN lags are skipped: no sample yet)."""
    if counters is None:
        return
    clean = {k: v for k, v in values.items() if v == v}
    counters.set_counters(COUNTER_SCOPE, clean)
