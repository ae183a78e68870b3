"""The controllers' own services, stopped and started where the upgrade needs it, over SSH
through each host's controller profile (backends/controller.py):

- prepare-new (start of pre-sync): new's writers (schema-transformer, svc-monitor,
  device-manager; kube-manager and vcenter-manager where present) stopped and disabled, then
  asked again: one still running refuses pre-sync, naming host and service; one the host
  has not got (not installed: `systemctl` exit 5, supervisord's "no such process", docker's
  "No such container") is said absent, with its host, and skipped;
- stop-old-services (finalize, before run-sync is drained and post-sync copies): old's config
  services stopped, writers first, so nothing writes to old while its last changes are copied,
  and disabled (a reboot must not bring them back); abort enables and starts them again;
- start-new-writers (finalize, after zk-sync and verify): new's writers enabled and started
  (the absent ones said and skipped again);
- the fence by profile: where the config hosts' profile defines `fence` / `unfence`,
  finalize's fence-old (abort: unfence) and open-new run them instead of the api-server's
  fence call, and prepare-new fences new with them.

Each step acts on a side's hosts at once (bounded, `on_each`), each host's services in order;
a host that fails does not stop the others, and every failure names its host. Only the
services a host's profile maps are acted on (a deployment without device-manager maps none);
what was left out is said. Without an inventory for a side, the step does
nothing and says so: the runbook's manual steps apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from backends.compute import ProfileError
from backends.controller import (
    OPTIONAL_WRITERS,
    ROLE_SERVICES,
    ROLE_WRITERS,
    WRITERS,
    ControllerError,
    ControllerExecutor,
    ControllerProfile,
    build_controller_profiles,
    host_writers,
)
from backends.ssh import SshTarget, run_parallel
from issu_tui.config import ControllerHostConfig, IssuConfig
from issu_tui.orchestrator.context import Context, OrchestratorError

# old's config services, in the order they are stopped (writers first, the api-server last)
CONFIG_SERVICES = (*(w for w in ROLE_WRITERS["config"] if w not in OPTIONAL_WRITERS),
                   "api-server")
assert set(CONFIG_SERVICES) == set(ROLE_SERVICES["config"])


# A step acts on a side's hosts at once, at most this many: each host's part takes seconds
# (SSH, the service manager, the service's own stop), and host after host a 3-controller
# world spent 14-19 s per step. Markers, events and errors stay per host.
HOST_PARALLEL = 8
R = TypeVar("R")


def on_each(hosts: Sequence[ControllerHostConfig], work: Callable[[ControllerHostConfig], R]
            ) -> tuple[list[tuple[ControllerHostConfig, R]],
                       list[tuple[ControllerHostConfig, OrchestratorError]]]:
    """`work` on every host, HOST_PARALLEL at once, each whatever the others did: (the
    results, the failures), each in inventory order. Any other exception is raised once
    every host's part has ended."""
    results: dict[str, R] = {}
    failures: dict[str, OrchestratorError] = {}
    other: BaseException | None = None
    for host, result, error in run_parallel(hosts, work, max(1, min(HOST_PARALLEL,
                                                                    len(hosts)))):
        if isinstance(error, OrchestratorError):
            failures[host.name] = error
        elif error is not None:
            other = other or error
        else:
            results[host.name] = result  # type: ignore[assignment]
    if other is not None:
        raise other
    return ([(h, results[h.name]) for h in hosts if h.name in results],
            [(h, failures[h.name]) for h in hosts if h.name in failures])


def _raise_failures(failures: list[tuple[ControllerHostConfig, OrchestratorError]],
                    prefix: str = "") -> None:
    if len(failures) == 1 and not prefix:
        raise failures[0][1]
    if failures:
        raise OrchestratorError(prefix + "; ".join(str(exc) for _, exc in failures))


def executor(ctx: Context) -> ControllerExecutor:
    ssh = ctx.config.ssh
    if ssh is None:  # the config refuses controllers without [ssh]
        raise OrchestratorError(f"{ctx.config_path}: [ssh] is required for controller hosts")
    return ControllerExecutor(ssh.known_hosts, ssh.connect_timeout_s,
                              ssh.command_timeout_s, ctx.config.controller_profiles)


def target(host: ControllerHostConfig) -> SshTarget:
    return SshTarget(host.name, host.address, host.ssh_port, host.ssh_user, host.ssh_key)


def hosts_with(ctx: Context, side: str, roles: Sequence[str]) -> list[ControllerHostConfig]:
    return [h for h in ctx.cluster(side).controllers if set(roles) & set(h.roles)]


def mapped_services(profile: ControllerProfile, host: ControllerHostConfig,
                    wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the services of `wanted` the host runs by its roles and its profile maps, those its
    roles name but its profile does not)."""
    by_role = {s for role in host.roles for s in ROLE_SERVICES.get(role, ())}
    mine = [s for s in wanted if s in by_role]
    return ([s for s in mine if s in profile.services],
            [s for s in mine if s not in profile.services])


def services_of(ex: ControllerExecutor, host: ControllerHostConfig,
                wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    return mapped_services(ex.profile(host.profile), host, wanted)


def mapped_writers(profile: ControllerProfile, host: ControllerHostConfig
                   ) -> tuple[list[str], list[str]]:
    """(the writers the host is asked about by its roles and its profile maps, the required
    ones its profile does not map). An optional writer the profile maps to nothing is one
    these hosts do not run: left out, not said."""
    mine = host_writers(host.roles)
    return ([s for s in mine if s in profile.services],
            [s for s in mine if s not in profile.services and s not in OPTIONAL_WRITERS])


def _absent_said(ctx: Context, host: ControllerHostConfig, absent: Sequence[str],
                 step: str) -> str:
    """The event (and the words for the step's result) of writers the host has not got."""
    if not absent:
        return ""
    said = f"{host.name}: {', '.join(absent)} absent (not on this host), skipped"
    ctx.event("controllers", f"{step}: {said}", step=step, host=host.name,
              absent=list(absent))
    return said


# (side, roles, services, what is done) of each controller step, for the plan and runbook
PLAN_STEPS = {
    "prepare-new": ("new", ("config", "northbound"), WRITERS, "stop and disable"),
    "stop-old-services": ("old", ("config",), CONFIG_SERVICES, "stop and disable"),
    "start-new-writers": ("new", ("config", "northbound"), WRITERS, "enable and start"),
}


def planned(config: IssuConfig, step: str) -> list[str]:
    """What controller step `step` does on this config, one line per host: the services by
    issu's name and the host's (unit, container, program)."""
    side, roles, wanted, verb = PLAN_STEPS[step]
    cluster = config.old if side == "old" else config.new
    hosts = [h for h in cluster.controllers if set(roles) & set(h.roles)]
    if not hosts:
        return [f"{verb} {side}'s {', '.join(wanted)}: by hand (no [[{side}.controllers]] "
                "host with role config; see the runbook)"]
    try:
        profiles = build_controller_profiles(config.controller_profiles)
    except ProfileError as exc:
        return [f"{verb} {side}'s services: {exc}"]
    lines = []
    for host in hosts:
        profile = profiles[host.profile]
        services, _ = (mapped_writers(profile, host) if wanted == WRITERS
                       else mapped_services(profile, host, wanted))
        if services:
            named = ", ".join(f"{s} ({profile.services[s]})" for s in services)
            where = (f" ({', '.join(s for s in services if s in OPTIONAL_WRITERS)}: where "
                     "present)" if set(services) & set(OPTIONAL_WRITERS) else "")
            lines.append(f"{verb} on {host.name} over SSH, profile {host.profile}: {named}"
                         + where)
    return lines


def fence_planned(config: IssuConfig, side: str, closed: bool) -> str:
    """How `side`'s api-server is fenced (closed) or opened: the profile's step on its config
    hosts where their profile defines one, else the api-server's fence call."""
    cluster = config.old if side == "old" else config.new
    verb = "fence" if closed else "unfence"
    call = f"{side} api-server {'fenced' if closed else 'opened'} by its /issu/" \
           f"{'close' if closed else 'open'} call"
    try:
        profiles = build_controller_profiles(config.controller_profiles)
    except ProfileError:
        return call
    hosts = [h for h in cluster.controllers
             if "config" in h.roles and h.profile in profiles and profiles[h.profile].has_fence]
    if not hosts:
        return call
    return f"{verb} {side}'s api-server over SSH on " + ", ".join(
        f"{h.name} (profile {h.profile})" for h in hosts)


def _act(ctx: Context, ex: ControllerExecutor, host: ControllerHostConfig, step: str,
         services: Sequence[str]) -> None:
    try:
        ex.act(target(host), host.profile, step, services)
    except ControllerError as exc:
        raise OrchestratorError(f"controller {exc}") from None


def _present_act(ex: ControllerExecutor, host: ControllerHostConfig, steps: Sequence[str],
                 services: Sequence[str]) -> tuple[list[str], list[str]]:
    """`steps` on the services the host has (asked first: supervisord's enable edits a
    program's .ini, which an absent program has not got); (those it has, those it has not
    got), in order."""
    try:
        states = ex.status(target(host), host.profile, services)
        absent = [s.service for s in states if s.absent]
        absent += ex.act_present(target(host), host.profile, steps,
                                 [s for s in services if s not in absent])
    except ControllerError as exc:
        raise OrchestratorError(f"controller {exc}") from None
    return ([s for s in services if s not in absent], [s for s in services if s in absent])


def _running(ex: ControllerExecutor, host: ControllerHostConfig,
             services: Sequence[str]) -> list[str]:
    try:
        states = ex.status(target(host), host.profile, services)
    except ControllerError as exc:
        raise OrchestratorError(f"controller {exc}") from None
    return [f"{s.service} ({s.state})" for s in states if s.running]


def _no_inventory(ctx: Context, side: str, what: str) -> str:
    message = (f"no [[{side}.controllers]] host with role config: {what} not done by issu "
               "(the runbook's manual step)")
    ctx.event("controllers", message, level="warning")
    return message


def prepare_new(ctx: Context) -> str:
    """Stop and disable new's writers, then check that none runs (refused, naming it)."""
    hosts = hosts_with(ctx, "new", ("config", "northbound"))
    if not hosts:
        return _no_inventory(ctx, "new", "stopping new's writers")
    ex = executor(ctx)

    def one(host: ControllerHostConfig) -> tuple[str, str, str]:
        """(what was stopped, what still runs, what is absent): empty when nothing."""
        services, unmapped = mapped_writers(ex.profile(host.profile), host)
        if unmapped:
            ctx.event("controllers", f"{host.name}: profile {host.profile} maps none of "
                      f"{', '.join(unmapped)}: not stopped by issu", level="warning")
        if not services:
            return "", "", ""
        present, absent = _present_act(ex, host, ("stop", "disable"), services)
        running = _running(ex, host, present) if present else []
        return (f"{host.name}: {', '.join(present)}" if present else "",
                f"{host.name} ({host.address}): {', '.join(running)}" if running else "",
                _absent_said(ctx, host, absent, "prepare-new"))

    results, failures = on_each(hosts, one)
    _raise_failures(failures)
    done = [stopped for _, (stopped, _, _) in results if stopped]
    still = [running for _, (_, running, _) in results if running]
    absent = [said for _, (_, _, said) in results if said]
    if still:
        raise OrchestratorError(
            "new's writers still run after stop and disable; pre-sync refused (they would "
            "write into new's database while it is copied into): " + "; ".join(still))
    detail = "stopped and disabled on new: " + ("; ".join(done) or "none mapped")
    ctx.event("controllers", detail)
    if absent:
        detail += "; " + "; ".join(absent)
    fenced = fence_by_profile(ctx, "new", closed=True)
    return detail + (f"; {fenced}" if fenced else "")


STOP_OLD = "stop-old-services"


def host_marker(step: str, host: ControllerHostConfig, what: str) -> str:
    """The journal marker of one host's part of finalize's `step`: `begun` (set before it
    acts: it may have stopped some services before failing) or `done`."""
    return f"finalize.{step}.host:{host.name}.{what}"


def stop_old_services(ctx: Context) -> str:
    """Old's config services stopped and disabled (a reboot must not bring back an old
    api-server, unfenced, or a writer) on every config host at once, each host marked in the
    journal: a retry skips the hosts done, abort starts those begun or done, and a failure
    says which hosts were done and which not."""
    hosts = hosts_with(ctx, "old", ("config",))
    if not hosts:
        return _no_inventory(ctx, "old", "stopping old's config services")
    ex = executor(ctx)
    earlier = {h.name for h in hosts if ctx.step_done(host_marker(STOP_OLD, h, "done"))}

    def one(host: ControllerHostConfig) -> str:
        ctx.mark_step(host_marker(STOP_OLD, host, "begun"))
        said = _stop_and_disable(ctx, ex, host)
        ctx.mark_step(host_marker(STOP_OLD, host, "done"))
        ctx.event("finalize", f"{STOP_OLD}: stopped and disabled on {said}", step=STOP_OLD,
                  host=host.name)
        return said

    results, failures = on_each([h for h in hosts if h.name not in earlier], one)
    if failures:
        failed = [h.name for h, _ in failures]
        finished = [h.name for h in hosts if h.name not in failed]
        for host, exc in failures:
            ctx.event("finalize", f"{STOP_OLD}: {host.name} failed: {exc}; stopped and "
                      f"disabled on: {', '.join(finished) or 'none'}; not done on: "
                      f"{', '.join(failed)}", level="error", step=STOP_OLD,
                      failed=host.name, done=finished,
                      pending=[n for n in failed if n != host.name])
        _raise_failures(failures)
    said = dict((h.name, line) for h, line in results)
    return "stopped on old, and disabled: " + "; ".join(
        f"{h.name}: done by an earlier run" if h.name in earlier else said[h.name]
        for h in hosts)


def _stop_and_disable(ctx: Context, ex: ControllerExecutor, host: ControllerHostConfig) -> str:
    services, unmapped = services_of(ex, host, CONFIG_SERVICES)
    if services:
        _act(ctx, ex, host, "stop", services)
        _act(ctx, ex, host, "disable", services)
        running = _running(ex, host, services)
        if running:
            raise OrchestratorError(f"{host.name}: still running after stop: "
                                    f"{', '.join(running)}")
    return (f"{host.name}: {', '.join(services) or 'none mapped'}"
            + (f" (not mapped by profile {host.profile}: {', '.join(unmapped)})"
               if unmapped else ""))


def start_old_services(ctx: Context) -> str:
    """stop-old-services' inverse (abort): on the hosts it began or finished (every host
    with a journal that names none), old's config services enabled again, then started, the
    api-server first. Each host is tried whatever the others did; a host started forgets
    its markers. Those that failed are raised at the end, naming them."""
    hosts = hosts_with(ctx, "old", ("config",))
    if not hosts:
        return "no old controller inventory: old's config services not touched"
    touched = [h for h in hosts if ctx.step_done(host_marker(STOP_OLD, h, "begun"))
               or ctx.step_done(host_marker(STOP_OLD, h, "done"))] or hosts
    ex = executor(ctx)

    def one(host: ControllerHostConfig) -> str:
        services, _ = services_of(ex, host, tuple(reversed(CONFIG_SERVICES)))
        if services:
            _act(ctx, ex, host, "enable", services)
            _act(ctx, ex, host, "start", services)
        ctx.clear_steps(f"finalize.{STOP_OLD}.host:{host.name}.")
        return f"{host.name}: {', '.join(services) or 'none mapped'}"

    results, failures = on_each(touched, one)
    done = [line for _, line in results]
    failed = [str(exc) for _, exc in failures]
    untouched = [h.name for h in hosts if h not in touched]
    if failed:
        raise OrchestratorError("old's config services NOT started again: "
                                + "; ".join(failed) + "; started again: "
                                + ("; ".join(done) or "none"))
    return ("old's config services enabled and started again: " + "; ".join(done)
            + (f"; not touched, stop-old-services never reached them: {', '.join(untouched)}"
               if untouched else ""))


def start_new_writers(ctx: Context) -> str:
    hosts = hosts_with(ctx, "new", ("config", "northbound"))
    if not hosts:
        return _no_inventory(ctx, "new", "starting new's writers")
    ex = executor(ctx)

    def one(host: ControllerHostConfig) -> tuple[str, str]:
        services, _ = mapped_writers(ex.profile(host.profile), host)
        if not services:
            return "", ""
        present, absent = _present_act(ex, host, ("enable", "start"), services)
        running = _running(ex, host, present) if present else []
        stopped = [s for s in present if not any(r.startswith(f"{s} ") for r in running)]
        if stopped:
            raise OrchestratorError(f"{host.name}: not running after start: "
                                    f"{', '.join(stopped)}")
        return (f"{host.name}: {', '.join(present)}" if present else "",
                _absent_said(ctx, host, absent, "start-new-writers"))

    results, failures = on_each(hosts, one)
    _raise_failures(failures)
    done = [line for _, (line, _) in results if line]
    absent = [said for _, (_, said) in results if said]
    return "enabled and started on new: " + ("; ".join(done) or "none mapped") + "".join(
        f"; {said}" for said in absent)


def fence_marker(side: str, host: ControllerHostConfig, what: str) -> str:
    """The journal marker of one host's profile fence: `begun` (set before the step runs: it
    may have applied before failing) or `done`."""
    return f"fence.{side}.{host.name}.{what}"


def fence_by_profile(ctx: Context, side: str, closed: bool, *,
                     only_fenced: bool = False) -> str | None:
    """Run the `fence` (closed) or `unfence` profile step on the config hosts of `side`
    whose profile defines it; None when none does (the caller uses the api-server's fence
    call). A host whose profile has no fence step beside one that has is refused: half a
    fence is no fence.

    Each host's fence runs once per upgrade (journal markers): a second fence of a fenced
    host (a re-run of pre-sync) is skipped, so a non-idempotent step (`iptables -I`) does
    not stack rules that one unfence would not remove. Unfence runs on the hosts this
    upgrade fenced or began to fence, then forgets them; on a host whose fence never
    completed a failing unfence is a warning (it may never have applied). Without any such
    host: nothing to unfence with `only_fenced` (abort: issu fenced nothing there), else
    every host (open-new: new must open, even if its fence predates the markers)."""
    found = _config_hosts_with(ctx, side, "fence/unfence", lambda prof: prof.has_fence)
    if found is None:
        return None
    ex, fenced = found
    step = "fence" if closed else "unfence"
    if closed:
        def close(host: ControllerHostConfig) -> str:
            if ctx.step_done(fence_marker(side, host, "done")):
                return f"{host.name} (fenced already by this upgrade)"
            ctx.mark_step(fence_marker(side, host, "begun"))
            said = f"{host.name}{_paren(_fence(ex, host, closed))}"
            ctx.mark_step(fence_marker(side, host, "done"))
            return said

        results, failures = on_each(fenced, close)
        _raise_failures(failures)
        done = [line for _, line in results]
    else:
        touched = [h for h in fenced if ctx.step_done(fence_marker(side, h, "begun"))
                   or ctx.step_done(fence_marker(side, h, "done"))]
        if not touched and only_fenced:
            message = f"{side}'s api-server: no config host was fenced by this upgrade"
            ctx.event("controllers", message)
            return message

        def open_(host: ControllerHostConfig) -> str:
            completed = ctx.step_done(fence_marker(side, host, "done"))
            try:
                said = f"{host.name}{_paren(_fence(ex, host, closed))}"
            except OrchestratorError as exc:
                if completed or not touched:
                    raise
                said = (f"{host.name}: unfence failed ({exc}); its fence had not "
                        "completed, so it may never have applied: check the host")
                ctx.event("controllers", said, level="warning")
            ctx.clear_steps(f"fence.{side}.{host.name}.")
            return said

        results, failures = on_each(touched or fenced, open_)
        _raise_failures(failures)
        done = [line for _, line in results]
    message = f"{side}'s api-server {'fenced' if closed else 'opened'} by the profile's " \
              f"{step} step on " + ", ".join(done)
    ctx.event("controllers", message)
    return message


def fence_status_by_profile(ctx: Context, side: str) -> tuple[bool, str] | None:
    """(fenced, what was seen) from the `fence_status` step on `side`'s config hosts; None
    when their profiles define none. Every host must say fenced; a host whose profile lacks
    the step beside one that has it is refused, as is a host that does not answer."""
    found = _config_hosts_with(ctx, side, "fence_status", lambda prof: prof.has_fence_status)
    if found is None:
        return None
    ex, asked = found

    def ask(host: ControllerHostConfig) -> bool:
        try:
            return ex.fence_status(target(host), host.profile)
        except ControllerError as exc:
            raise OrchestratorError(f"controller {exc}") from None

    results, failures = on_each(asked, ask)
    _raise_failures(failures)
    states = {host.name: fenced for host, fenced in results}
    open_on = [name for name, fenced in states.items() if not fenced]
    if open_on:
        return False, (f"{side}'s api-server is open on {', '.join(open_on)}, as the "
                       "profile's fence_status step says")
    return True, (f"{side}'s api-server fenced on {', '.join(states)}, as the profile's "
                  "fence_status step says")


def fence_applied_by_profile(ctx: Context, side: str) -> str | None:
    """The config hosts of `side` this upgrade fenced with their profile's `fence` step (its
    journal markers), when it fenced every one of them; else None."""
    hosts = hosts_with(ctx, side, ("config",))
    if not hosts:
        return None
    ex = executor(ctx)
    if not all(ex.profile(h.profile).has_fence
               and ctx.step_done(fence_marker(side, h, "done")) for h in hosts):
        return None
    return ", ".join(f"{h.name} (profile {h.profile})" for h in hosts)


def _config_hosts_with(
        ctx: Context, side: str, step: str, has: Callable[[ControllerProfile], bool],
) -> tuple[ControllerExecutor, list[ControllerHostConfig]] | None:
    """The executor and `side`'s config hosts, when their profiles define `step`; None when
    there is no config host or none defines it. A host without it beside one with it is
    refused: half a fence is no fence."""
    hosts = hosts_with(ctx, side, ("config",))
    if not hosts:
        return None
    ex = executor(ctx)
    having = [h for h in hosts if has(ex.profile(h.profile))]
    if not having:
        return None
    if len(having) != len(hosts):
        bare = ", ".join(f"{h.name} (profile {h.profile})" for h in hosts if h not in having)
        raise OrchestratorError(f"{side}'s config hosts {bare} have no {step} step "
                                "while others have: define it in their profiles too")
    return ex, having


def _paren(said: str) -> str:
    return f" ({said})" if said else ""


def _fence(ex: ControllerExecutor, host: ControllerHostConfig, closed: bool) -> str:
    try:
        return ex.fence(target(host), host.profile, closed)
    except ControllerError as exc:
        raise OrchestratorError(f"controller {exc}") from None


def stop_new_writers_again(ctx: Context) -> str:
    """start-new-writers' inverse (abort before the new api-server opened): new's writers
    stopped and disabled again, as prepare-new left them."""
    return prepare_new(ctx).replace("stopped and disabled on new", "new's writers stopped and "
                                    "disabled again", 1)
