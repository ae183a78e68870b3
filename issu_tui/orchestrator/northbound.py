"""Northbound clients: their config files re-pointed at the new cluster, then restarted or
signalled.

The clients are listed in `northbound.toml` beside the config (or `--northbound FILE`):

    [[client]]
    kind = "neutron"            # neutron | k8s | vcenter | collector
    path = "/etc/neutron/plugins/opencontrail/ContrailPlugin.ini"
    pid_file = "/run/neutron/neutron-server.pid"   # optional: the process to signal
    signal = "SIGHUP"                              # default SIGHUP

A client on another host names it: `host = "neutron-1"`, a host of the controller inventory
(`[[old.controllers]]` or `[[new.controllers]]`, usually with role northbound). Its file is
then read, backed up, edited (the profile's INI step; a vcenter plugin's properties file:
its `key=value` lines, the rest kept) and read back over SSH, and
`service = "neutron-server"` (optional) is restarted or signalled through the host's
controller profile, then asked its status (it must run). Which of the two: the client's
`reload = "restart"` or `"signal"`, else the profile's `reload` table, whose built-in default
restarts neutron-server, kube-manager and the vCenter plugin (they read the api-server's
address only at start, as operators know: a SIGHUP leaves them on old) and signals the rest.
A client on this host (`pid_file`) can only be signalled.

- neutron:   `[APISERVER] api_server_ip`, `api_server_port`
- k8s:       `[VNC] vnc_endpoint_ip`, `vnc_endpoint_port` (contrail-kubernetes.conf)
- vcenter:   `api.hostname=`, `api.port=` lines (contrail-vcenter-plugin properties)
- collector: `[DEFAULT] collectors` (clients that cannot watch two analytics engines;
             Contrail daemons re-read their collector list on SIGHUP)

Files are rewritten atomically, keeping every other line and a `.issu-backup` copy.
"""

from __future__ import annotations

import json
import os
import signal
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, ValidationError

from issu_tui.config import ControllerHostConfig, IssuConfig
from issu_tui.journal import SWITCHED_FILE
from issu_tui.orchestrator.context import Context, OrchestratorError

KINDS = ("neutron", "k8s", "vcenter", "collector")
COLLECTOR_PORT = 8086


class NorthboundClient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    path: Path
    pid_file: Path | None = None
    signal: str = "SIGHUP"
    host: str | None = None     # a controller inventory host: the file is on it (SSH)
    service: str | None = None  # on that host: restarted or signalled through its profile
    reload: Literal["restart", "signal"] | None = None  # None: as the host's profile says


@dataclass(frozen=True)
class Edit:
    section: str | None  # None: a properties file (key=value lines, no sections)
    key: str
    value: str


def load_clients(path: Path | None) -> list[NorthboundClient]:
    """The clients listed in `path`. A missing file or an empty list is refused: finalize
    would otherwise switch nothing without a word (`--no-northbound` says so explicitly)."""
    if path is None or not path.exists():
        raise OrchestratorError(
            f"{path or 'northbound.toml'}: no northbound clients file. List the clients "
            "finalize re-points at the new cluster (runbook step 4), or finalize "
            "--no-northbound when you switch them yourself (recorded in the journal)")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OrchestratorError(f"{path}: cannot read: {exc}") from None
    if not data.get("client"):
        raise OrchestratorError(
            f"{path}: lists no [[client]]; add them, or finalize --no-northbound when you "
            "switch the northbound clients yourself")
    clients = []
    for i, raw in enumerate(data.get("client", [])):
        try:
            client = NorthboundClient.model_validate(raw)
        except ValidationError as exc:
            raise OrchestratorError(f"{path}: client.{i}: {exc.errors()[0]['msg']}") from None
        if client.kind not in KINDS:
            raise OrchestratorError(
                f"{path}: client.{i}.kind: {client.kind!r} is not one of {', '.join(KINDS)}")
        if client.host is not None:
            if not client.path.is_absolute() or client.pid_file is not None:
                raise OrchestratorError(
                    f"{path}: client.{i}: a client on host {client.host} needs an absolute "
                    "path, and `service` (signalled through the host's profile), not pid_file")
        elif client.service is not None:
            raise OrchestratorError(f"{path}: client.{i}: `service` needs `host`")
        elif client.reload == "restart":
            raise OrchestratorError(
                f"{path}: client.{i}: reload = \"restart\" needs `host` and `service` (issu "
                "restarts through the host's controller profile); a pid_file is signalled")
        if not client.path.is_absolute():
            client.path = (path.parent / client.path).resolve()
        if client.pid_file and not client.pid_file.is_absolute():
            client.pid_file = (path.parent / client.pid_file).resolve()
        if not hasattr(signal, client.signal):
            raise OrchestratorError(f"{path}: client.{i}.signal: unknown {client.signal!r}")
        clients.append(client)
    return clients


def inventory_problems(config: IssuConfig, path: Path) -> list[str]:
    """`issu config check`: every northbound host the clients file needs and the controller
    inventory lacks, or has without role northbound; and new's kube-manager host (a writer
    prepare-new stops) when k8s clients are listed. Nothing without an inventory."""
    hosts = {h.name: (side, i, h) for side in ("old", "new")
             for i, h in enumerate(getattr(config, side).controllers)}
    if not hosts or not path.exists():
        return []
    try:
        clients = load_clients(path)
    except OrchestratorError as exc:
        return [str(exc)]
    problems = []
    for i, client in enumerate(clients):
        if client.host is None:
            continue
        said = f"{path}: client.{i} ({client.kind} {client.path}): host {client.host}"
        if client.host not in hosts:
            problems.append(f"{said} is not in the controller inventory: add it to "
                            "[[old.controllers]] or [[new.controllers]] with role northbound")
            continue
        side, at, host = hosts[client.host]
        if "northbound" not in host.roles:
            problems.append(f"{said} ({side}.controllers.{at}) has no role northbound")
    if any(c.kind == "k8s" for c in clients) and not any(
            "northbound" in h.roles for h in config.new.controllers):
        problems.append(f"new.controllers: no host with role northbound, although {path} "
                        "lists a k8s client: new's kube-manager (a writer) would not be "
                        "stopped before pre-sync; add its host with role northbound")
    return problems


def edits_for(ctx: Context, client: NorthboundClient, side: str = "new") -> list[Edit]:
    """The settings that point `client` at `side`'s cluster (new: the switch; old: what a
    reverted file must show again)."""
    cluster = ctx.cluster(side)
    if client.kind == "collector":
        analytics = cluster.analytics
        if analytics is None:
            raise OrchestratorError(
                f"{ctx.config_path}: {side}.analytics: required to re-point {client.path}")
        host = urlparse(analytics.url).hostname
        return [Edit("DEFAULT", "collectors", f"{host}:{COLLECTOR_PORT}")]
    api = cluster.api_server
    if api is None:
        raise OrchestratorError(f"{ctx.config_path}: {side}.api_server: required to switch "
                                f"{client.path}")
    url = urlparse(api.url)
    host, port = url.hostname or "", str(url.port or 8082)
    if client.kind == "neutron":
        return [Edit("APISERVER", "api_server_ip", host),
                Edit("APISERVER", "api_server_port", port)]
    if client.kind == "k8s":
        return [Edit("VNC", "vnc_endpoint_ip", host), Edit("VNC", "vnc_endpoint_port", port)]
    return [Edit(None, "api.hostname", host), Edit(None, "api.port", port)]


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Set keys in an INI or properties text, keeping every other line as it was."""
    lines = text.splitlines()
    for edit in edits:
        lines = _apply_one(lines, edit)
    return "\n".join(lines) + "\n"


def _key_of(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped[0] in "#;[" or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()


def _apply_one(lines: list[str], edit: Edit) -> list[str]:
    out: list[str] = []
    section: str | None = None
    in_target = edit.section is None
    done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_target and not done and edit.section is not None:
                out.append(f"{edit.key} = {edit.value}")
                done = True
            section = stripped[1:-1].strip()
            in_target = section == edit.section
        elif in_target and not done and _key_of(line) == edit.key:
            sep = "=" if edit.section is None else " = "
            out.append(f"{edit.key}{sep}{edit.value}")
            done = True
            continue
        out.append(line)
    if not done:
        if edit.section is not None and not in_target:
            out.append(f"[{edit.section}]")
        sep = "=" if edit.section is None else " = "
        out.append(f"{edit.key}{sep}{edit.value}")
    return out


def switch_client(ctx: Context, client: NorthboundClient, *, fresh_backup: bool = False) -> str:
    """Rewrite one client's config and signal it; idempotent (the same content twice). The
    `.issu-backup` is made once per upgrade: `fresh_backup` replaces one left by an earlier
    upgrade (abort would otherwise restore that older file)."""
    if client.host is not None:
        return _switch_over_ssh(ctx, client, client.host, fresh_backup)
    try:
        text = client.path.read_text()
    except OSError as exc:
        raise OrchestratorError(f"{client.path}: cannot read: {exc.strerror}") from None
    new_text = apply_edits(text, edits_for(ctx, client))
    changed = new_text != text
    if changed:
        backup = client.path.with_name(client.path.name + BACKUP_SUFFIX)
        if fresh_backup or not backup.exists():
            backup.write_text(text)
        tmp = client.path.with_name(f".{client.path.name}.issu-tmp")
        tmp.write_text(new_text)
        os.chmod(tmp, client.path.stat().st_mode & 0o7777)
        os.replace(tmp, client.path)
    signalled = ""
    if client.pid_file is not None:
        try:
            pid = int(client.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise OrchestratorError(f"{client.pid_file}: no pid to signal: {exc}") from None
        try:
            os.kill(pid, getattr(signal, client.signal))
        except ProcessLookupError:
            raise OrchestratorError(
                f"{client.pid_file}: process {pid} is not running; start the {client.kind} "
                "client, it will read the new config") from None
        signalled = f", {client.signal} to pid {pid}"
    return f"{client.kind} {client.path}: {'rewritten' if changed else 'already new'}{signalled}"


def _inventory_host(ctx: Context, name: str) -> ControllerHostConfig:
    for host in (*ctx.config.old.controllers, *ctx.config.new.controllers):
        if host.name == name:
            return host
    known = [h.name for h in (*ctx.config.old.controllers, *ctx.config.new.controllers)]
    raise OrchestratorError(f"northbound client host {name!r} is not in the controller "
                            f"inventory (known: {', '.join(known) or 'none'})")


def _switch_over_ssh(ctx: Context, client: NorthboundClient, host_name: str,
                     fresh_backup: bool) -> str:
    """Back up, edit and read back one client's file on its host, then signal its service.
    The read-back must show every edit, else the step fails naming the key."""
    from backends.controller import ControllerError
    from issu_tui.orchestrator.controllers import executor, target

    host = _inventory_host(ctx, host_name)
    edits = edits_for(ctx, client)
    ex = executor(ctx)
    where, file = target(host), str(client.path)
    try:
        changed = bool(_missing(ex.read_file(where, file), edits))
        if changed:
            ex.backup_file(where, file, fresh=fresh_backup)
            if all(e.section is None for e in edits):  # a properties file (vcenter)
                ex.set_properties(where, file, [(e.key, e.value) for e in edits])
            else:
                ex.set_ini(where, host.profile, file,
                           [(e.section or "", e.key, e.value) for e in edits])
        after = ex.read_file(where, file)
    except ControllerError as exc:
        raise OrchestratorError(f"northbound {client.kind} on {host.name}: {exc}") from None
    wrong = _missing(after, edits)
    if wrong:
        raise OrchestratorError(f"northbound {client.kind} on {host.name}: {file} read back: "
                                + "; ".join(wrong))
    signalled = _reload_over_ssh(ex, where, host, client)
    return (f"{client.kind} {host.name}:{file}: "
            f"{'rewritten' if changed else 'already new'}, read back{signalled}")


def _missing(text: str, edits: list[Edit]) -> list[str]:
    """The edits `text` does not show (section, key and value as wanted), one line each."""
    values: dict[tuple[str | None, str], str] = {}
    section: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        key = _key_of(line)
        if key is not None:
            values.setdefault((section, key), stripped.split("=", 1)[1].strip())
    out = []
    for edit in edits:
        found = values.get((edit.section, edit.key))
        if found != edit.value:
            out.append(f"[{edit.section}] {edit.key} is {found!r}, not {edit.value!r}")
    return out


def read_client(ctx: Context, client: NorthboundClient) -> str:
    """The client's config file as it is now: over SSH on its `host`, else on this host."""
    if client.host is None:
        try:
            return client.path.read_text()
        except OSError as exc:
            raise OrchestratorError(f"northbound {client.kind} {client.path}: cannot read: "
                                    f"{exc}") from None
    from backends.controller import ControllerError
    from issu_tui.orchestrator.controllers import executor, target

    host = _inventory_host(ctx, client.host)
    try:
        return executor(ctx).read_file(target(host), str(client.path))
    except ControllerError as exc:
        raise OrchestratorError(f"northbound {client.kind} on {host.name}: {exc}") from None


def not_naming(ctx: Context, client: NorthboundClient, text: str, side: str) -> list[str]:
    """What `text` (the client's file) lacks to point at `side`'s cluster, one line each."""
    return _missing(text, edits_for(ctx, client, side))


# --------------------------------------------------------------------------- the way back
# switch-northbound records the clients it switches here (state_dir), so that abort can
# point them back even when the northbound file changed or was given on the command line.
BACKUP_SUFFIX = ".issu-backup"
# the backup, if any: "present" and its text, or "absent"
_READ_BACKUP_SCRIPT = 'if test -e "$1"; then echo present; cat -- "$1"; else echo absent; fi'
_RESTORE_SCRIPT = 'cp -p -- "$2" "$1.issu-tmp" && mv -f -- "$1.issu-tmp" "$1"'
_REMOVE_BACKUP_SCRIPT = 'rm -f -- "$1"'



def client_key(client: NorthboundClient) -> tuple[str | None, str]:
    return client.host, str(client.path)


def client_name(client: NorthboundClient) -> str:
    """How events and errors name a client: `neutron neutron-1:/etc/...` (kind, where)."""
    where = f"{client.host}:{client.path}" if client.host else str(client.path)
    return f"{client.kind} {where}"


def client_marker(step: str, client: NorthboundClient) -> str:
    """The journal marker of one client switched (read back, signalled) by finalize's
    `step` (switch-northbound, analytics): a retry skips it, abort and revert know it."""
    return f"finalize.{step}.client:{client.host or ''}:{client.path}"


def record_switched(ctx: Context, clients: list[NorthboundClient]) -> None:
    """Add `clients` to the record of those switched (kept across finalize runs, so abort
    points back every client any run switched)."""
    keys = {client_key(c) for c in clients}
    _write_record(ctx, [*(c for c in switched_clients(ctx) if client_key(c) not in keys),
                        *clients])


def _write_record(ctx: Context, clients: list[NorthboundClient]) -> None:
    path = ctx.config.state_dir / SWITCHED_FILE
    if not clients:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([c.model_dump(mode="json") for c in clients], indent=1))
    os.replace(tmp, path)


def switched_clients(ctx: Context) -> list[NorthboundClient]:
    path = ctx.config.state_dir / SWITCHED_FILE
    if not path.exists():
        return []
    try:
        return [NorthboundClient.model_validate(c) for c in json.loads(path.read_text())]
    except (OSError, ValueError, ValidationError) as exc:
        raise OrchestratorError(f"{path}: cannot read the switched northbound clients: {exc}; "
                                "point them back by hand from their .issu-backup files"
                                ) from None


def skipped_marker(client: NorthboundClient) -> str:
    """The journal marker of a client abort was told to leave (`--skip-client`)."""
    return f"abort.skipped-client:{client.host or ''}:{client.path}"


def matching_clients(clients: list[NorthboundClient], name: str) -> list[NorthboundClient]:
    """The recorded clients `name` says: a host (every client on it), `HOST:PATH`, or the
    path of a client on the executor's host."""
    return [c for c in clients
            if name in (c.host, f"{c.host}:{c.path}" if c.host else str(c.path))]


def skip_refusal(ctx: Context, names: list[str]) -> str | None:
    """Why `--skip-client` names cannot be taken (one that is no switched client), asked
    before abort changes anything."""
    clients = switched_clients(ctx)
    unknown = [n for n in names if not matching_clients(clients, n)]
    if not unknown:
        return None
    recorded = ", ".join(client_name(c) for c in clients) or "none"
    return (f"--skip-client {', '.join(unknown)}: no switched northbound client of that host "
            f"or path (switched: {recorded}); name a client's host, HOST:PATH, or its path")


def skip_clients(ctx: Context, names: list[str]) -> list[str]:
    """Leave the clients `names` says out of the way back, for good: each dropped from the
    record (abort no longer waits for its host), journaled as NOT pointed back, with what
    the operator does by hand. The lines for abort's summary."""
    said = []
    for client in [c for c in switched_clients(ctx)
                   if any(matching_clients([c], n) for n in names)]:
        where = f"on {client.host}" if client.host else "on the executor's host"
        line = (f"northbound: {client_name(client)} NOT pointed back at old (--skip-client): "
                f"by hand, restore {client.path}{BACKUP_SUFFIX} over {client.path} {where} "
                f"(or set it to old's address) and restart or signal "
                f"{client.service or client.kind} (runbook 8)")
        ctx.event("abort", line, level="warning", client=client_name(client), skipped=True)
        ctx.mark_step(skipped_marker(client))
        _write_record(ctx, [c for c in switched_clients(ctx)
                            if client_key(c) != client_key(client)])
        said.append(line)
    return said


def revert_clients(ctx: Context) -> str:
    """The inverse of switch-northbound (abort, while new is still fenced) and of analytics
    (revert): every recorded client pointed back at old, best-effort: one that cannot be
    (its host unreachable) does not keep the others, nor abort's later inverses, from
    running. Each client pointed back leaves the record; those left are named in the error
    raised at the end, and a re-run acts on them only."""
    clients = switched_clients(ctx)
    if not clients:
        return "northbound: no client was switched"
    done, failed = [], []
    for client in clients:
        try:
            done.append(_revert_one(ctx, client))
        except OrchestratorError as exc:
            failed.append(f"{client_name(client)} ({exc})")
            ctx.event("abort", f"northbound: {client_name(client)} NOT pointed back at old: "
                      f"{exc}", level="error", client=client_name(client))
            continue
        _write_record(ctx, [c for c in switched_clients(ctx)
                            if client_key(c) != client_key(client)])
        for step in ("switch-northbound", "analytics"):
            ctx.journal.clear_steps(client_marker(step, client))
    if failed:
        raise OrchestratorError(
            f"northbound: {len(failed)} client(s) NOT pointed back at old: "
            + "; ".join(failed) + ". Pointed back: " + ("; ".join(done) or "none")
            + ". Run abort again once their hosts answer (only those are retried); a host "
            "that will not come back: abort --skip-client HOST, then point its clients back "
            "by hand from their .issu-backup files")
    return "northbound pointed back at old: " + "; ".join(done)


def _revert_one(ctx: Context, client: NorthboundClient) -> str:
    """One client pointed back at old. Its file is read first: one that names old already
    (never edited: a switch that failed before its edit, or pointed back by hand) is left as
    it is, and its backup (maybe one of an earlier upgrade) is not restored over it."""
    edits = edits_for(ctx, client, "old")
    if client.host is not None:
        return _revert_over_ssh(ctx, client, client.host, edits)
    backup = client.path.with_name(client.path.name + BACKUP_SUFFIX)
    where = f"northbound {client.kind} {client.path}"
    try:
        restored = bool(_missing(client.path.read_text(), edits))
        if restored:
            if not backup.exists():
                raise OrchestratorError(
                    f"{where}: no backup to restore and the file does not name old: "
                    + "; ".join(_missing(client.path.read_text(), edits)))
            saved = backup.read_bytes()
            wrong = _missing(saved.decode(errors="replace"), edits)
            if wrong:  # checked before anything is replaced: the file and its backup stay
                raise OrchestratorError(
                    f"{where}: its backup {backup} does not name old ("
                    + "; ".join(wrong) + "): nothing restored; point it back by hand")
            tmp = client.path.with_name(f".{client.path.name}.issu-tmp")
            tmp.write_bytes(saved)
            os.chmod(tmp, backup.stat().st_mode & 0o7777)
            os.replace(tmp, client.path)
            wrong = _missing(client.path.read_text(), edits)
            if wrong:
                raise OrchestratorError(f"{where}: read back after the restore does not "
                                        "name old: " + "; ".join(wrong))
    except OSError as exc:
        raise OrchestratorError(f"{where}: {exc}") from None
    signalled = _signal_local(client)  # also on a re-run: the client may still hold new
    backup.unlink(missing_ok=True)
    return f"{client.kind} {client.path}: {'restored' if restored else 'names old'}{signalled}"


def _signal_local(client: NorthboundClient) -> str:
    if client.pid_file is None:
        return ""
    try:
        pid = int(client.pid_file.read_text().split()[0])
        os.kill(pid, getattr(signal, client.signal))
    except (OSError, ValueError, IndexError) as exc:
        raise OrchestratorError(f"{client.pid_file}: cannot signal the {client.kind} client: "
                                f"{exc}") from None
    return f", {client.signal} to pid {pid}"


def _revert_over_ssh(ctx: Context, client: NorthboundClient, host_name: str,
                     edits: list[Edit]) -> str:
    from backends.controller import ControllerError
    from issu_tui.orchestrator.controllers import executor, target

    host = _inventory_host(ctx, host_name)
    ex = executor(ctx)
    where, file = target(host), str(client.path)
    backup = file + BACKUP_SUFFIX
    where_said = f"northbound {client.kind} on {host.name}"
    try:
        restored = bool(_missing(ex.read_file(where, file), edits))
        if restored:
            found, _, saved = ex.run_script(where, f"read {backup}", _READ_BACKUP_SCRIPT,
                                            [backup]).partition("\n")
            if found.strip() != "present":
                raise OrchestratorError(f"{where_said}: {file} does not name old and has no "
                                        f"backup to restore ({backup}): point it back by hand")
            wrong = _missing(saved, edits)
            if wrong:  # checked before anything is replaced: the file and its backup stay
                raise OrchestratorError(
                    f"{where_said}: its backup {backup} does not name old ("
                    + "; ".join(wrong) + "): nothing restored; point it back by hand")
            ex.run_script(where, f"restore {file}", _RESTORE_SCRIPT, [file, backup])
            wrong = _missing(ex.read_file(where, file), edits)
            if wrong:
                raise OrchestratorError(f"{where_said}: {file} read back after the restore "
                                        "does not name old: " + "; ".join(wrong))
    except ControllerError as exc:
        raise OrchestratorError(f"{where_said}: {exc}") from None
    signalled = _reload_over_ssh(ex, where, host, client)  # also on a re-run
    try:
        ex.run_script(where, f"remove {backup}", _REMOVE_BACKUP_SCRIPT, [backup])
    except ControllerError as exc:
        raise OrchestratorError(f"{where_said}: {exc}") from None
    return (f"{client.kind} {host.name}:{file}: {'restored' if restored else 'names old'}, "
            f"read back{signalled}")


def _reload_over_ssh(ex: Any, where: Any, host: ControllerHostConfig,
                     client: NorthboundClient) -> str:
    """Make the client's service take its file: restart it or signal it through its host's
    profile, then read its status back (it must run: a restart that did not come up, or a
    signal that killed it, is an error naming host and service). ', neutron-server
    restarted, running' or ', SIGHUP to X, running'; '' without a service."""
    from backends.controller import ControllerError

    if client.service is None:
        return ""
    said = f"northbound {client.kind} on {host.name}"
    try:
        how = client.reload or ex.profile(host.profile).reload_for(client.service)
        if how == "restart":
            ex.act(where, host.profile, "restart", [client.service])
            done = f", {client.service} restarted"
        else:
            ex.act(where, host.profile, "signal", [client.service],
                   signal=client.signal.removeprefix("SIG"))
            done = f", {client.signal} to {client.service}"
        [state] = ex.status(where, host.profile, [client.service])
    except ControllerError as exc:
        raise OrchestratorError(f"{said}: {exc}") from None
    if not state.running:
        raise OrchestratorError(f"{said}: {client.service} is {state.state!r} after "
                                f"{'its restart' if how == 'restart' else client.signal}: "
                                "it does not run with the new file; see its log on "
                                f"{host.name}")
    return f"{done}, running"
