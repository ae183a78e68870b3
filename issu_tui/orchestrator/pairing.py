"""iBGP pairing of the old and new control nodes: bgp-router objects in each cluster.

`pair` is the pair phase, `check_pairing` runs after pre-sync (the new cluster got the
objects with the data), `unpair` is finalize's step (new side) and abort's (old side), and
the `issu unpair` intent (both sides).
"""

from __future__ import annotations

from backends.apiserver import ApiServerError
from issu_tui.orchestrator.context import Context, OrchestratorError


def pair(ctx: Context) -> str:
    """In the old cluster, a bgp-router for every control node of both clusters (the old
    ones normally exist already): old and new control nodes then peer over iBGP. The new
    cluster's database gets the same objects with the data (pre-sync, then run-sync), which
    `check_pairing` confirms; the fenced new api-server takes no write before finalize."""
    if not ctx.bgp_specs("new"):
        raise OrchestratorError(f"{ctx.config_path}: new.control_nodes: list the new control "
                                "nodes (name, address) to pair them with the old ones")
    specs = ctx.bgp_specs("old") + ctx.bgp_specs("new")
    with ctx.api("old") as old:
        result = old.pair(specs)
    message = (f"old cluster: bgp-routers created {', '.join(result.created) or 'none'}, "
               f"already there {', '.join(result.existing) or 'none'} (AS {ctx.config.old.asn})")
    ctx.event("pair", message, created=result.created, existing=result.existing)
    return message


def check_pairing(ctx: Context) -> str:
    """After pre-sync: the new cluster knows every control node of both clusters."""
    with ctx.api("new") as new:
        present = new.bgp_router_names()
    wanted = [s.name for s in ctx.bgp_specs("old") + ctx.bgp_specs("new")]
    missing = [n for n in wanted if n not in present]
    if missing:
        raise OrchestratorError(
            f"the new cluster lacks bgp-routers for {', '.join(missing)} after pre-sync; "
            "check the pair step and the pre-sync output (`issu events`)")
    return f"new cluster holds bgp-routers for {', '.join(wanted)}"


def unpair(ctx: Context, *, old_side: bool = True, new_side: bool = True) -> str:
    """Remove the cross-cluster bgp-routers: new control nodes from old, old ones from new.

    A fenced api-server refuses every write: its side is reported, not forced open (finalize
    unpairs the new side once the new api-server is open; the old side stays as it is in a
    cluster being retired)."""
    parts = []
    sides = [("old", "new", old_side), ("new", "old", new_side)]
    for where, whose, wanted in sides:
        if not wanted:
            continue
        try:
            with ctx.api(where) as api:
                result = api.unpair([s.name for s in ctx.bgp_specs(whose)])
        except ApiServerError as exc:
            if not exc.fenced:
                raise
            parts.append(f"{where} cluster is fenced (writes refused): its bgp-routers for "
                         f"the {whose} control nodes stay")
            continue
        parts.append(f"{where} cluster: removed bgp-routers of {whose} control nodes "
                     f"{', '.join(result.deleted) or 'none (already gone)'}")
    message = "; ".join(parts)
    ctx.event("pair", f"unpair: {message}")
    return message
