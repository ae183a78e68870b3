"""Build the demo's images once, from Debian's packages: no registry is involved.

A base root filesystem from `debootstrap --variant=minbase --include=python3` is kept as a
tar in the cache (`ISSU_CACHE_DIR`, like the Cassandra jars) and imported as
`localhost/issu-base:<suite>-<key>`; on it, one small image per Contrail image and release
(`localhost/contrail-vrouter-agent:4.1.0`, `:5.0.0`, `contrail-controller-config-api`...),
carrying its release (and the agent's simulated process). Every step is skipped when its
result is there (an image carries the hash of what made it in a label), and builds are
serialised by a lock file in the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from demo.containers.engine import Engine, EngineUnavailable

SUITE = "bookworm"
MIRROR = os.environ.get("ISSU_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", "--include=python3")
RELEASES = ("4.1.0", "5.0.0")
KEY_LABEL = "issu.image.key"
AGENT_SOURCE = Path(__file__).with_name("agent.py")
# Contrail's image names; the demo builds the ones it runs.
VROUTER_AGENT = "contrail-vrouter-agent"
# The controller's: the simulated services run from the repository, bind-mounted read-only
# (demo/containers/controllers.py); these carry the release and the Debian userland.
CONTROLLER_IMAGES = ("contrail-controller-config-api", "contrail-controller-control-control",
                     "contrail-analytics-api", "contrail-controller-config-schema",
                     "contrail-controller-config-svcmonitor",
                     "contrail-controller-config-devicemgr")
IMAGES = (VROUTER_AGENT, *CONTROLLER_IMAGES)


def cache_dir() -> Path:
    base = os.environ.get("ISSU_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "issu")
    return Path(base) / "images"


def image_ref(name: str, release: str) -> str:
    return f"localhost/{name}:{release}"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuildReport:
    base: str
    images: dict[str, str]  # "contrail-vrouter-agent:4.1.0" -> "built" / "present"
    seconds: float


def _log(message: str) -> None:
    print(f"containers: {message}", file=sys.stderr, flush=True)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _base_tar(cache: Path, key: str) -> Path:
    """The debootstrapped root filesystem as a tar, made once."""
    tar = cache / f"base-{SUITE}-{key}.tar"
    if tar.is_file():
        return tar
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise EngineUnavailable("debootstrap is not installed (make containers-install "
                                "installs it)")
    for stale in cache.glob("rootfs-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    log = cache / "debootstrap.log"
    try:
        _log(f"debootstrap {SUITE} from {MIRROR} (a few minutes, once; log: {log})")
        with open(log, "w") as out:
            proc = subprocess.run([*DEBOOTSTRAP, SUITE, str(rootfs), MIRROR], stdout=out,
                                  stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()
            raise EngineUnavailable(f"debootstrap failed (exit {proc.returncode}): "
                                    f"{tail[-1] if tail else ''} (log: {log})")
        partial = tar.with_suffix(".tar.part")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial),
                        "."], check=True)
        partial.rename(tar)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tar


def _build(engine: Engine, ref: str, key: str, containerfile: str,
           files: Sequence[tuple[str, bytes, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="issu-image-") as ctx:
        for name, data, mode in files:
            path = Path(ctx) / name
            path.write_bytes(data)
            path.chmod(mode)
        (Path(ctx) / "Containerfile").write_text(containerfile)
        engine.run("build", "--quiet", "--label", f"{KEY_LABEL}={key}", "-t", ref,
                   "-f", str(Path(ctx) / "Containerfile"), ctx)


def ensure_images(engine: Engine | None = None, cache: Path | None = None) -> BuildReport:
    """Build whatever is missing; return what was built and what was already there."""
    engine = engine or Engine()
    cache = cache or cache_dir()
    began = time.monotonic()
    done: dict[str, str] = {}
    with _locked(cache):
        base_key = _digest(*DEBOOTSTRAP, SUITE, MIRROR)
        base = f"localhost/issu-base:{SUITE}-{base_key}"
        if not engine.image_exists(base):
            tar = _base_tar(cache, base_key)
            _log(f"importing {tar.name} as {base}")
            engine.run("import", "--change", "CMD /bin/bash", str(tar), base)
        agent = AGENT_SOURCE.read_bytes()
        for release in RELEASES:
            ref = image_ref(VROUTER_AGENT, release)
            containerfile = (
                f"FROM {base}\n"
                "COPY contrail-vrouter-agent /usr/bin/contrail-vrouter-agent\n"
                "COPY contrail-version /etc/contrail/contrail-version\n"
                f"LABEL org.opencontainers.image.version={release}\n"
                'CMD ["/usr/bin/contrail-vrouter-agent"]\n')
            key = _digest(base, containerfile, agent)
            if engine.image_label(ref, KEY_LABEL) == key:
                done[f"{VROUTER_AGENT}:{release}"] = "present"
                continue
            _log(f"building {ref}")
            _build(engine, ref, key, containerfile,
                   [("contrail-vrouter-agent", agent, 0o755),
                    ("contrail-version", f"{release}\n".encode(), 0o644)])
            done[f"{VROUTER_AGENT}:{release}"] = "built"
        for name in CONTROLLER_IMAGES:
            for release in RELEASES:
                ref = image_ref(name, release)
                containerfile = (
                    f"FROM {base}\n"
                    "COPY contrail-version /etc/contrail/contrail-version\n"
                    f"LABEL org.opencontainers.image.version={release}\n")
                key = _digest(base, containerfile)
                if engine.image_label(ref, KEY_LABEL) == key:
                    done[f"{name}:{release}"] = "present"
                    continue
                _log(f"building {ref}")
                _build(engine, ref, key, containerfile,
                       [("contrail-version", f"{release}\n".encode(), 0o644)])
                done[f"{name}:{release}"] = "built"
    return BuildReport(base, done, time.monotonic() - began)
