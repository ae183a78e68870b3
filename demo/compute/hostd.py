"""The daemon behind every simulated compute of a world: `python -m demo.compute.hostd --world DIR`.

Per host it runs, like a container on a shared kernel:
- the vrouter-agent: reads its config at start, then reports (the heartbeat that stands in
  for the agent's sandesh and XMPP sessions) to the analytics-api of the collectors it is
  configured with and to each of its control nodes on their XMPP port,
  `POST /issu-demo/agent-report`;
- the data path: a UDP echo on the host's address that answers only while the data path
  is up. Starting an agent whose installed version differs from the loaded vrouter kernel
  module reloads the module: the data path is down for `datapath_down_s`, as on a real
  compute while vrouter.ko is reloaded and the agent reprograms forwarding;
- the traffic probe: a stream of sequence-numbered datagrams from a peer address to each
  host's echo; lost sequence numbers give the gap in ms. It runs at `probe_slow_ms` and
  switches to `probe_fast_ms` while a host is being reinstalled (`watch`).

The host-side command (`demo.compute.host`) talks to it over a Unix socket in the world
directory, one JSON request per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import heapq
import json
import os
import random
import resource
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from backends.hostport import DEFAULT_PORTS, host_of, with_port
from demo.compute.layout import SOCKET_NAME, HostDir, WorldSettings, load_world

RUNNING = "PROCESS_STATE_RUNNING"
STOPPED = "PROCESS_STATE_STOPPED"
_PACKET = struct.Struct("!IQ")  # host index, sequence number
FAST_AFTER_UP_S = 5.0  # keep probing fast a little after the data path is back
WATCH_S = 900.0  # a reinstall is probed fast for at most this long


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} hostd: {message}", flush=True)


@dataclass
class Host:
    index: int
    name: str
    address: str
    dir: HostDir
    running: bool = False
    connected: bool = False
    cluster: str = ""
    collector: str = ""
    last_report_at: float = 0.0
    last_error: str = ""
    started_at: float = 0.0
    agent_version: str = ""
    agent_conf: dict[str, list[str]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    module_version: str = ""
    datapath_up: bool = True
    datapath_down_at: float = 0.0
    # traffic probe
    seq: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    last_acked: int = 0
    fast_until: float = 0.0
    gap_ms: float = 0.0
    gap_at: float = 0.0
    outages: int = 0
    sched_gen: int = 0

    def interval_s(self, settings: WorldSettings, now: float) -> float:
        ms = settings.probe_fast_ms if now < self.fast_until else settings.probe_slow_ms
        return ms / 1000.0


class HostDaemon:
    def __init__(self, world_dir: Path, settings: WorldSettings) -> None:
        self.world_dir = world_dir
        self.settings = settings
        self.hosts: dict[str, Host] = {}
        self.by_index: list[Host] = []
        for i, (name, address) in enumerate(sorted(settings.hosts.items())):
            host = Host(i, name, address, HostDir(world_dir, name))
            self.hosts[name] = host
            self.by_index.append(host)
        self.http: aiohttp.ClientSession | None = None
        self.prober: asyncio.DatagramTransport | None = None
        self.echoes: list[asyncio.BaseTransport] = []
        self.schedule: list[tuple[float, int, int]] = []  # (when, host index, generation)
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        _raise_nofile(len(self.hosts) * 2 + 256)
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=3.0),
            connector=aiohttp.TCPConnector(limit=64),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self._open_datapath()
        sock_path = self.world_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        server = await asyncio.start_unix_server(self._serve, path=str(sock_path))
        os.chmod(sock_path, 0o600)
        for host in self.by_index:
            host.module_version = host.dir.version()
            if host.dir.enabled_flag.exists() and host.dir.exists():
                self._start_agent(host, reload_module=False)
        sender = asyncio.create_task(self._send_loop())
        log(f"serving {len(self.hosts)} hosts on {sock_path}")
        await self.stopping.wait()
        log("stopping")
        sender.cancel()
        server.close()
        for host in self.by_index:
            if host.task:
                host.task.cancel()
            with contextlib.suppress(FileNotFoundError):
                host.dir.pidfile.unlink()
        for transport in self.echoes:
            transport.close()
        if self.prober:
            self.prober.close()
        await self.http.close()
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()

    # ------------------------------------------------------------------ requests
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line or b"{}")
            reply = await self._handle(request)
        except (json.JSONDecodeError, TimeoutError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # one bad request must not stop the daemon
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "hosts": len(self.hosts)}
        if op == "states":
            return {"ok": True, "hosts": {h.name: self._state(h) for h in self.by_index}}
        host = self.hosts.get(str(request.get("host")))
        if host is None:
            return {"ok": False, "error": f"unknown host {request.get('host')!r}"}
        if op == "state":
            return {"ok": True, **self._state(host)}
        if op == "watch":
            self._watch(host)
            return {"ok": True}
        if op == "start":
            reload = self._start_agent(host, reload_module=True)
            return {"ok": True, "module_reload": reload, "pid": os.getpid()}
        if op == "stop":
            was = host.running
            await self._stop_agent(host)
            return {"ok": True, "was_running": was}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _state(self, host: Host) -> dict[str, Any]:
        now = time.monotonic()
        ongoing = self._ongoing_gap_ms(host, now)
        return {
            "name": host.name,
            "running": host.running,
            "connected": host.connected and host.running,
            "cluster": host.cluster if host.running else "",
            "collector": host.collector,
            "agent_version": host.agent_version if host.running else "",
            "agent_control_nodes": host.agent_conf.get("control_nodes", []),
            "last_report_age_s": round(now - host.last_report_at, 1)
            if host.last_report_at else None,
            "last_error": host.last_error,
            "module_version": host.module_version,
            "datapath_up": host.datapath_up,
            "gap_ms": round(max(host.gap_ms, ongoing), 1),
            "gap_ongoing": ongoing > 0,
            "outages": host.outages,
            "probe_interval_ms": host.interval_s(self.settings, now) * 1000,
        }

    # ------------------------------------------------------------------ agent
    def _watch(self, host: Host) -> None:
        """A reinstall begins: probe fast and start a new gap episode."""
        host.fast_until = time.monotonic() + WATCH_S
        host.gap_ms = 0.0
        host.gap_at = 0.0
        self._reschedule(host)

    def _start_agent(self, host: Host, reload_module: bool) -> bool:
        if host.task:
            host.task.cancel()
        previous = host.collector
        previous_collectors = list(host.agent_conf.get("collectors", []))
        previous_nodes = list(host.agent_conf.get("control_nodes", []))
        installed = host.dir.version()
        reload = reload_module and installed != host.module_version
        host.agent_conf = host.dir.read_conf()
        host.agent_version = installed
        host.running = True
        host.connected = False
        host.last_error = ""
        host.started_at = time.monotonic()
        host.dir.pidfile.parent.mkdir(parents=True, exist_ok=True)
        host.dir.pidfile.write_text(f"{os.getpid()}\n")
        if reload:
            self._module_reload(host, installed)
        if previous and previous not in host.agent_conf["collectors"]:
            # Moved to another cluster: the old analytics drops the vrouter's UVE.
            host.collector = ""
        for collector in dict.fromkeys([previous, *previous_collectors]):
            if collector and collector not in host.agent_conf["collectors"]:
                self._background(self._forget(host, collector))
        for node in previous_nodes:
            if node not in host.agent_conf["control_nodes"]:  # its XMPP session goes down
                self._background(self._forget_at(
                    host, with_port(node, DEFAULT_PORTS["control_nodes"])))
        host.task = asyncio.create_task(self._agent_loop(host))
        self._agent_log(host, f"started version {installed}, control nodes "
                              f"{' '.join(host.agent_conf['control_nodes'])}"
                        + (f" (vrouter.ko reloaded {host.module_version})" if reload else ""))
        return reload

    def _module_reload(self, host: Host, version: str) -> None:
        if host.fast_until < time.monotonic() + 30:
            self._watch(host)
        host.datapath_up = False
        host.datapath_down_at = time.monotonic()
        host.module_version = version
        s = self.settings
        down = max(0.05, s.datapath_down_s + random.uniform(-s.datapath_jitter_s,
                                                            s.datapath_jitter_s))

        def back_up() -> None:
            host.datapath_up = True
            host.fast_until = min(host.fast_until, time.monotonic() + FAST_AFTER_UP_S)

        asyncio.get_running_loop().call_later(down, back_up)

    async def _stop_agent(self, host: Host) -> None:
        if host.task:
            host.task.cancel()
            host.task = None
        if host.running:
            self._agent_log(host, "stopped")
            if host.collector:  # to each collector it reports to
                await self._report(host, STOPPED, list(dict.fromkeys(
                    [host.collector, *host.agent_conf.get("collectors", [])])))
            else:
                await self._xmpp(host, self._body(host, STOPPED))
        host.running = False
        host.connected = False
        host.cluster = ""
        with contextlib.suppress(FileNotFoundError):
            host.dir.pidfile.unlink()

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forget(self, host: Host, collector: str) -> None:
        await self._forget_at(host, f"{host_of(collector)}:{self.settings.analytics_port}")

    async def _forget_at(self, host: Host, endpoint: str) -> None:
        """The agent's report withdrawn from a collector or a control node (host:port)."""
        assert self.http is not None
        url = f"http://{endpoint}{self.settings.report_path}/{host.name}"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self.http.delete(url):
                pass

    async def _agent_loop(self, host: Host) -> None:
        s = self.settings
        await asyncio.sleep(s.agent_start_s)
        while True:
            await self._report(host, RUNNING, host.agent_conf.get("collectors", []))
            await asyncio.sleep(s.heartbeat_s * random.uniform(0.9, 1.1))

    async def _xmpp(self, host: Host, body: dict[str, Any]) -> None:
        """The XMPP session to each control node: the report on its port (`addr:5269`)."""
        assert self.http is not None
        for node in host.agent_conf.get("control_nodes", []):
            endpoint = with_port(node, DEFAULT_PORTS["control_nodes"])
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self.http.post(f"http://{endpoint}{self.settings.report_path}",
                                          json=body):
                    pass

    def _body(self, host: Host, state: str) -> dict[str, Any]:
        return {
            "name": host.name,
            "version": host.agent_version,
            "control_ip": host.address,
            "control_nodes": host.agent_conf.get("control_nodes", []),
            "collectors": host.agent_conf.get("collectors", []),
            "dns_servers": host.agent_conf.get("dns_servers", []),
            "process_state": state,
            # A few workloads per host, stable across restarts, as the agent would count them.
            "vm_count": 2 + host.index % 7,
            "interface_count": 3 + host.index % 7,
            "vn_count": 1 + host.index % 4,
            "build_id": f"{host.agent_version}-{40 + host.index % 3}",
        }

    async def _report(self, host: Host, state: str, collectors: list[str]) -> None:
        assert self.http is not None
        body = self._body(host, state)
        await self._xmpp(host, body)
        errors = []
        # To every collector: Contrail's analytics nodes share the UVEs of the generators
        # any of them hears; each simulated analytics-api knows only what reaches it. The
        # first that answers is the one the agent is connected to.
        reached = False
        for collector in collectors:
            url = (f"http://{host_of(collector)}:{self.settings.analytics_port}"
                   f"{self.settings.report_path}")
            try:
                async with self.http.post(url, json=body) as resp:
                    if resp.status == 200:
                        data = await resp.json()
                        if state == RUNNING and not reached:
                            if not host.connected or host.collector != collector:
                                self._agent_log(host, f"connected to {collector} "
                                                      f"(cluster {data.get('cluster')})")
                            host.connected = True
                            host.cluster = str(data.get("cluster") or "")
                            host.collector = collector
                            host.last_report_at = time.monotonic()
                            host.last_error = ""
                        reached = True
                        continue
                    errors.append(f"{collector}: HTTP {resp.status}: {(await resp.text())[:200]}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{collector}: {type(exc).__name__}: {exc}")
        if reached:
            return
        if state == RUNNING:
            if host.connected:
                self._agent_log(host, "lost its collectors: " + "; ".join(errors))
            host.connected = False
            host.last_error = "; ".join(errors) or "no collectors configured"

    def _agent_log(self, host: Host, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} contrail-vrouter-agent: {message}\n"
        with contextlib.suppress(OSError), open(host.dir.agent_log, "a") as fh:
            fh.write(line)
        log(f"{host.name}: {message}")

    # ------------------------------------------------------------------ data path
    async def _open_datapath(self) -> None:
        loop = asyncio.get_running_loop()
        port = self.settings.probe_port
        for host in self.by_index:
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Echo, host), local_addr=(host.address, port))
            self.echoes.append(transport)
        self.prober, _ = await loop.create_datagram_endpoint(
            lambda: _Prober(self), local_addr=(self.settings.probe_peer, 0))
        now = time.monotonic()
        for host in self.by_index:
            # Spread the slow probes over one interval.
            heapq.heappush(self.schedule, (now + random.random() * host.interval_s(
                self.settings, now), host.index, host.sched_gen))

    def _reschedule(self, host: Host) -> None:
        host.sched_gen += 1
        heapq.heappush(self.schedule, (time.monotonic(), host.index, host.sched_gen))
        self.wakeup.set()

    async def _send_loop(self) -> None:
        port = self.settings.probe_port
        while True:
            now = time.monotonic()
            while self.schedule and self.schedule[0][0] <= now:
                _, index, gen = heapq.heappop(self.schedule)
                host = self.by_index[index]
                if gen != host.sched_gen:
                    continue  # superseded by a reschedule
                host.seq += 1
                host.sent[host.seq] = now
                if len(host.sent) > 2048:
                    for old in sorted(host.sent)[:1024]:
                        del host.sent[old]
                assert self.prober is not None
                self.prober.sendto(_PACKET.pack(index, host.seq), (host.address, port))
                nxt = now + host.interval_s(self.settings, now)
                heapq.heappush(self.schedule, (nxt, index, gen))
            self.wakeup.clear()
            delay = self.schedule[0][0] - time.monotonic() if self.schedule else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), max(0.0, delay))

    def on_reply(self, index: int, seq: int) -> None:
        if index >= len(self.by_index):
            return
        host = self.by_index[index]
        if seq <= host.last_acked:
            return
        if host.last_acked and seq > host.last_acked + 1:
            first_lost = host.sent.get(host.last_acked + 1)
            arrived = host.sent.get(seq)
            if first_lost is not None and arrived is not None:
                gap = (arrived - first_lost) * 1000.0
                host.outages += 1
                if gap > host.gap_ms:
                    host.gap_ms = gap
                    host.gap_at = time.time()
        host.last_acked = seq

    def _ongoing_gap_ms(self, host: Host, now: float) -> float:
        """The outage in progress, if replies stopped more than three intervals ago."""
        first_lost = host.sent.get(host.last_acked + 1)
        if first_lost is None or host.seq <= host.last_acked + 1:
            return 0.0
        silent = now - first_lost
        return silent * 1000.0 if silent > 3 * host.interval_s(self.settings, now) else 0.0


class _Echo(asyncio.DatagramProtocol):
    """The host's data path: echoes while it is up, drops while vrouter.ko reloads."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.transport: Any = None  # the selector's datagram transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.host.datapath_up and self.transport is not None:
            self.transport.sendto(data, addr)


class _Prober(asyncio.DatagramProtocol):
    def __init__(self, daemon: HostDaemon) -> None:
        self.daemon = daemon

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == _PACKET.size:
            index, seq = _PACKET.unpack(data)
            self.daemon.on_reply(index, seq)


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.compute.hostd")
    parser.add_argument("--world", type=Path, required=True)
    args = parser.parse_args(argv)
    world_dir = args.world.resolve()
    settings = load_world(world_dir)
    try:
        asyncio.run(HostDaemon(world_dir, settings).run())
    except OSError as exc:
        print(f"hostd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
