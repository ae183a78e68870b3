"""Preflight: new's writers must be stopped before pre-sync copies into new's database.

schema-transformer, svc-monitor and device-manager (and kube-manager and vcenter-manager, on
a config or northbound host where present) write to the config database on their own; on
new they would write into keyspaces that pre-sync, run-sync and post-sync are filling from
old. Each new controller host of the inventory is asked, through its controller profile
over SSH, whether any of them runs; one that runs is a warning naming host and service
(pre-sync's prepare-new stops and disables it, and refuses to copy while one still runs:
controllers.prepare_new); a host that cannot be asked is an error; a writer the host has
not got is said absent. The hosts are asked at once (bounded), the findings in inventory
order.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from backends.controller import (
    WRITERS,
    ControllerError,
    ControllerExecutor,
    host_writers,
)
from backends.ssh import SshTarget, run_parallel
from issu_tui.config import ControllerHostConfig, IssuConfig


@dataclass(frozen=True)
class WriterFinding:
    """One preflight check's fields (name, ok, detail, fix, severity)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: str = "error"


def _writers_of(host: ControllerHostConfig, mapped: set[str]) -> list[str]:
    return [w for w in host_writers(host.roles) if w in mapped]


def new_writer_findings(config: IssuConfig) -> list[WriterFinding]:
    hosts = [h for h in config.new.controllers if {"config", "northbound"} & set(h.roles)]
    if not hosts or config.ssh is None:
        return [WriterFinding(
            "new writers stopped", False,
            "no [[new.controllers]] host with role config: cannot confirm that new's "
            f"{', '.join(WRITERS)} are stopped",
            "list new's controller hosts (issu config check names what is missing), or make "
            "sure yourself that those services are stopped and disabled on new",
            severity="warning")]
    executor = ControllerExecutor(config.ssh.known_hosts, config.ssh.connect_timeout_s, 120,
                                  config.controller_profiles)

    def one(host: ControllerHostConfig) -> WriterFinding:
        name = f"new writers stopped on {host.name}"
        where = f"{host.name} ({host.address})"
        profile = executor.profile(host.profile)
        writers = _writers_of(host, set(profile.services))
        if not writers:
            return WriterFinding(
                name, False, f"profile {host.profile} of {where} maps none of "
                f"{', '.join(host_writers(host.roles))}: cannot ask whether they run",
                f"name them under controller_profiles.{host.profile}.services")
        target = SshTarget(host.name, host.address, host.ssh_port, host.ssh_user, host.ssh_key)
        try:
            states = executor.status(target, host.profile, writers)
        except ControllerError as exc:
            return WriterFinding(name, False, f"cannot tell: {exc}",
                                 f"check SSH to {where} and its profile {host.profile}")
        running = [s for s in states if s.running]
        if not running:
            return WriterFinding(name, True, ", ".join(
                f"{s.service} absent (not on this host)" if s.absent else
                f"{s.service} {s.state}" for s in states))
        services = [s.service for s in running]
        commands = "; ".join(shlex.join(profile.argv(step, s))
                             for step in ("stop", "disable") for s in services)
        return WriterFinding(
            name, False,
            "running on new " + where + ": "
            + ", ".join(f"{s.service} ({s.state})" for s in running)
            + "; they would write into new's database while it is copied into: pre-sync "
            "stops and disables them first, and refuses to copy while one still runs",
            f"nothing, or stop and disable them on {host.name} yourself: {commands}",
            severity="warning")

    return _on_each(hosts, one)


def _on_each(hosts: list[ControllerHostConfig],
             ask: Callable[[ControllerHostConfig], WriterFinding]) -> list[WriterFinding]:
    """`ask` of every host at once (bounded), the findings in inventory order."""
    found: dict[str, WriterFinding] = {}
    for host, finding, error in run_parallel(hosts, ask, max(1, min(8, len(hosts)))):
        if error is not None:
            raise error
        assert finding is not None
        found[host.name] = finding
    return [found[h.name] for h in hosts]


def version_findings(config: IssuConfig) -> list[WriterFinding]:
    """The release each cluster's config hosts run (the profile's `version` step over SSH)
    against the configured one: a host running another release refuses, naming both. A
    cluster without an inventory, or a profile without a version step, is a warning."""
    findings = []
    for side in ("old", "new"):
        cluster = config.old if side == "old" else config.new
        hosts = [h for h in cluster.controllers if "config" in h.roles]
        name = f"{side} version running"
        if not hosts or config.ssh is None:
            findings.append(WriterFinding(
                name, False, f"no [[{side}.controllers]] host with role config: cannot confirm "
                f"that {side} runs {cluster.version} ({side}.version)",
                f"check the release on {side}'s config nodes yourself", severity="warning"))
            continue
        executor = ControllerExecutor(config.ssh.known_hosts, config.ssh.connect_timeout_s,
                                      120, config.controller_profiles)
        findings += _on_each(hosts, _version_check(executor, side, cluster.version))
    return findings


def _version_check(executor: ControllerExecutor, side: str,
                   version: str) -> Callable[[ControllerHostConfig], WriterFinding]:
    from backends.versions import release_matches

    name = f"{side} version running"

    def one(host: ControllerHostConfig) -> WriterFinding:
        check = f"{name} on {host.name}"
        if "version" not in executor.profile(host.profile).steps:
            return WriterFinding(
                check, False, f"profile {host.profile} has no version step: cannot confirm "
                f"{version}", f"set controller_profiles.{host.profile}.version",
                severity="warning")
        target = SshTarget(host.name, host.address, host.ssh_port, host.ssh_user,
                           host.ssh_key)
        try:
            service, found = executor.version(target, host.profile)
        except ControllerError as exc:
            return WriterFinding(check, False, f"cannot tell: {exc}",
                                 f"check SSH to {host.name} and the version "
                                 f"step of profile {host.profile}")
        if release_matches(version, found):
            return WriterFinding(check, True, f"{service} {found}")
        return WriterFinding(
            check, False, f"{host.name} runs {found} ({service}), the config says "
            f"{side}.version = {version}",
            f"set {side}.version to the release {side} runs (or upgrade/downgrade "
            f"{host.name}): translation between the wrong releases would corrupt new")

    return one
