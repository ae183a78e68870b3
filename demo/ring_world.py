"""The demo world on one shared Cassandra ring (`issu demo up --approach rolling|grow|stay`).

Old and new share the ring's nodes as the approaches on shared hardware do: old's keyspaces
unprefixed, new's under the prefix `v2` (config `new.cassandra.prefix`). Each ring node is a
database host of the inventory, reached over SSH on its own address; its controller profile
drives its Cassandra through `python -m demo.services start|stop|state` and names its
directories (a node that leaves the ring and rejoins empties them). A node's "release" is a
file of its own (the demo's Cassandra is the same for v1 and v2): the conversion's `install`
writes it, `version` reads it back. ZooKeeper stays one per side.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.services.launcher import Launcher
from demo.services.ring import RingNodeService, ring_address

# approach -> (the ring's nodes, the spares that join it): what `issu plan` needs of each
APPROACH_RINGS: dict[str, tuple[int, int]] = {"rolling": (3, 0), "grow": (3, 2), "stay": (5, 0)}
NEW_PREFIX = "v2"


@dataclass(frozen=True)
class RingLayout:
    approach: str
    net: int
    size: int
    spares: int

    @property
    def nodes(self) -> list[str]:
        return [ring_address(self.net, i) for i in range(1, self.size + self.spares + 1)]

    @property
    def old(self) -> list[str]:
        """old.cassandra.hosts: the ring as it starts."""
        return self.nodes[:self.size]

    @property
    def new(self) -> list[str]:
        """new.cassandra.hosts: the same nodes, and grow's joining ones."""
        return self.nodes

    @property
    def factor(self) -> int:
        """The controllers' keyspaces' replication factor (a node may stop: quorum kept)."""
        return min(3, self.size)

    def host_names(self) -> dict[str, str]:
        return {a: f"cassandra-{i}" for i, a in enumerate(self.nodes, 1)}


def ring_layout(approach: str | None, net: int) -> RingLayout | None:
    """None for `separate` (a Cassandra per side) or no approach."""
    if not approach or approach == "separate":
        return None
    if approach not in APPROACH_RINGS:
        raise ValueError(f"approach must be separate or one of {', '.join(APPROACH_RINGS)}, "
                         f"got {approach!r}")
    size, spares = APPROACH_RINGS[approach]
    return RingLayout(approach, net, size, spares)


def release_path(world_dir: Path, index: int) -> Path:
    return world_dir / "ring" / f"release-{index}"


def write_releases(world_dir: Path, layout: RingLayout, old: str, new: str) -> None:
    """Each node's release before any conversion (kept across `up`s): old's nodes `old`,
    the nodes that join (grow's, the new controllers') `new`."""
    for i, node in enumerate(layout.nodes, 1):
        path = release_path(world_dir, i)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{old if node in layout.old else new}\n")


def not_wanted(layout: RingLayout | None, group: str) -> str:
    """Why a stopped service of this group is as wanted in a ring world ('' : it is not)."""
    if layout is None:
        return ""
    if group == "cassandra":
        return f"old and new share the ring ({layout.approach})"
    if group == "ring-spare":
        return "joins the ring at the ring steps of plan (grow)"
    return ""


def cassandra_config(layout: RingLayout, side: str, port: int) -> dict[str, Any]:
    return {"hosts": layout.old if side == "old" else layout.new, "port": port,
            "prefix": "" if side == "old" else NEW_PREFIX, "seeds": [layout.nodes[0]]}


def database_hosts(layout: RingLayout, side: str, ssh: Any) -> list[dict[str, Any]]:
    """The ring nodes as database hosts: old's the ring's first, new's the joining ones."""
    names = layout.host_names()
    nodes = layout.old if side == "old" else [n for n in layout.nodes if n not in layout.old]
    return [{"name": names[a], "address": a, "roles": ["database"], "ssh_user": ssh.user,
             "ssh_key": str(ssh.key_path), "ssh_port": ssh.port,
             "profile": f"ring-{layout.nodes.index(a) + 1}"} for a in nodes]


def profiles(layout: RingLayout, launcher: Launcher, world_dir: Path) -> dict[str, Any]:
    ctx = launcher.ctx
    host = shlex.join([sys.executable, "-m", "demo.services", "--net", str(ctx.net),
                       "--profile", ctx.profile, "--run-dir", str(ctx.run_dir),
                       "--ring", str(layout.size), "--ring-spares", str(layout.spares)])
    out: dict[str, Any] = {}
    for i, svc in enumerate(launcher.names(["ring", "ring-spare"]), 1):
        node = launcher.service(svc)
        assert isinstance(node, RingNodeService)
        release = shlex.quote(str(release_path(world_dir, i)))
        out[f"ring-{i}"] = {
            "base": "demo", "host": host, "status": "{host} state {unit}",
            "services": {"cassandra": svc},
            "cassandra_dirs": " ".join(str(d) for d in node.data_dirs()),
            "install": f"sh -c 'echo $0 > $1' {{version}} {release}",
            "version": f"cat {release}",
        }
    return out


def how_to_run(layout: RingLayout, config: Path) -> str:
    """The status lines of a ring world (the config's [ring] nodetool is the ring's own, so
    the steps need no --nodetool)."""
    return (f"ring:       {layout.approach} on {len(layout.nodes)} Cassandra nodes "
            f"{layout.nodes[0]}..{layout.nodes[-1].rsplit('.', 1)[1]} (old and new share "
            f"it, new's keyspaces {NEW_PREFIX}_*)\n"
            f"            the console's n runs its ring steps in turn; by hand: "
            f"issu ring run --approach {layout.approach} --when plan|computes|done -c {config}")
