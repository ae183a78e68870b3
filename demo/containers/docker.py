"""A docker-compatible command over podman: `python -m demo.containers.docker ARGS`.

Debian 12's podman (4.3) has no `podman compose`, and podman-compose 1.0.3 cannot run a
service on the host network without also creating a bridge network (which this machine may
not use). So this stands in for the `docker` command on a demo compute:
- `compose [--env-file F] [-f FILE] [-p NAME] up -d | down | ps | pull | stop | start | kill`,
  the subset Contrail's compose profiles run, for compose files written as JSON (which is
  YAML); `${VAR}` / `${VAR:-default}` in them come from the environment, then --env-file;
- `update --restart=POLICY NAME...`: podman 4.3's `update` has no `--restart` (and a
  container's restart policy cannot be changed after creation), so the policy is kept in a
  file per container name (`restart-policy/<name>` in the directory its label
  `issu.demo.policy-dir` names, else in the images' cache directory), read by
  `issu demo up`, which does not start again a container whose policy is `no` (the
  controller profiles' disable / enable); `inspect` does not show it;
- anything else goes to `podman --runtime runc` unchanged (inspect, stop, start, kill...).

Every container runs on the host network with lowered limits (`engine.RUN_OPTIONS`), and is
labelled the way docker compose labels its own (`com.docker.compose.project`, `.service`,
`.config-hash`), so `up` recreates a container only when its image or configuration changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from demo.containers.engine import PODMAN, RUN_OPTIONS

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


class ComposeError(Exception):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise ComposeError(f"{path}: {exc.strerror}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    return values


def _substitute(value: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if env.get(name):
                return env[name]
            if default is not None:
                return default
            raise ComposeError(f"{where}: variable {name} is not set")
        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [_substitute(v, env, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, env, where) for k, v in value.items()}
    return value


class Project:
    def __init__(self, file: Path, env_file: Path | None, name: str | None) -> None:
        self.file = file.resolve()
        try:
            data = json.loads(self.file.read_text())
        except OSError as exc:
            raise ComposeError(f"{file}: {exc.strerror}") from None
        except ValueError as exc:
            raise ComposeError(f"{file}: this compose stand-in reads compose files written "
                               f"as JSON: {exc}") from None
        env = read_env_file(env_file) if env_file else {}
        env.update({k: v for k, v in os.environ.items() if v})
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict) or not services:
            raise ComposeError(f"{file}: no services")
        self.name = name or self.file.parent.name
        self.services: dict[str, dict[str, Any]] = {
            svc: _substitute(spec, env, f"{file}: services.{svc}")
            for svc, spec in services.items()}
        for svc, spec in self.services.items():
            if spec.get("network_mode", "host") != "host":
                raise ComposeError(f"{file}: services.{svc}: only network_mode host is used "
                                   "here")
            if not spec.get("image"):
                raise ComposeError(f"{file}: services.{svc}: no image")

    def container(self, svc: str) -> str:
        return str(self.services[svc].get("container_name") or f"{self.name}_{svc}_1")

    def env_files(self, svc: str) -> list[Path]:
        value = self.services[svc].get("env_file") or []
        items = [value] if isinstance(value, str) else list(value)
        return [(self.file.parent / str(p)).resolve() for p in items]

    def config_hash(self, svc: str) -> str:
        h = hashlib.sha256(json.dumps(self.services[svc], sort_keys=True).encode())
        for path in self.env_files(svc):
            h.update(path.read_bytes() if path.is_file() else b"")
        return h.hexdigest()[:16]

    def pick(self, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise ComposeError(f"{self.file}: no such service: {', '.join(unknown)}")
        return names or list(self.services)


def podman(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=capture, text=True, check=False)


def _inspect(name: str) -> dict[str, Any] | None:
    proc = podman("container", "inspect", name)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout or "[]")
    return found[0] if found else None


def _fail(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise ComposeError((proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}")


def up(project: Project, services: list[str]) -> None:
    for svc in project.pick(services):
        spec, name = project.services[svc], project.container(svc)
        wanted = project.config_hash(svc)
        current = _inspect(name)
        if current is not None:
            labels = current.get("Config", {}).get("Labels") or {}
            if labels.get("com.docker.compose.config-hash") == wanted and \
                    current.get("State", {}).get("Running"):
                print(f"Container {name}  Running")
                continue
            _fail(podman("rm", "-f", "-t", "10", name))
            print(f"Container {name}  Removed")
        argv = ["run", "-d", "--name", name, *RUN_OPTIONS,
                "--label", f"com.docker.compose.project={project.name}",
                "--label", f"com.docker.compose.service={svc}",
                "--label", f"com.docker.compose.config-hash={wanted}",
                "--label", f"com.docker.compose.project.config_files={project.file}"]
        for key, value in (spec.get("labels") or {}).items():
            argv += ["--label", f"{key}={value}"]
        for path in project.env_files(svc):
            argv += ["--env-file", str(path)]
        for key, value in (spec.get("environment") or {}).items():
            argv += ["--env", f"{key}={value}"]
        if spec.get("restart"):
            argv += ["--restart", str(spec["restart"])]
        argv.append(str(spec["image"]))
        command = spec.get("command")
        argv += [str(c) for c in command] if isinstance(command, list) else \
            ([str(command)] if command else [])
        _fail(podman(*argv))
        print(f"Container {name}  Started")


def down(project: Project) -> None:
    for svc in project.services:
        name = project.container(svc)
        if _inspect(name) is not None:
            _fail(podman("rm", "-f", "-t", "10", name))
            print(f"Container {name}  Removed")


def ps(project: Project, services: list[str], quiet: bool, show_all: bool,
       status: str | None, fmt: str | None) -> None:
    for svc in project.pick(services):
        info = _inspect(project.container(svc))
        if info is None:
            continue
        state = str(info.get("State", {}).get("Status", ""))
        if status and state != status:
            continue
        if not show_all and not status and state != "running":
            continue
        if quiet:
            print(info["Id"])
        elif fmt:
            print(fmt.replace("{{.State}}", state).replace("{{.Name}}", info["Name"])
                  .replace("{{.Service}}", svc).replace("{{.Image}}", info["ImageName"]))
        else:
            print(f"{info['Name']}  {info['ImageName']}  {svc}  {state}")


def pull(project: Project, services: list[str]) -> None:
    for svc in project.pick(services):
        image = str(project.services[svc]["image"])
        if podman("image", "exists", image).returncode == 0:
            print(f"{svc} Pulled ({image} is present)")
            continue
        _fail(podman("pull", image))
        print(f"{svc} Pulled")


def each(project: Project, services: list[str], *verb: str) -> None:
    for svc in project.pick(services):
        _fail(podman(*verb, project.container(svc)))


def compose(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="docker compose")
    parser.add_argument("-f", "--file", type=Path, default=Path("docker-compose.yaml"))
    parser.add_argument("--env-file", type=Path)
    parser.add_argument("-p", "--project-name")
    sub = parser.add_subparsers(dest="verb", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("-d", "--detach", action="store_true")
    p_up.add_argument("services", nargs="*")
    sub.add_parser("down")
    p_ps = sub.add_parser("ps")
    p_ps.add_argument("-q", "--quiet", action="store_true")
    p_ps.add_argument("-a", "--all", action="store_true")
    p_ps.add_argument("--status")
    p_ps.add_argument("--format")
    p_ps.add_argument("services", nargs="*")
    for verb in ("pull", "stop", "start"):
        sub.add_parser(verb).add_argument("services", nargs="*")
    p_kill = sub.add_parser("kill")
    p_kill.add_argument("-s", "--signal", default="KILL")
    p_kill.add_argument("services", nargs="*")
    args = parser.parse_args(argv)
    try:
        project = Project(args.file, args.env_file, args.project_name)
        if args.verb == "up":
            if not args.detach:
                raise ComposeError("only `up -d` is supported")
            up(project, args.services)
        elif args.verb == "down":
            down(project)
        elif args.verb == "ps":
            ps(project, args.services, args.quiet, args.all, args.status, args.format)
        elif args.verb == "pull":
            pull(project, args.services)
        elif args.verb == "kill":
            each(project, args.services, "kill", f"--signal={args.signal}")
        else:
            each(project, args.services, args.verb)
    except ComposeError as exc:
        print(f"docker compose: {exc}", file=sys.stderr)
        return 1
    return 0


_POLICIES = ("no", "always", "on-failure", "unless-stopped")


# A container carrying this label keeps its recorded policy in that directory (the demo's
# controllers: their own directory in the world's run dir, as the loopback mode's `disabled`
# markers); others in the images' cache directory.
POLICY_DIR_LABEL = "issu.demo.policy-dir"


def policy_file(directory: Path, name: str) -> Path:
    return directory / "restart-policy" / name


def _policy_file(name: str) -> Path:
    from demo.containers.images import cache_dir

    info = _inspect(name) or {}
    labels = info.get("Config", {}).get("Labels") or {}
    directory = labels.get(POLICY_DIR_LABEL)
    return policy_file(Path(directory) if directory else cache_dir().parent, name)


def restart_policy(directory: Path, name: str) -> str:
    """The policy `update --restart` recorded for container `name` in `directory`, ""
    when none."""
    try:
        return policy_file(directory, name).read_text().strip()
    except OSError:
        return ""


def update_restart(argv: list[str]) -> int:
    """`update --restart=POLICY NAME...` (`--restart POLICY` too); see the module's doc."""
    policy, names, rest = "", [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--restart="):
            policy = arg.split("=", 1)[1]
        elif arg == "--restart" and rest:
            policy = rest.pop(0)
        elif arg.startswith("-"):
            print(f"docker update: {arg}: only --restart is supported here", file=sys.stderr)
            return 2
        else:
            names.append(arg)
    if policy.split(":", 1)[0] not in _POLICIES or not names:
        print("usage: docker update --restart=no|always|on-failure|unless-stopped NAME...",
              file=sys.stderr)
        return 2
    for name in names:
        if podman("container", "exists", name).returncode != 0:
            print(f"docker update: no such container: {name}", file=sys.stderr)
            return 1
    for name in names:
        path = _policy_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(policy + "\n")
        print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["compose"]:
        return compose(args[1:])
    if args[:1] == ["update"] and any(a.startswith("--restart") for a in args):
        return update_restart(args[1:])
    if not args:
        print("usage: docker compose ... | docker <podman command>", file=sys.stderr)
        return 2
    return subprocess.run([*PODMAN, *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
