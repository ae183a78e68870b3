"""Upgrade, roll back and probe one compute node over SSH, through a command profile.

A profile is a set of steps, each an argv template (a string split with `shlex.split`,
then each item formatted with the variables below). Steps, in the order an upgrade runs
them: probe, drain, stop, install, point, restart, health, gap, undrain. Only probe,
install, point, restart and health are required; an empty template skips a step.

Variables: `{name}` `{address}` (the compute), `{version}` `{cluster}` (the target),
`{control_nodes}` `{collectors}` `{dns_servers}` (one argv item, space-separated
`address:port`, with Contrail's default ports 5269 / 8086 / 53 added where missing, the
`contrail-vrouter-agent.conf` style), `{control_nodes_csv}` `{collectors_csv}`
`{dns_servers_csv}` (comma-joined addresses without ports, the container env style),
`{health_timeout_s}`, and any extra key of the profile (e.g. the demo's `{host}`): an
item that is exactly `{var}` expands to `shlex.split` of its value (several argv items),
each filled with the variables above (`compose_file = "/srv/{name}/docker-compose.yaml"`).
The `container` profile's variables: `docker` (the engine's command), `compose_file`,
`env_file`, `introspect` (the agent's HTTP address).

Config `profiles.<name>` overrides steps of a built-in profile of the same name, or defines
a new profile with `base = "<built-in>"`; other keys are profile variables.

Output of the probe step: a JSON object, or `key=value` lines, with `version`,
`control_nodes`, `collectors`, `agent_state` (lists space- or comma-separated).
Output of the gap step: a number of milliseconds, or JSON with `gap_ms`.
"""

from __future__ import annotations

import json
import re
import shlex
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from backends.hostport import DEFAULT_PORTS, host_of, with_port
from backends.ssh import (
    CommandResult,
    SshError,
    SshExecutor,
    SshSession,
    SshTarget,
    quote_argv,
    run_parallel,
)
from backends.versions import release_matches

STEPS = ("probe", "drain", "stop", "install", "point", "restart", "health", "gap", "undrain")
REQUIRED_STEPS = ("probe", "install", "point", "restart", "health")
ACTION_STEPS = STEPS[1:]  # what an upgrade or rollback runs after its first probe
LIST_VARS = ("control_nodes", "collectors", "dns_servers")
HEALTHY_AGENT_STATES = ("connected",)


class ProfileError(Exception):
    """A command profile is unusable; the message names the profile, step and template."""


class ComputeError(Exception):
    """A compute could not be probed; `step` holds the failed command when there was one."""

    def __init__(self, message: str, step: StepResult | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class ComputeTarget:
    name: str
    address: str
    port: int
    user: str
    key_path: Path

    def ssh(self) -> SshTarget:
        return SshTarget(self.name, self.address, self.port, self.user, Path(self.key_path))


@dataclass(frozen=True)
class ClusterTarget:
    name: str
    version: str
    control_nodes: list[str]
    collectors: list[str]
    dns_servers: list[str]


@dataclass(frozen=True)
class StepResult:
    step: str
    command: str  # display form: the argv quoted as it was sent
    exit_code: int  # -1: timed out or the connection failed
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        """The last meaningful line of output, for an error message."""
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
            if lines:
                return lines[-1][:300]
        return "(no output)"


@dataclass(frozen=True)
class ProbeResult:
    version: str
    control_nodes: list[str]
    collectors: list[str]
    agent_state: str

    def points_at(self, cluster: ClusterTarget) -> bool:
        """True if the agent's control nodes are the cluster's (ports aside)."""
        return _hosts(self.control_nodes) == _hosts(cluster.control_nodes)

    def runs(self, release: str) -> bool:
        """True if the installed package version is a build of `release` (`5.0.0` matches
        `5.0.0-0.40`, `2:5.0.0~ubuntu18.04`, `5.0.0-1.el7`)."""
        return release_matches(release, self.version)

    def is_on(self, cluster: ClusterTarget) -> bool:
        return self.runs(cluster.version) and self.points_at(cluster)


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    error: str | None
    gap_ms: float | None
    steps: list[StepResult]
    probe: ProbeResult | None


def _hosts(items: Iterable[str]) -> set[str]:
    return {host_of(item) for item in items}


# --------------------------------------------------------------------------- profiles

_PROBE_APT = r"""
conf=/etc/contrail/contrail-vrouter-agent.conf
get() { awk -F= -v s="[$1]" -v k="$2" '
  /^[ \t]*\[/ { gsub(/[ \t]/, ""); cur = $0; next }
  cur == s { key = $1; gsub(/[ \t]/, "", key)
             if (key == k) { sub(/^[^=]*=[ \t]*/, ""); print; exit } }
' "$conf"; }
echo "version=$(dpkg-query -W -f='${Version}' contrail-vrouter-agent 2>/dev/null)"
echo "control_nodes=$(get CONTROL-NODE servers)"
echo "collectors=$(get DEFAULT collectors)"
if systemctl is-active --quiet contrail-vrouter-agent; then
  if curl -fsS --max-time 5 http://127.0.0.1:8085/Snh_AgentXmppConnectionStatusReq 2>/dev/null \
      | grep -q Established; then echo agent_state=connected; else echo agent_state=running; fi
else echo agent_state=stopped; fi
"""

_PROBE_YUM = _PROBE_APT.replace(
    "dpkg-query -W -f='${Version}' contrail-vrouter-agent",
    "rpm -q --qf '%{VERSION}' contrail-vrouter-agent",
)

# The config writers below never build a program from a value: values reach awk through
# ENVIRON (awk -v would interpret backslashes; sed would read `|`, `&`, `\1`, flags such as
# `w FILE` or `e`). Every argument is checked before anything is written, the file is
# rewritten through a copy (same mode and owner) and replaced in one rename; a value with a
# line break, which cannot be stored on one line, is refused and nothing changes.
_CHECK_ARGS = r"""
f=$1; shift
nl='
'
cr=$(printf '\r')
bad() { echo "$f: $*; nothing was changed" >&2; exit 2; }
[ -f "$f" ] || bad "no such file"
i=0 s= k=
for a in "$@"; do
  i=$((i + 1))
  case "$w.$((i % w))" in
    3.1) s=$a; case $s in ''|*[][=[:space:]]*) bad "invalid section name: $s";; esac;;
    3.2) k=$a; case $k in ''|*[][=[:space:]]*) bad "invalid key: $k";; esac;;
    2.1) k=$a; case $k in ''|[!A-Za-z_]*|*[!A-Za-z0-9_]*) bad "invalid variable name: $k";; esac;;
    *.0) case $a in *"$nl"*|*"$cr"*) bad "${s:+[$s] }$k: the value contains a line break";; esac;;
  esac
done
[ $((i % w)) -eq 0 ] || bad "arguments are not complete tuples"
tmp=$(mktemp "$f.XXXXXX") || exit 1
trap 'rm -f "$tmp" "$tmp.new"' EXIT
cp -p "$f" "$tmp" || exit 1
"""

# Sets keys of an INI file, keeping every other line: file, then section key value triples.
# Every line of the key in the section gets the value; a missing key is added at the end of
# its section, a missing section at the end of the file.
SET_INI_SCRIPT = "w=3" + _CHECK_ARGS + r"""
while [ $# -ge 3 ]; do
  S=$1 K=$2 V=$3 awk '
    BEGIN { s = "[" ENVIRON["S"] "]"; k = ENVIRON["K"]; v = ENVIRON["V"] }
    function flush() { if (insec && !done) { print k "=" v; done = 1 } }
    /^[ \t]*\[/ { h = $0; gsub(/[ \t]/, "", h); if (insec) flush(); insec = (h == s) }
    insec { key = $0; sub(/=.*/, "", key); gsub(/[ \t]/, "", key)
            if (key == k) { print k "=" v; done = 1; next } }
    { print }
    END { if (insec) flush(); else if (!done) { print s; print k "=" v } }
  ' "$tmp" > "$tmp.new" && cat "$tmp.new" > "$tmp" || exit 1
  shift 3
done
mv "$tmp" "$f" || exit 1
"""

_HEALTH_PKG = r"""
deadline=$(( $(date +%s) + ${1%.*} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if systemctl is-active --quiet contrail-vrouter-agent && \
     curl -fsS --max-time 5 http://127.0.0.1:8085/Snh_AgentXmppConnectionStatusReq 2>/dev/null \
       | grep -q Established; then echo "agent connected"; exit 0; fi
  sleep 3
done
echo "contrail-vrouter-agent has no established XMPP session after $1 s" >&2; exit 1
"""



def script_item(text: str) -> str:
    """A shell script as one literal template item (its braces are not variables)."""
    return shlex.quote(text.replace("{", "{{").replace("}", "}}"))


_AGENT_CONF = "/etc/contrail/contrail-vrouter-agent.conf"
_POINT_PKG = (
    f"sh -c {script_item(SET_INI_SCRIPT)} set-ini {_AGENT_CONF} "
    "CONTROL-NODE servers {control_nodes} DEFAULT collectors {collectors} "
    "DNS servers {dns_servers}"
)

# The container profile runs `{docker} compose --env-file {env_file} -f {compose_file}`: the
# compose file names its image `...contrail-vrouter-agent:${CONTRAIL_VERSION}`, so the env file
# says which release runs. Its scripts take the compose command as their last arguments.
_COMPOSE_CMD = "{docker} compose --env-file {env_file} -f {compose_file}"
_AGENT_RUNNING = '"$@" ps --status running -q | grep -q .'
_XMPP_UP = ('curl -fsS --max-time 5 "http://$introspect/Snh_AgentXmppConnectionStatusReq" '
            "2>/dev/null | grep -q Established")
_PROBE_CONTAINER = rf"""
env=$1 introspect=$2; shift 2
get() {{ sed -n "s/^$1=//p" "$env" | tail -n 1 | tr -d '"'; }}
echo "version=$(get CONTRAIL_VERSION)"
echo "control_nodes=$(get CONTROL_NODES)"
echo "collectors=$(get ANALYTICS_NODES)"
if {_AGENT_RUNNING}; then
  if {_XMPP_UP}; then echo agent_state=connected; else echo agent_state=running; fi
else echo agent_state=stopped; fi
"""
# Sets variables of an env file (KEY=value lines): file, then key value pairs. Every line of
# the key gets the value; a missing key is appended.
_SET_ENV = "w=2" + _CHECK_ARGS + r"""
while [ $# -ge 2 ]; do
  K=$1 V=$2 awk '
    BEGIN { k = ENVIRON["K"]; v = ENVIRON["V"]; n = length(k) + 1 }
    substr($0, 1, n) == k "=" { print k "=" v; done = 1; next }
    { print }
    END { if (!done) print k "=" v }
  ' "$tmp" > "$tmp.new" && cat "$tmp.new" > "$tmp" || exit 1
  shift 2
done
mv "$tmp" "$f" || exit 1
"""
_HEALTH_CONTAINER = rf"""
timeout=$1 introspect=$2; shift 2
deadline=$(( $(date +%s) + ${{timeout%.*}} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if {_AGENT_RUNNING} && {_XMPP_UP}; then echo "agent connected"; exit 0; fi
  sleep 3
done
echo "the vrouter-agent container has no established XMPP session after $timeout s" >&2; exit 1
"""

BUILTIN_PROFILES: dict[str, dict[str, str]] = {
    "package-apt": {
        "probe": f"sh -c {script_item(_PROBE_APT)} probe",
        "stop": "systemctl stop contrail-vrouter-agent",
        "install": (
            # The lock timeout: an install left running by a killed executor (or an
            # unattended upgrade) is waited for, not a failure.
            "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
            "-o DPkg::Lock::Timeout=300 "
            "-o Dpkg::Options::=--force-confold contrail-vrouter-agent={version} "
            "contrail-vrouter-utils={version} contrail-vrouter-dkms={version}"
        ),
        "point": _POINT_PKG,
        "restart": "systemctl restart contrail-vrouter-agent",
        "health": f"sh -c {script_item(_HEALTH_PKG)} health {{health_timeout_s}}",
    },
    "package-yum": {
        "probe": f"sh -c {script_item(_PROBE_YUM)} probe",
        "stop": "systemctl stop contrail-vrouter-agent",
        "install": (
            "sh -c 'yum -y install \"$@\" || yum -y downgrade \"$@\"' install "
            "contrail-vrouter-agent-{version} contrail-vrouter-utils-{version} "
            "contrail-vrouter-{version}"
        ),
        "point": _POINT_PKG,
        "restart": "systemctl restart contrail-vrouter-agent",
        "health": f"sh -c {script_item(_HEALTH_PKG)} health {{health_timeout_s}}",
    },
    "container": {
        "docker": "docker",  # the engine's command: docker, or a docker-compatible one
        "compose_file": "/etc/contrail/vrouter/docker-compose.yaml",
        "env_file": "/etc/contrail/common_vrouter.env",
        "introspect": "127.0.0.1:8085",  # the agent's introspect (HTTP) address
        "probe": f"sh -c {script_item(_PROBE_CONTAINER)} probe {{env_file}} {{introspect}} "
                 f"{_COMPOSE_CMD}",
        "stop": f"{_COMPOSE_CMD} down",
        # The release's image first (pull from the registry, or found already loaded): the
        # env file changes only once the image is there.
        "install": f"env CONTRAIL_VERSION={{version}} {_COMPOSE_CMD} pull",
        "point": (
            f"sh -c {script_item(_SET_ENV)} point {{env_file}} CONTRAIL_VERSION {{version}} "
            "CONTROL_NODES {control_nodes_csv} ANALYTICS_NODES {collectors_csv} "
            "DNS_NODES {dns_servers_csv}"
        ),
        "restart": f"{_COMPOSE_CMD} up -d",
        "health": f"sh -c {script_item(_HEALTH_CONTAINER)} health {{health_timeout_s}} "
                  f"{{introspect}} {_COMPOSE_CMD}",
    },
    "demo": {
        "host": "python3 -m demo.compute.host",
        "probe": "{host} status",
        "drain": "{host} maintenance on",
        "stop": "{host} stop-agent",
        "install": "{host} install --version {version} --lock-timeout 300",
        "point": (
            "{host} configure --control-nodes {control_nodes} --collectors {collectors} "
            "--dns {dns_servers}"
        ),
        "restart": "{host} start-agent",
        "health": (
            "{host} health --expect-version {version} --expect-control-nodes {control_nodes} "
            "--timeout {health_timeout_s}"
        ),
        "gap": "{host} probe-gap",
        "undrain": "{host} maintenance off",
    },
}

_BUILTIN_VARS = {"name", "address", "version", "cluster", "health_timeout_s",
                 *LIST_VARS, *(f"{v}_csv" for v in LIST_VARS)}


@dataclass(frozen=True)
class CommandProfile:
    name: str
    steps: dict[str, str]  # step -> template ("" or absent: skipped)
    variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, name: str, spec: Mapping[str, str]) -> CommandProfile:
        steps = {k: v for k, v in spec.items() if k in STEPS}
        variables = {k: v for k, v in spec.items() if k not in STEPS and k != "base"}
        profile = cls(name, steps, variables)
        profile.validate()
        return profile

    def has(self, step: str) -> bool:
        return bool(self.steps.get(step, "").strip())

    def validate(self) -> None:
        for var in self.variables:
            if var in _BUILTIN_VARS:
                raise ProfileError(f"profile {self.name}: variable {var!r} is reserved")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise ProfileError(f"profile {self.name}: {var!r} is not a step "
                                   f"({', '.join(STEPS)}) nor a valid variable name")
        missing = [s for s in REQUIRED_STEPS if not self.has(s)]
        if missing:
            raise ProfileError(f"profile {self.name}: required step(s) {', '.join(missing)} "
                               "missing")
        sample = {v: "x" for v in _BUILTIN_VARS}
        for step in self.steps:
            if self.has(step):
                self.render(step, sample)

    def render(self, step: str, values: Mapping[str, str]) -> list[str]:
        """The argv of `step`: split the template first, then fill each item (no shell)."""
        return render_template(self.name, step, self.steps.get(step, ""), self.variables,
                               values)


def render_template(profile: str, step: str, template: str, variables: Mapping[str, str],
                    values: Mapping[str, str]) -> list[str]:
    """Split `template` with shlex, then format each item with `variables` and `values`; an
    item that is exactly `{var}` of a profile variable expands to its shlex-split items."""
    try:
        tokens = shlex.split(template)
    except ValueError as exc:
        raise ProfileError(f"profile {profile}, step {step}: template {template!r}: "
                           f"{exc}") from None
    flat = {**variables, **values}
    argv: list[str] = []
    for token in tokens:
        whole = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", token)
        if whole and whole.group(1) in variables:
            # A variable's items may name the call's values ({name}, {address}): a path or
            # address per compute. Variables do not refer to each other.
            for item in shlex.split(variables[whole.group(1)]):
                try:
                    argv.append(string.Formatter().vformat(item, (), values))
                except KeyError as exc:
                    raise ProfileError(f"profile {profile}, variable {whole.group(1)}: "
                                       f"unknown variable {{{exc.args[0]}}} in "
                                       f"{variables[whole.group(1)]!r}") from None
                except (ValueError, IndexError) as exc:
                    raise ProfileError(f"profile {profile}, variable {whole.group(1)}: bad "
                                       f"template {variables[whole.group(1)]!r}: {exc}"
                                       ) from None
            continue
        try:
            argv.append(string.Formatter().vformat(token, (), flat))
        except KeyError as exc:
            raise ProfileError(f"profile {profile}, step {step}: unknown variable "
                               f"{{{exc.args[0]}}} in {template!r}") from None
        except (ValueError, IndexError) as exc:
            raise ProfileError(f"profile {profile}, step {step}: bad template "
                               f"{template!r}: {exc}") from None
    if not argv:
        raise ProfileError(f"profile {profile}, step {step}: template is empty")
    return argv


def build_profiles(overrides: Mapping[str, Mapping[str, str]] | None = None
                   ) -> dict[str, CommandProfile]:
    """The built-in profiles with the config's `profiles` table applied."""
    specs: dict[str, dict[str, str]] = {k: dict(v) for k, v in BUILTIN_PROFILES.items()}
    for name, override in (overrides or {}).items():
        base = override.get("base", name if name in BUILTIN_PROFILES else "")
        if base and base not in BUILTIN_PROFILES:
            raise ProfileError(f"profiles.{name}.base: unknown profile {base!r} "
                               f"(built-in: {', '.join(BUILTIN_PROFILES)})")
        specs[name] = {**BUILTIN_PROFILES.get(base, {}), **override}
    return {name: CommandProfile.build(name, spec) for name, spec in specs.items()}


# --------------------------------------------------------------------------- parsing


def parse_probe(output: str) -> ProbeResult:
    """Parse the probe step's output (JSON object or key=value lines)."""
    text = output.strip()
    data: dict[str, object] = {}
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except (ValueError, RecursionError) as exc:  # not JSON, nested too deeply, a huge int
            raise ValueError(f"probe printed invalid JSON: {type(exc).__name__}: "
                             f"{str(exc)[:200]}") from None
        if not isinstance(loaded, dict):
            raise ValueError("probe printed JSON that is not an object")
        data = loaded
    else:
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                data[key.strip()] = value.strip()
    if "version" not in data:
        raise ValueError("probe output has no version")

    def as_list(value: object) -> list[str]:
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v for v in re.split(r"[\s,]+", str(value or "")) if v]

    return ProbeResult(
        version=str(data.get("version") or ""),
        control_nodes=as_list(data.get("control_nodes")),
        collectors=as_list(data.get("collectors")),
        agent_state=str(data.get("agent_state") or "unknown"),
    )


def parse_gap(output: str) -> float | None:
    text = output.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text).get("gap_ms")
            return float(value) if isinstance(value, int | float) else None
        except (ValueError, AttributeError, RecursionError, OverflowError):
            return None  # not JSON, not an object, nested too deeply, a number too large
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(match.group()) if match else None


# --------------------------------------------------------------------------- executor

StepCallback = Callable[[StepResult], None]


PRECONNECT_THREADS = 8
WARM_MAX_AGE_S = 60.0  # an older connection opened ahead is replaced (idle links get cut)


def _close_quietly(future: Future[SshSession]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class ComputeExecutor:
    """Probe, upgrade and roll back computes; batching and policy belong to the caller."""

    def __init__(self, known_hosts: Path, connect_timeout_s: float = 10.0,
                 command_timeout_s: float = 1800.0,
                 profiles: Mapping[str, Mapping[str, str]] | None = None,
                 health_timeout_s: float = 300.0) -> None:
        self.ssh = SshExecutor(known_hosts, connect_timeout_s, command_timeout_s)
        self.profiles = build_profiles(profiles)
        self.health_timeout_s = health_timeout_s
        # connections opened ahead for computes about to start (see preconnect)
        self._warm: dict[str, tuple[float, Future[SshSession]]] = {}
        self._warm_lock = threading.Lock()
        self._connector: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- connections
    def preconnect(self, target: ComputeTarget) -> None:
        """Open the SSH connection of a compute about to start, in the background, so its
        action begins with the handshake done (while the running computes wait on their
        remote commands). Host keys are checked as always; an action that does not find
        it, or finds it failed, dropped or older than WARM_MAX_AGE_S, connects itself."""
        with self._warm_lock:
            if target.name in self._warm:
                return
            if self._connector is None:
                self._connector = ThreadPoolExecutor(max_workers=PRECONNECT_THREADS,
                                                     thread_name_prefix="ssh-preconnect")
            future = self._connector.submit(self.ssh.connect, target.ssh())
            self._warm[target.name] = (time.monotonic(), future)

    def _session(self, target: ComputeTarget) -> SshSession:
        with self._warm_lock:
            warm = self._warm.pop(target.name, None)
        if warm is not None:
            opened, future = warm
            try:
                session = future.result()
            except SshError:
                session = None  # e.g. unreachable a moment ago: one more try, now
            if session is not None:
                if session.active and time.monotonic() - opened < WARM_MAX_AGE_S:
                    return session
                session.close()
        return self.ssh.connect(target.ssh())

    def close_warm(self) -> None:
        """Close the connections opened ahead and not used (a run stopped or done)."""
        with self._warm_lock:
            warm, self._warm = self._warm, {}
            connector, self._connector = self._connector, None
        for _, future in warm.values():
            future.add_done_callback(_close_quietly)
        if connector is not None:
            connector.shutdown(wait=False, cancel_futures=True)  # none opens after the run

    def profile(self, name: str) -> CommandProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ProfileError(f"unknown command profile {name!r} "
                               f"(known: {', '.join(sorted(self.profiles))})") from None

    # ----------------------------------------------------------------- probe
    def probe(self, target: ComputeTarget, profile: str) -> ProbeResult:
        """The compute's installed version, agent config and agent state."""
        prof = self.profile(profile)
        try:
            with self.ssh.connect(target.ssh()) as session:
                step = self._run(session, prof, "probe", self._values(target, None))
        except SshError as exc:  # (the SSH error stays the cause: preflight's advice)
            raise ComputeError(f"{target.name}: probe: {exc}") from exc
        return self._parse_probe(target, step)

    def probe_many(self, targets: Iterable[tuple[ComputeTarget, str]], parallel: int = 10
                   ) -> Iterator[tuple[ComputeTarget, ProbeResult | None, str | None]]:
        """Probe many computes, at most `parallel` at once: (target, result, error)."""
        for (target, _), result, error in run_parallel(
                targets, lambda tp: self.probe(tp[0], tp[1]), parallel):
            yield target, result, (str(error) if error else None)

    def _parse_probe(self, target: ComputeTarget, step: StepResult) -> ProbeResult:
        if not step.ok:
            raise ComputeError(f"{target.name}: probe failed (exit {step.exit_code}): "
                               f"{step.summary()}", step)
        try:
            return parse_probe(step.stdout)
        except ValueError as exc:
            raise ComputeError(f"{target.name}: probe output not understood: {exc}",
                               step) from None

    # ----------------------------------------------------------------- actions
    def upgrade(self, target: ComputeTarget, profile: str, to: ClusterTarget,
                on_step: StepCallback | None = None, *, force: bool = False,
                on_start: Callable[[str], None] | None = None) -> ActionResult:
        """Reinstall `target` at `to.version` and point its agent at `to`'s cluster."""
        return self._action("upgrade", target, profile, to, on_step, on_start, force)

    def rollback(self, target: ComputeTarget, profile: str, to: ClusterTarget,
                 on_step: StepCallback | None = None, *, force: bool = False,
                 on_start: Callable[[str], None] | None = None) -> ActionResult:
        """Reinstall the old release (`to`, the old cluster) and point the agent back."""
        return self._action("rollback", target, profile, to, on_step, on_start, force)

    def _action(self, action: str, target: ComputeTarget, profile: str, to: ClusterTarget,
                on_step: StepCallback | None, on_start: Callable[[str], None] | None,
                force: bool) -> ActionResult:
        prof = self.profile(profile)
        values = self._values(target, to)
        steps: list[StepResult] = []

        def run(session: SshSession, step: str) -> StepResult:
            if on_start:
                on_start(step)
            result = self._run(session, prof, step, values)
            steps.append(result)
            if on_step:
                on_step(result)
            return result

        try:
            session = self._session(target)
        except SshError as exc:
            return ActionResult(False, f"{action} {target.name}: {exc}", None, steps, None)
        with session:
            try:
                first = run(session, "probe")
                before = self._parse_probe(target, first)
            except ComputeError as exc:
                return ActionResult(False, f"{action} {target.name}: {exc}", None, steps, None)
            if not force and before.is_on(to) and before.agent_state in HEALTHY_AGENT_STATES:
                # Already there (e.g. a resumed run): only confirm health, redo nothing.
                health = run(session, "health")
                if health.ok:
                    return ActionResult(True, None, None, steps, before)
            error: str | None = None
            # A failed step ends the action: a drained compute stays drained (the operator
            # decides; a rollback runs undrain at its end).
            for step in ACTION_STEPS:
                if not prof.has(step):
                    continue
                result = run(session, step)
                if not result.ok:
                    how = "timed out" if result.exit_code == -1 else f"exit {result.exit_code}"
                    error = (f"{action} {target.name}: step {step} failed ({how}): "
                             f"{result.summary()}")
                    break
            gap = next((parse_gap(s.stdout) for s in steps if s.step == "gap" and s.ok), None)
            after: ProbeResult | None = None
            try:
                after = self._parse_probe(target, run(session, "probe"))
            except ComputeError as exc:
                error = error or f"{action} {target.name}: {exc}"
        if error is None and after is not None and not after.is_on(to):
            error = (f"{action} {target.name}: after the steps the compute reports version "
                     f"{after.version} and control nodes {' '.join(after.control_nodes)}, "
                     f"not {to.version} on {' '.join(to.control_nodes)}")
        return ActionResult(error is None, error, gap, steps, after)

    # ----------------------------------------------------------------- helpers
    def _values(self, target: ComputeTarget, to: ClusterTarget | None) -> dict[str, str]:
        values: dict[str, str] = {
            "name": target.name,
            "address": target.address,
            "health_timeout_s": f"{self.health_timeout_s:g}",
            "version": to.version if to else "",
            "cluster": to.name if to else "",
        }
        for var in LIST_VARS:
            items = list(getattr(to, var)) if to else []
            values[var] = " ".join(with_port(i, DEFAULT_PORTS[var]) for i in items)
            values[f"{var}_csv"] = ",".join(host_of(i) for i in items)
        return values

    def _run(self, session: SshSession, prof: CommandProfile, step: str,
             values: Mapping[str, str]) -> StepResult:
        argv = prof.render(step, values)
        display = quote_argv(argv)
        began = time.monotonic()
        try:
            res: CommandResult = session.run(argv)
        except SshError as exc:
            return StepResult(step, display, -1, "", str(exc), time.monotonic() - began)
        return StepResult(step, res.command, -1 if res.exit_code is None else res.exit_code,
                          res.stdout, res.stderr, res.duration_s)


def cluster_target(name: str, version: str, control_nodes: Sequence[str],
                   collectors: Sequence[str] | None = None,
                   dns_servers: Sequence[str] | None = None) -> ClusterTarget:
    """A ClusterTarget whose collectors and DNS servers default to the control nodes."""
    nodes = list(control_nodes)
    return ClusterTarget(name, version, nodes, list(collectors or nodes),
                         list(dns_servers or nodes))
