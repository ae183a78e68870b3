"""Stop, start, disable and signal Contrail's controller services over SSH, through a profile.

A controller profile says how services are controlled on one kind of deployment:
`systemd` (packages with units), `supervisord` (3.x / 4.x packages: one supervisord per
role, `supervisorctl -s unix:///var/run/supervisord_<role>.sock`, `autostart` in
`/etc/contrail/supervisord_<role>_files/<program>.ini`), `docker` (5.x containers by name),
`docker-compose` (5.x, kolla: `docker compose -f /etc/contrail/<project>/docker-compose.yaml`)
and `demo` (the demo world's controller hosts).

Services are named by role, the same on every profile (`schema-transformer`,
`svc-monitor`...); each profile maps those names to what the host calls them: a unit, a
container, `<role>/<program>` (supervisord) or `<project>/<service>` (compose). A name the
profile does not map is refused before anything runs. The map and every step template can
be overridden per deployment (config `controller_profiles.<name>`, with `services` a table);
any other key is a profile variable, e.g. `systemctl = "sudo systemctl"`.

Steps: status, stop, start, disable, enable, signal (variable `{signal}`), set_ini
(`{file}` then section key value triples, rewritten through a copy and one rename, as the
compute profiles do); optional: restart, version, and fence / unfence (the api-server closed to
northbound clients and opened again; `{unit}` is the api-server's name), fence_status
(prints `fenced` or `open`: the fence proven, e.g. `iptables -C ... && echo fenced ||
echo open`), and queues (the
broker's queues of vhost `{vhost}`, one `name ready unacked` line each, as `rabbitmqctl
list_queues name messages_ready messages_unacknowledged` prints them).
Template variables: `{unit}` (the host's name for the service; for
`group/name` values the part after the slash), `{group}` (the part before it, else ""),
plus the profile's variables.

Variable `cassandra_dirs`: the database's directories on the host (data, commitlog,
saved_caches, hints), which a node that left the ring must have emptied before it rejoins
(Cassandra refuses to start a decommissioned node's data, and a removed node's stale tokens
and sstables would come back); its items may name the host (`{name}`, `{address}`). The
package profiles default to Cassandra's own layout under /var/lib/cassandra; the container
profiles have none (where a volume lives is the deployment's): the step is refused until
the config names them. The status step prints the state; `running` / `active` /
`RUNNING` / `Up` mean running.

A profile's `reload` table says how a northbound client's service takes a re-pointed config:
`restart` or `signal` (service name -> one of them; a northbound.toml client's own `reload`
wins). neutron-server, kube-manager and the vCenter plugin read the api-server's address
once, at start (the Contrail neutron plugin when it is loaded), so every built-in profile
restarts them; a service the table does not name is signalled.

A service the host has not got (not installed there) is told apart from a failure by what the
service manager prints (ABSENT): `status` reports it as `absent`, and `act_present` leaves
it out of the later steps and returns it, for the writers that only some hosts run
(kube-manager, vcenter-manager).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backends.compute import SET_INI_SCRIPT, ProfileError, render_template, script_item
from backends.ssh import CommandResult, SshError, SshExecutor, SshSession, SshTarget

ROLES = ("config", "control", "analytics", "database", "northbound")
STEPS = ("status", "stop", "start", "disable", "enable", "signal", "set_ini")
# Optional: `version` prints the release the host runs (a package version, an image tag, a
# release); `fence` / `unfence` (together, default none) close the host's api-server to
# northbound clients and open it again (e.g. a firewall rule on its port): where a profile
# defines them, finalize fences old and opens new with them instead of the api-server's call.
# `queues` lists the broker's queues (name, messages ready, unacknowledged) of `{vhost}`:
# finalize's settle-old-writers waits on old's writers' own queues with it.
# `rabbit_status` prints the broker cluster's `rabbitmqctl cluster_status --formatter json`
# (RabbitMQ 3.8+; `{unit}` is the rabbitmq service's name): the ring runner's guard reads it
# before a step stops the brokers of some of the hosts.
# `fence_status` prints `fenced` or `open`: the proof finalize's check-new-fenced asks of new
# when its api-server has no fence call of its own (a real Contrail api-server).
# `restart` restarts a service (a northbound client whose profile `reload`s it so).
# `install` installs release `{version}` on the host (a node converted from v1 to v2 in
# place, between its v1 services stopped and its v2 ones started); host-wide, no `{unit}`.
OPTIONAL_STEPS = ("version", "fence", "unfence", "queues", "rabbit_status", "fence_status",
                  "restart", "install")
RELOADS = ("restart", "signal")
# How the built-in profiles make a northbound service take its re-pointed config (above).
_RELOAD = {"neutron-server": "restart", "kube-manager": "restart",
           "vcenter-plugin": "restart"}
_CLUSTER_STATUS = "rabbitmqctl cluster_status --formatter json"
FENCED_WORDS = ("fenced", "closed")
OPEN_WORDS = ("open", "unfenced")
# The service a fence step acts for (its `{unit}`): the first of these the profile maps.
FENCE_SERVICES = ("api-server", "controller")
# The service whose version stands for the host's (the first one its profile maps).
VERSION_SERVICES = ("api-server", "controller", "schema-transformer", "control")
RUNNING_STATES = ("running", "active", "up")

# Role -> the services of that role, by the names profiles map.
ROLE_SERVICES: dict[str, tuple[str, ...]] = {
    "config": ("api-server", "schema-transformer", "svc-monitor", "device-manager"),
    "control": ("control", "dns", "named"),
    "analytics": ("collector", "analytics-api", "query-engine", "alarm-gen"),
    "database": ("cassandra", "zookeeper", "rabbitmq"),
    "northbound": ("neutron-server", "kube-manager", "vcenter-plugin", "vcenter-manager"),
}
# The writers that must not run on new while its database is being copied into. The last
# two run only on some deployments (Kubernetes, vCenter), on a config or a northbound host:
# they are asked for on both, and a host that has not got one says so (ABSENT).
OPTIONAL_WRITERS = ("kube-manager", "vcenter-manager")
WRITERS = ("schema-transformer", "svc-monitor", "device-manager", *OPTIONAL_WRITERS)
ROLE_WRITERS: dict[str, tuple[str, ...]] = {"config": WRITERS, "northbound": OPTIONAL_WRITERS}
# The services a host of their role may not have (ABSENT there is no failure): which
# northbound clients a host runs (neutron-server, kube-manager, the vCenter ones) is the
# deployment's, and the optional writers run only on some.
OPTIONAL_SERVICES = frozenset((*ROLE_SERVICES["northbound"], *OPTIONAL_WRITERS))
# What the service managers print for a service the host has not got (not installed there):
# systemctl (`Unit x.service not loaded.` / `not found.`, exit 5; `Unit file x.service does
# not exist.`), supervisorctl (`x: ERROR (no such process)`, even with exit 0 on 3.x),
# docker / podman (`No such container: x`, `No such object: x`), compose (`no such service:
# x`), the demo's hostctl (`no such service on this host`). Never a missing tool (exit 127)
# nor a missing file: those are errors.
ABSENT = re.compile(r"\bunit \S+ (?:not found|not loaded|could not be found)|"
                    r"\bunit file \S+ does not exist|"
                    r"\bno such (?:process|group|container|object|service)\b", re.IGNORECASE)
# supervisorctl when the host runs no supervisord for the program's group (no socket): an
# optional writer's group (`kubernetes`) is absent with it; a required one's is an error (a
# wrong socket_dir must not pass as "nothing to stop").
ABSENT_GROUP = re.compile(r"^unix://\S+ no such file$", re.MULTILINE)

_UNITS = {
    "api-server": "contrail-api", "schema-transformer": "contrail-schema",
    "svc-monitor": "contrail-svc-monitor", "device-manager": "contrail-device-manager",
    "control": "contrail-control", "dns": "contrail-dns", "named": "contrail-named",
    "collector": "contrail-collector", "analytics-api": "contrail-analytics-api",
    "query-engine": "contrail-query-engine", "alarm-gen": "contrail-alarm-gen",
    "cassandra": "contrail-database", "zookeeper": "zookeeper", "rabbitmq": "rabbitmq-server",
    "neutron-server": "neutron-server", "kube-manager": "contrail-kube-manager",
    "vcenter-plugin": "contrail-vcenter-plugin", "vcenter-manager": "contrail-vcenter-manager",
}
_SUPERVISORD_GROUP = {"config": "config", "control": "control", "analytics": "analytics",
                      "database": "database"}
_SUPERVISORD = {
    svc: f"{_SUPERVISORD_GROUP[role]}/{_UNITS[svc]}"
    for role, services in ROLE_SERVICES.items() if role in _SUPERVISORD_GROUP
    for svc in services if svc not in ("zookeeper", "rabbitmq")
}
_SUPERVISORD["kube-manager"] = "kubernetes/contrail-kube-manager"
_SUPERVISORD["vcenter-manager"] = "vcenter/contrail-vcenter-manager"
# the OpenStack node's supervisord (supervisord_openstack.sock), as Contrail's 3.x installs
_SUPERVISORD["neutron-server"] = "openstack/neutron-server"
# 5.x: compose project / service; the containers are <project>_<service>_1.
_COMPOSE = {
    "api-server": "config/api", "schema-transformer": "config/schema",
    "svc-monitor": "config/svcmonitor", "device-manager": "config/devicemgr",
    "control": "control/control", "dns": "control/dns", "named": "control/named",
    "collector": "analytics/collector", "analytics-api": "analytics/api",
    "query-engine": "analytics/query-engine", "alarm-gen": "analytics_alarm/alarm-gen",
    "cassandra": "config_database/cassandra", "zookeeper": "config_database/zookeeper",
    "rabbitmq": "config_database/rabbitmq", "kube-manager": "kubemanager/kubemanager",
    "vcenter-manager": "vcenter_manager/vcenter-manager",
    "neutron-server": "neutron/neutron-server",
}
_CONTAINERS = {svc: f"{value.replace('/', '_')}_1" for svc, value in _COMPOSE.items()}
_CONTAINERS["neutron-server"] = "neutron_server"  # kolla's container

_SET_INI_STEP = f"sh -c {script_item(SET_INI_SCRIPT)} set-ini"
# dpkg (Debian, Ubuntu) or rpm (RHEL, CentOS): the version string of the package
# `systemctl is-active` prints `inactive` for a unit that does not exist: its LoadState
# (`show -p LoadState`, every systemd; `--value` is 230+) tells an absent unit apart, said as
# systemctl says it (ABSENT, exit 4 as `systemctl status` exits); then the active state.
# $1 the unit, the rest the systemctl command (a profile's `systemctl` may be several words).
_SYSTEMD_STATUS = "sh -c " + script_item(
    'u=$1; shift; case $("$@" show -p LoadState "$u") in *=not-found*) '
    'echo "Unit $u.service could not be found."; exit 4;; esac; '
    'exec "$@" is-active "$u"') + " status {unit} {systemctl}"
_PACKAGE_VERSION = "sh -c " + script_item(
    "dpkg-query -W -f='${Version}\\n' \"$1\" 2>/dev/null || "
    "rpm -q --qf '%{VERSION}-%{RELEASE}\\n' \"$1\"") + " version {package}"
# Every installed package matching `{package_glob}` (contrail-*) to release $1: apt-get
# (pkg=VERSION) where dpkg is, else yum (pkg-VERSION; downgrade when install refuses), as an
# operator upgrades a packaged controller node in place. Nothing installed: an error.
_PACKAGE_INSTALL = "sh -c " + script_item(r"""
v=$1 pat=$2 args=
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$pat" 2>/dev/null |
             awk '$1 == "ii" {print $2}'); do args="$args $p=$v"; done
  [ -n "$args" ] || { echo "no installed package matches $pat" >&2; exit 1; }
  exec env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades \
    -o Dpkg::Options::=--force-confold $args
fi
for p in $(rpm -qa --qf '%{NAME}\n' "$pat"); do args="$args $p-$v"; done
[ -n "$args" ] || { echo "no installed package matches $pat" >&2; exit 1; }
yum -y install $args || exec yum -y downgrade $args
""") + " install {version} {package_glob}"
# supervisorctl 3.x exits 0 whatever the state, 4.x exits 3 when not running: the state is
# the second word of its status line either way.
_SUPERVISORCTL = "{supervisorctl} -s unix://{socket_dir}/supervisord_{group}.sock"
_SUPERVISORD_INI = "{conf_dir}/supervisord_{group}_files/{unit}.ini"
_COMPOSE_FILE = "{compose_dir}/{group}/docker-compose.yaml"
# Compose has no enable/disable: the restart policy of the service's containers is what
# brings them back after a reboot, so it is what disable/enable set.
_COMPOSE_RESTART = r"""
f=$1 s=$2 policy=$3; shift 3
ids=$("$@" compose -f "$f" ps -a -q "$s") || exit 1
[ -n "$ids" ] || { echo "$s: no container in $f" >&2; exit 1; }
"$@" update --restart="$policy" $ids
"""

# Cassandra's package layout (cassandra.yaml's defaults on Debian and RHEL packages).
_PACKAGE_CASSANDRA_DIRS = " ".join(f"/var/lib/cassandra/{d}" for d in
                                   ("data", "commitlog", "saved_caches", "hints"))
# `find -mindepth 1 -delete` empties a directory and keeps it (its owner and mode are the
# database's); an absent one is reported, not created (a release without hints/ has none).
_CLEAR_DIRS_SCRIPT = r"""
for d; do
  if [ -d "$d" ]; then find "$d" -mindepth 1 -delete || exit 1; echo "cleared $d"
  elif [ -e "$d" ]; then echo "$d: not a directory" >&2; exit 1
  else echo "absent $d"; fi
done
"""

BUILTIN_CONTROLLER_PROFILES: dict[str, dict[str, object]] = {
    "systemd": {
        "systemctl": "systemctl",
        "services": _UNITS,
        "status": _SYSTEMD_STATUS,
        "stop": "{systemctl} stop {unit}",
        "start": "{systemctl} start {unit}",
        "disable": "{systemctl} disable {unit}",
        "enable": "{systemctl} enable {unit}",
        "signal": "{systemctl} kill --signal={signal} {unit}",
        "restart": "{systemctl} restart {unit}",
        "reload": _RELOAD,
        "set_ini": _SET_INI_STEP,
        "package": "contrail-lib",
        "version": _PACKAGE_VERSION,
        "package_glob": "contrail-*",
        "install": _PACKAGE_INSTALL,
        "rabbit_status": _CLUSTER_STATUS,
        "cassandra_dirs": _PACKAGE_CASSANDRA_DIRS,
    },
    "supervisord": {
        "supervisorctl": "supervisorctl",
        "socket_dir": "/var/run",
        "conf_dir": "/etc/contrail",
        "services": _SUPERVISORD,
        "status": f"{_SUPERVISORCTL} status {{unit}}",
        "stop": f"{_SUPERVISORCTL} stop {{unit}}",
        "start": f"{_SUPERVISORCTL} start {{unit}}",
        "disable": f"{_SET_INI_STEP} {_SUPERVISORD_INI} program:{{unit}} autostart false",
        "enable": f"{_SET_INI_STEP} {_SUPERVISORD_INI} program:{{unit}} autostart true",
        "signal": f"{_SUPERVISORCTL} signal {{signal}} {{unit}}",
        "restart": f"{_SUPERVISORCTL} restart {{unit}}",
        "reload": _RELOAD,
        "set_ini": _SET_INI_STEP,
        "package": "contrail-lib",
        "version": _PACKAGE_VERSION,
        "cassandra_dirs": _PACKAGE_CASSANDRA_DIRS,
        "package_glob": "contrail-*",
        "install": _PACKAGE_INSTALL,
    },
    "docker": {
        "docker": "docker",
        "services": _CONTAINERS,
        "status": "{docker} inspect --format {{{{.State.Status}}}} {unit}",
        "stop": "{docker} stop {unit}",
        "start": "{docker} start {unit}",
        "disable": "{docker} update --restart=no {unit}",
        "enable": "{docker} update --restart=always {unit}",
        "signal": "{docker} kill --signal={signal} {unit}",
        "restart": "{docker} restart {unit}",
        "reload": _RELOAD,
        "set_ini": _SET_INI_STEP,
        "version": "{docker} inspect --format {{{{.Config.Image}}}} {unit}",
        "rabbit_status": "{docker} exec {unit} " + _CLUSTER_STATUS,
    },
    "docker-compose": {
        "docker": "docker",
        "compose_dir": "/etc/contrail",
        "services": _COMPOSE,
        "status": "{docker} compose -f " + _COMPOSE_FILE + " ps -a --format {{{{.State}}}} {unit}",
        "stop": f"{{docker}} compose -f {_COMPOSE_FILE} stop {{unit}}",
        "start": f"{{docker}} compose -f {_COMPOSE_FILE} start {{unit}}",
        "disable": f"sh -c {script_item(_COMPOSE_RESTART)} disable {_COMPOSE_FILE} {{unit}} no "
                   "{docker}",
        "enable": f"sh -c {script_item(_COMPOSE_RESTART)} enable {_COMPOSE_FILE} {{unit}} always "
                  "{docker}",
        "signal": f"{{docker}} compose -f {_COMPOSE_FILE} kill -s {{signal}} {{unit}}",
        "restart": f"{{docker}} compose -f {_COMPOSE_FILE} restart {{unit}}",
        "reload": _RELOAD,
        "set_ini": _SET_INI_STEP,
        "version": f"{{docker}} compose -f {_COMPOSE_FILE} ps -a --format {{{{{{{{.Image}}}}}}}} "
                   "{unit}",
        "rabbit_status": f"{{docker}} compose -f {_COMPOSE_FILE} exec -T {{unit}} "
                         + _CLUSTER_STATUS,
    },
    "demo": {
        # One profile per demo cluster (base = "demo"), `host` naming its controller's
        # directory under the world's run dir.
        "host": "python3 -m demo.controller.hostctl --dir /var/lib/issu-demo/controller",
        # a process each, named as issu names them (hostctl's `controller`: the first three)
        "services": {s: s for s in ("api-server", "control", "analytics-api",
                                    "schema-transformer", "svc-monitor", "device-manager",
                                    "kube-manager", "vcenter-manager", "neutron-server")},
        "status": "{host} status {unit}",
        "stop": "{host} stop {unit}",
        "start": "{host} start {unit}",
        "disable": "{host} disable {unit}",
        "enable": "{host} enable {unit}",
        "signal": "{host} signal {signal} {unit}",
        "restart": "{host} restart {unit}",
        "reload": _RELOAD,
        "set_ini": _SET_INI_STEP,
        "version": "{host} version {unit}",
        # the host's services switched to the release's processes
        "install": "{host} install {version} controller",
        # the world's broker, asked with rabbitmqctl
        "queues": "{host} queues {vhost}",
        # the demo api-server's /issu/close|open, called on its own host
        "fence": "{host} fence {unit}",
        "unfence": "{host} unfence {unit}",
        # the proof check-new-fenced asks of new: /issu/status, read on its own host
        "fence_status": "{host} fence_status {unit}",
    },
}

_SERVICE = re.compile(r"[a-z][a-z0-9-]*")
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.@:-]*")
_SIGNAL = re.compile(r"(?:SIG)?[A-Z][A-Z0-9+-]*|[0-9]{1,2}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:~+_-]*")


class ControllerError(Exception):
    """A controller step failed or could not run; the message names host, service and step."""


@dataclass(frozen=True)
class ControllerProfile:
    name: str
    steps: dict[str, str]
    services: dict[str, str]  # issu's service name (schema-transformer) -> the host's name
    variables: dict[str, str] = field(default_factory=dict)
    reload: dict[str, str] = field(default_factory=dict)  # service -> restart | signal

    @classmethod
    def build(cls, name: str, spec: Mapping[str, object]) -> ControllerProfile:
        services = spec.get("services") or {}
        if not isinstance(services, Mapping):
            raise ProfileError(f"controller_profiles.{name}.services: expected a table of "
                               "service = host name")
        reload = spec.get("reload") or {}
        if not isinstance(reload, Mapping):
            raise ProfileError(f"controller_profiles.{name}.reload: expected a table of "
                               "service = \"restart\" or \"signal\"")
        steps, variables = {}, {}
        for key, value in spec.items():
            if key in ("services", "base", "reload"):
                continue
            if not isinstance(value, str):
                raise ProfileError(f"controller_profiles.{name}.{key}: expected a string")
            if key in STEPS or key in OPTIONAL_STEPS:
                steps[key] = value
            elif _VARIABLE.fullmatch(key) and key not in ("unit", "group", "signal"):
                variables[key] = value
            else:
                raise ProfileError(f"controller_profiles.{name}: {key!r} is not a step "
                                   f"({', '.join(STEPS)}) nor a valid variable name")
        profile = cls(name, steps, {str(k): str(v) for k, v in services.items()}, variables,
                      {str(k): str(v) for k, v in reload.items()})
        profile.validate()
        return profile

    def validate(self) -> None:
        for service, host_name in self.services.items():
            if not _SERVICE.fullmatch(service):
                raise ProfileError(f"controller_profiles.{self.name}.services: {service!r} "
                                   "is not a service name (lower-case, digits, '-')")
            if not _HOST_NAME.fullmatch(host_name):
                raise ProfileError(f"controller_profiles.{self.name}.services.{service}: "
                                   f"{host_name!r} is not a unit, container or group/program "
                                   "name")
        missing = [s for s in STEPS if not self.steps.get(s, "").strip()]
        if missing:
            raise ProfileError(f"controller profile {self.name}: step(s) {', '.join(missing)} "
                               "missing")
        for service, how in self.reload.items():
            if how not in RELOADS:
                raise ProfileError(f"controller_profiles.{self.name}.reload.{service}: "
                                   f"{how!r} is not restart or signal")
            if how == "restart" and "restart" not in self.steps:
                raise ProfileError(f"controller_profiles.{self.name}.reload.{service}: "
                                   "restart needs the profile's restart step")
        if ("fence" in self.steps) != ("unfence" in self.steps):
            raise ProfileError(f"controller profile {self.name}: steps fence and unfence go "
                               "together (set both, or neither)")
        sample = {"unit": "x", "group": "x", "signal": "HUP"}
        for step in (*STEPS, *(s for s in OPTIONAL_STEPS if s in self.steps)):
            values = {"vhost": "/"} if step == "queues" else \
                {"version": "1.0"} if step == "install" else sample
            render_template(self.name, step, self.steps[step], self.variables, values)
        if "cassandra_dirs" in self.variables:
            self.cassandra_dirs("host", "192.0.2.1")

    def cassandra_dirs(self, name: str, address: str) -> list[str]:
        """The database directories of host `name` (`address`) that a rejoin empties; each
        absolute, without `..`, at least two levels deep (never `/` nor `/var`)."""
        if "cassandra_dirs" not in self.variables:
            raise ControllerError(f"controller profile {self.name}: no cassandra_dirs (set "
                                  f"controller_profiles.{self.name}.cassandra_dirs to the "
                                  "database's data, commitlog, saved_caches and hints "
                                  "directories)")
        dirs = render_template(self.name, "cassandra_dirs", "{cassandra_dirs}",
                               self.variables, {"name": name, "address": address})
        for path in dirs:
            parts = PurePosixPath(path).parts
            if (not PurePosixPath(path).is_absolute() or ".." in parts or len(parts) < 3
                    or any(c in path for c in "\n\r\0")):
                raise ProfileError(f"controller_profiles.{self.name}.cassandra_dirs: "
                                   f"{path!r} is not an absolute directory two levels deep "
                                   "or more")
        if not dirs:
            raise ProfileError(f"controller_profiles.{self.name}.cassandra_dirs is empty")
        return dirs

    @property
    def has_fence(self) -> bool:
        return "fence" in self.steps

    @property
    def has_fence_status(self) -> bool:
        return "fence_status" in self.steps

    @property
    def has_queues(self) -> bool:
        return "queues" in self.steps

    def reload_for(self, service: str) -> str:
        """How `service` takes a re-pointed config on this profile: restart or signal."""
        return self.reload.get(service, "signal")

    def host_name(self, service: str) -> str:
        try:
            return self.services[service]
        except KeyError:
            raise ControllerError(
                f"controller profile {self.name}: unknown service {service!r} (known: "
                f"{', '.join(sorted(self.services))}; add it under "
                f"controller_profiles.{self.name}.services)") from None

    def argv(self, step: str, service: str, signal: str = "") -> list[str]:
        """The argv of `step` for `service`, every item one argument (nothing reaches a shell
        unquoted)."""
        if step in OPTIONAL_STEPS and step not in self.steps:
            raise ControllerError(f"controller profile {self.name}: no {step!r} step (set "
                                  f"controller_profiles.{self.name}.{step})")
        if step not in (*STEPS, *OPTIONAL_STEPS) or step in ("set_ini", "install"):
            raise ControllerError(f"controller profile {self.name}: unknown step {step!r}")
        if step == "signal" and not _SIGNAL.fullmatch(signal):
            raise ControllerError(f"{signal!r} is not a signal name (HUP, SIGTERM, USR1...)")
        group, _, unit = self.host_name(service).rpartition("/")
        return render_template(self.name, step, self.steps[step], self.variables,
                               {"unit": unit, "group": group, "signal": signal})

    def ini_argv(self, file: str, edits: Sequence[tuple[str, str, str]]) -> list[str]:
        path = PurePosixPath(file)
        if not path.is_absolute() or any(c in file for c in "\n\r\0"):
            raise ControllerError(f"{file!r}: an INI file to edit must be an absolute path")
        if not edits:
            raise ControllerError(f"{file}: no edits")
        base = render_template(self.name, "set_ini", self.steps["set_ini"], self.variables, {})
        return [*base, file, *(item for edit in edits for item in edit)]


_BACKUP_SCRIPT = 'test -e "$2" || cp -p -- "$1" "$2"'
_FRESH_BACKUP_SCRIPT = 'cp -p -- "$1" "$2"'
# Sets `key=value` lines of a properties file (no sections: the vCenter plugin's), file then
# key value pairs: every line of the key gets the value, a missing key is appended; written
# to a copy (mode kept) that replaces the file only once every edit is made.
_SET_PROPERTIES_SCRIPT = r"""
f=$1; shift
[ -f "$f" ] || { echo "$f: no such file; nothing was changed" >&2; exit 2; }
tmp="$f.issu-tmp"
cp -p -- "$f" "$tmp" || exit 1
while [ $# -ge 2 ]; do
  K=$1 V=$2 awk '
    BEGIN { k = ENVIRON["K"]; v = ENVIRON["V"] }
    /^[ \t]*[#!]/ { print; next }
    { key = $0; sub(/=.*/, "", key); gsub(/[ \t]/, "", key) }
    key == k { print k "=" v; done = 1; next }
    { print }
    END { if (!done) print k "=" v }
  ' "$tmp" > "$tmp.new" && cat "$tmp.new" > "$tmp" && rm -f -- "$tmp.new" \
    || { rm -f -- "$tmp" "$tmp.new"; exit 1; }
  shift 2
done
mv -f -- "$tmp" "$f"
"""


def _absolute(file: str) -> None:
    if not PurePosixPath(file).is_absolute() or any(c in file for c in "\n\r\0"):
        raise ControllerError(f"{file!r}: a file on a controller host must be an absolute "
                              "path")


def _service_map(value: object) -> dict[str, str]:
    """A profile's `services` table (service name -> the host's name for it); none: empty."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def build_controller_profiles(overrides: Mapping[str, Mapping[str, object]] | None = None
                              ) -> dict[str, ControllerProfile]:
    """The built-in controller profiles with the config's `controller_profiles` applied: a
    profile's `services` table is merged into the built-in map (a new name is added, an
    existing one renamed, one set to "" removed: a service these hosts do not run)."""
    specs = {k: dict(v) for k, v in BUILTIN_CONTROLLER_PROFILES.items()}
    for name, override in (overrides or {}).items():
        base = str(override.get("base", name if name in BUILTIN_CONTROLLER_PROFILES else ""))
        if base and base not in BUILTIN_CONTROLLER_PROFILES:
            raise ProfileError(f"controller_profiles.{name}.base: unknown profile {base!r} "
                               f"(built-in: {', '.join(BUILTIN_CONTROLLER_PROFILES)})")
        builtin = BUILTIN_CONTROLLER_PROFILES.get(base, {})
        merged = {**_service_map(builtin.get("services")),
                  **_service_map(override.get("services"))}
        services = {service: unit for service, unit in merged.items() if unit}
        if not isinstance(override.get("reload", {}), Mapping):
            raise ProfileError(f"controller_profiles.{name}.reload: expected a table of "
                               "service = \"restart\" or \"signal\"")
        reload = {**_service_map(builtin.get("reload")), **_service_map(override.get("reload"))}
        specs[name] = {**builtin, **override, "services": services, "reload": reload}
    return {name: ControllerProfile.build(name, spec) for name, spec in specs.items()}


@dataclass(frozen=True)
class ServiceState:
    service: str
    host: str
    state: str  # as the host printed it: active, inactive, RUNNING, STOPPED, running, exited

    @property
    def running(self) -> bool:
        return self.state.lower() in RUNNING_STATES

    @property
    def absent(self) -> bool:
        """The host has not got the service (ABSENT: not installed there)."""
        return self.state == ABSENT_STATE


ABSENT_STATE = "absent"


def host_writers(roles: Iterable[str]) -> list[str]:
    """The writers a host with `roles` is asked about (WRITERS' order)."""
    wanted = {w for role in roles for w in ROLE_WRITERS.get(role, ())}
    return [w for w in WRITERS if w in wanted]


def says_absent(exit_code: int | None, output: str, service: str = "") -> bool:
    """Whether a step's output for `service` says the host has not got it (ABSENT; an
    optional writer also with ABSENT_GROUP)."""
    if exit_code in (None, 126, 127):
        return False
    return ABSENT.search(output) is not None or (
        service in OPTIONAL_WRITERS and ABSENT_GROUP.search(output) is not None)


@dataclass(frozen=True)
class QueueState:
    name: str
    ready: int
    unacked: int


def parse_queue_listing(output: str) -> list[QueueState]:
    """`name ready unacked` lines (rabbitmqctl list_queues' table, tab or space separated);
    headers and informational lines are skipped."""
    out = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[-1].isdigit() and fields[-2].isdigit():
            out.append(QueueState(" ".join(fields[:-2]), int(fields[-2]), int(fields[-1])))
    return out


def parse_version_output(output: str) -> str:
    """The version a `version` step printed: its last line; for an image reference
    (`registry:5000/contrail-controller-config-api:5.0.1-0.214`) the tag after the last ':'
    of its last path segment; "" when it printed nothing."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    image, _, tag = last.rsplit("/", 1)[-1].rpartition(":")
    # `2:5.0.1~ubuntu18.04` is a dpkg version with its epoch, not an image and a tag
    return tag if image and not image.isdigit() else last


def parse_state(output: str) -> str:
    """The state word of a status step's output: `active`, `RUNNING` (the second word of
    supervisorctl's line), `running`, `exited`; "" when it printed nothing."""
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) >= 2 and words[1].isupper():  # supervisorctl: name STATE pid ...
            return words[1]
        return words[0]
    return ""


class ControllerExecutor:
    """Run controller profile steps on one host over SSH (key only, host keys verified)."""

    def __init__(self, known_hosts: Path, connect_timeout_s: float = 10.0,
                 command_timeout_s: float = 300.0,
                 profiles: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self.ssh = SshExecutor(known_hosts, connect_timeout_s, command_timeout_s)
        self.profiles = build_controller_profiles(profiles)

    def profile(self, name: str) -> ControllerProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ControllerError(f"unknown controller profile {name!r} "
                                  f"(known: {', '.join(sorted(self.profiles))})") from None

    def _run(self, session: SshSession, target: SshTarget, what: str,
             argv: list[str]) -> str:
        result = _result(session, target, what, argv)
        if not result.ok:
            raise ControllerError(_failed(target, what, result))
        return result.stdout

    def _connect(self, target: SshTarget) -> SshSession:
        try:
            return self.ssh.connect(target)
        except SshError as exc:
            raise ControllerError(f"{target.name}: {exc}") from exc

    def status(self, target: SshTarget, profile: str, services: Iterable[str]
               ) -> list[ServiceState]:
        prof = self.profile(profile)
        plans = [(s, prof.argv("status", s)) for s in services]  # refuse unknown names first
        states = []
        with self._connect(target) as session:
            for service, argv in plans:
                # systemctl is-active and supervisorctl 4.x exit non-zero for a stopped
                # service: the printed state is the answer, an empty one an error.
                result = _result(session, target, f"status {service}", argv)
                state = parse_state(result.stdout)
                if says_absent(result.exit_code, f"{result.stdout}\n{result.stderr}",
                               service):
                    state = ABSENT_STATE
                elif not state or result.exit_code is None:
                    tail = (result.stderr or result.stdout).strip().splitlines()
                    raise ControllerError(
                        f"{target.name}: status {service} failed (exit {result.exit_code}): "
                        f"{tail[-1][:300] if tail else '(no output)'}")
                states.append(ServiceState(service, target.name, state))
        return states

    def act(self, target: SshTarget, profile: str, step: str, services: Iterable[str],
            signal: str = "") -> None:
        """Run `step` (stop, start, disable, enable, signal, restart) for each service, in order;
        the first failure stops and is raised, naming host, service and step."""
        prof = self.profile(profile)
        plans = [(s, prof.argv(step, s, signal)) for s in services]
        with self._connect(target) as session:
            for service, argv in plans:
                self._run(session, target, f"{step} {service}", argv)

    def act_present(self, target: SshTarget, profile: str, steps: Sequence[str],
                    services: Iterable[str]) -> list[str]:
        """Run each of `steps` (as `act`, step after step) for each service the host has: a
        step whose output says the service is absent (ABSENT: not installed on this host)
        leaves it out of the later steps. The services found absent, in order; any other
        failure is raised as `act` raises it."""
        prof = self.profile(profile)
        todo = list(services)
        plans = {(step, s): prof.argv(step, s) for step in steps for s in todo}
        absent: list[str] = []
        with self._connect(target) as session:
            for step in steps:
                for service in [s for s in todo if s not in absent]:
                    result = _result(session, target, f"{step} {service}",
                                     plans[step, service])
                    if says_absent(result.exit_code, f"{result.stdout}\n{result.stderr}",
                                   service):
                        absent.append(service)
                    elif not result.ok:
                        raise ControllerError(_failed(target, f"{step} {service}", result))
        return absent

    def version(self, target: SshTarget, profile: str) -> tuple[str, str]:
        """(the service asked, the version it reports) through the profile's `version`
        step, asked of the first of VERSION_SERVICES the profile maps."""
        prof = self.profile(profile)
        service = _first_mapped(prof, profile, VERSION_SERVICES, "cannot ask a version")
        argv = prof.argv("version", service)
        with self._connect(target) as session:
            out = self._run(session, target, f"version of {service}", argv)
        found = parse_version_output(out)
        if not found:
            raise ControllerError(f"{target.name}: version of {service}: printed nothing")
        return service, found

    def fence(self, target: SshTarget, profile: str, closed: bool) -> str:
        """Run the profile's `fence` (closed) or `unfence` step on the host; what it printed.
        ControllerError when the profile has no such step or it fails."""
        prof = self.profile(profile)
        step = "fence" if closed else "unfence"
        service = _first_mapped(prof, profile, FENCE_SERVICES, f"nothing to {step}")
        argv = prof.argv(step, service)
        with self._connect(target) as session:
            return self._run(session, target, f"{step} {service}", argv).strip()

    def fence_status(self, target: SshTarget, profile: str) -> bool:
        """Whether the host's api-server is fenced, as the profile's `fence_status` step
        says (its last line: `fenced` or `open`); anything else is a ControllerError."""
        prof = self.profile(profile)
        service = _first_mapped(prof, profile, FENCE_SERVICES, "no fence to ask about")
        argv = prof.argv("fence_status", service)
        with self._connect(target) as session:
            out = self._run(session, target, f"fence_status {service}", argv)
        lines = [ln.strip().lower() for ln in out.splitlines() if ln.strip()]
        word = lines[-1] if lines else ""
        if word in FENCED_WORDS or word in OPEN_WORDS:
            return word in FENCED_WORDS
        raise ControllerError(f"{target.name}: fence_status {service} printed "
                              f"{word[:80]!r}, not 'fenced' or 'open'")

    def queues(self, target: SshTarget, profile: str, vhost: str) -> list[QueueState]:
        """The broker's queues of `vhost`, through the profile's `queues` step on the host."""
        prof = self.profile(profile)
        if not prof.has_queues:
            raise ControllerError(f"controller profile {profile}: no 'queues' step (set "
                                  f"controller_profiles.{profile}.queues)")
        if any(c in vhost for c in "\n\r\0"):
            raise ControllerError(f"{vhost!r} is not a vhost name")
        argv = render_template(profile, "queues", prof.steps["queues"], prof.variables,
                               {"vhost": vhost})
        with self._connect(target) as session:
            return parse_queue_listing(self._run(session, target, f"queues of {vhost}", argv))

    def install(self, target: SshTarget, profile: str, version: str) -> str:
        """Install release `version` on the host through the profile's `install` step; what
        it printed. ControllerError when the profile has none or it fails."""
        prof = self.profile(profile)
        if "install" not in prof.steps:
            raise ControllerError(f"controller profile {profile}: no 'install' step (set "
                                  f"controller_profiles.{profile}.install)")
        if not _VERSION.fullmatch(version):
            raise ControllerError(f"{version!r} is not a release to install")
        argv = render_template(profile, "install", prof.steps["install"], prof.variables,
                               {"version": version})
        with self._connect(target) as session:
            return self._run(session, target, f"install {version}", argv)

    def rabbit_status(self, target: SshTarget, profile: str) -> str:
        """The host's broker's cluster status (JSON), through the profile's `rabbit_status`
        step; ControllerError when the profile has none or it fails."""
        argv = self.profile(profile).argv("rabbit_status", "rabbitmq")
        with self._connect(target) as session:
            return self._run(session, target, "rabbitmq cluster status", argv)

    def run_script(self, target: SshTarget, what: str, script: str,
                   args: Sequence[str]) -> str:
        """`sh -c SCRIPT` with `args` as $1..., each one argv item (files must be absolute)."""
        for arg in args:
            _absolute(arg)
        with self._connect(target) as session:
            return self._run(session, target, what, ["sh", "-c", script, "issu", *args])

    def clear_cassandra_dirs(self, target: SshTarget, profile: str) -> list[str]:
        """Empty the database directories of the host (its profile's `cassandra_dirs`),
        each kept; one line per directory, `cleared DIR` or `absent DIR`. The caller makes
        sure the node is out of the ring and its database stopped."""
        dirs = self.profile(profile).cassandra_dirs(target.name, target.address)
        out = self.run_script(target, "clear the database directories "
                              + " ".join(dirs), _CLEAR_DIRS_SCRIPT, dirs)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def read_file(self, target: SshTarget, file: str) -> str:
        """The text of a file on the host (`cat`)."""
        _absolute(file)
        with self._connect(target) as session:
            return self._run(session, target, f"read {file}", ["cat", "--", file])

    def backup_file(self, target: SshTarget, file: str, suffix: str = ".issu-backup",
                    *, fresh: bool = False) -> None:
        """A copy of `file` beside it (mode kept), made once: an existing one is the first
        state and is left alone, unless `fresh` (a leftover of an earlier upgrade)."""
        _absolute(file)
        script = _FRESH_BACKUP_SCRIPT if fresh else _BACKUP_SCRIPT
        with self._connect(target) as session:
            self._run(session, target, f"back up {file}",
                      ["sh", "-c", script, "backup", file, file + suffix])

    def set_properties(self, target: SshTarget, file: str,
                       edits: Sequence[tuple[str, str]]) -> None:
        """Set `(key, value)` lines of a properties file on the host (no sections), every
        other line kept; refused before anything runs for a key or value it cannot hold."""
        _absolute(file)
        for key, value in edits:
            if not key or any(c in key for c in "=[] \t") or any(
                    c in key + value for c in "\n\r\0"):
                raise ControllerError(f"{file}: cannot set {key!r} to {value!r}")
        with self._connect(target) as session:
            self._run(session, target, f"edit {file}",
                      ["sh", "-c", _SET_PROPERTIES_SCRIPT, "set-properties", file,
                       *(item for edit in edits for item in edit)])

    def set_ini(self, target: SshTarget, profile: str, file: str,
                edits: Sequence[tuple[str, str, str]]) -> None:
        """Set `(section, key, value)` in an INI file on the host, every other line kept;
        an invalid edit changes nothing."""
        argv = self.profile(profile).ini_argv(file, edits)
        with self._connect(target) as session:
            self._run(session, target, f"edit {file}", argv)


def _result(session: SshSession, target: SshTarget, what: str,
            argv: list[str]) -> CommandResult:
    """`argv` run in `session`; an SSH failure is a ControllerError naming host and step."""
    try:
        return session.run(argv)
    except SshError as exc:
        raise ControllerError(f"{target.name}: {what}: {exc}") from exc


def _failed(target: SshTarget, what: str, result: CommandResult) -> str:
    lines = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln]
    how = "timed out" if result.exit_code is None else f"exit {result.exit_code}"
    return f"{target.name}: {what} failed ({how}): {lines[-1][:300] if lines else '(no output)'}"


def _first_mapped(prof: ControllerProfile, profile: str, candidates: tuple[str, ...],
                  otherwise: str) -> str:
    """The first of `candidates` the profile maps (the service a host-wide step acts for)."""
    service = next((s for s in candidates if s in prof.services), "")
    if not service:
        raise ControllerError(f"controller profile {profile} maps none of "
                              f"{', '.join(candidates)}: {otherwise}")
    return service
