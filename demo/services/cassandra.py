"""Apache Cassandra 5.0 run as CassandraDaemon on OpenJDK 17 from the Maven Central jars."""

from __future__ import annotations

import glob
import logging
import os
import re
import shlex
from pathlib import Path
from string import Template

from demo.services.base import Context, NotReady, Service, ServiceError, port_open
from demo.services.plan import CASSANDRA_CQL_PORT, CASSANDRA_STORAGE_PORT, REPO_ROOT
from demo.services.procs import Command

TEMPLATES = REPO_ROOT / "demo" / "cassandra"
DEFAULT_HEAP_MB = 384
# Serial GC: a 384 MiB heap needs no concurrent GC threads competing for a small box's cores.
DEFAULT_GC = ["-XX:+UseSerialGC"]
# Timer slack (ISSU_CASSANDRA_TIMER_SLACK_US, 0: the kernel's 50 us): the shared executor's
# spare workers park for 10 us at a time while waiting for work, which costs each JVM a
# good part of a core under a light steady load. 200 us takes most of that away and leaves
# the request latency unchanged (docs/benchmarks-archive.md, "timer slack").
DEFAULT_TIMER_SLACK_US = 200
GC_FLAG = re.compile(r"-XX:\+Use\w+GC$")

# Module access Cassandra 5.0 needs on JDK 17 (from conf/jvm17-server.options).
ADD_EXPORTS = (
    "java.base/jdk.internal.misc",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
    "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
    "jdk.compiler/com.sun.tools.javac.file",
    "jdk.attach/sun.tools.attach",
)
ADD_OPENS = (
    "java.base/java.lang.module",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "java.base/sun.nio.ch",
    "java.base/java.io",
    "java.base/java.lang.reflect",
    "java.base/java.lang",
    "java.base/java.util",
    "java.base/java.nio",
    "jdk.management/com.sun.management.internal",
    "jdk.compiler/com.sun.tools.javac",
)
JVM_OPENS = [
    *(f"--add-exports={v}=ALL-UNNAMED" for v in ADD_EXPORTS),
    *(f"--add-opens={v}=ALL-UNNAMED" for v in ADD_OPENS),
]


def java17() -> Path:
    """OpenJDK 17 (``$ISSU_JAVA_HOME`` wins; JAVA_HOME is ignored: it may be a JDK 24+)."""
    home = os.environ.get("ISSU_JAVA_HOME")
    candidates = [home] if home else sorted(glob.glob("/usr/lib/jvm/java-17-openjdk*"))
    for cand in candidates:
        java = Path(cand) / "bin" / "java"
        if java.is_file():
            return java
    raise ServiceError(
        "OpenJDK 17 not found (looked in ISSU_JAVA_HOME or /usr/lib/jvm/java-17-openjdk*); "
        "Cassandra 5.0 fails on Java 24+. Install openjdk-17-jre-headless (make services)."
    )


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"cassandra-(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(x) for x in match.groups()) if match else (0,)


def cassandra_lib() -> Path:
    """``$ISSU_CASSANDRA_LIB``, else the newest ``<cache>/cassandra-5.0.*/lib``."""
    explicit = os.environ.get("ISSU_CASSANDRA_LIB")
    if explicit:
        candidates = [explicit]
    else:
        xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        cache = Path(os.environ.get("ISSU_CACHE_DIR", xdg / "issu"))
        candidates = sorted(glob.glob(str(cache / "cassandra-5.0.*" / "lib")), key=_version_key)
        candidates.reverse()
    for cand in candidates:
        if glob.glob(os.path.join(cand, "cassandra-all-*.jar")):
            return Path(cand)
    raise ServiceError(
        "Cassandra jars not found (ISSU_CASSANDRA_LIB or ~/.cache/issu/cassandra-5.0.*/lib "
        "with cassandra-all-*.jar); run demo/install-services.sh"
    )


class CassandraService(Service):
    group = "cassandra"
    heavy = True
    start_timeout = 300.0
    stop_timeout = 40.0

    def __init__(self, ctx: Context, name: str, address: str, cluster_name: str) -> None:
        super().__init__(ctx, name)
        self.address = address
        self.cluster_name = cluster_name
        self.heap_mb = int(os.environ.get("ISSU_CASSANDRA_HEAP_MB", DEFAULT_HEAP_MB))

    @property
    def conf_dir(self) -> Path:
        return self.dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def log_files(self) -> list[Path]:
        return [self.console_log, self.log_dir / "system.log"]

    def listens(self) -> list[tuple[str, int]]:
        return [(self.address, CASSANDRA_CQL_PORT), (self.address, CASSANDRA_STORAGE_PORT)]

    def describe(self) -> str:
        return f"{self.address}:{CASSANDRA_CQL_PORT} cluster {self.cluster_name!r}"

    def prepare(self) -> None:
        data = self.dir / "data"
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        values = {
            "name": self.name,
            "cluster_name": self.cluster_name,
            "address": self.address,
            "storage_port": str(CASSANDRA_STORAGE_PORT),
            "cql_port": str(CASSANDRA_CQL_PORT),
            "data": str(data),
            "logdir": str(self.log_dir),
            "initial_token": "0",
            "auto_bootstrap": "false",
            "seeds": f"{self.address}:{CASSANDRA_STORAGE_PORT}",
            **self.ring_values(),
        }
        for template, target in (
            ("cassandra-template.yaml", "cassandra.yaml"),
            ("logback-template.xml", "logback.xml"),
        ):
            text = Template((TEMPLATES / template).read_text()).substitute(values)
            (self.conf_dir / target).write_text(text)

    def ring_values(self) -> dict[str, str]:
        """Template values a node of a multi-node ring overrides (tokens, seeds, bootstrap)."""
        return {}

    def ring_jvm_options(self) -> list[str]:
        """JVM options of a multi-node ring's node (JMX for nodetool)."""
        return ["-Dcassandra.shutdown_announce_in_ms=0"]  # alone: nobody to tell, stop sooner

    def commands(self) -> list[Command]:
        lib = cassandra_lib()
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise ServiceError(f"{lib}: jamm-*.jar missing (needed as -javaagent)")
        heap = f"{self.heap_mb}m"
        extra = shlex.split(os.environ.get("ISSU_CASSANDRA_JVM_OPTS", ""))
        argv = [
            str(java17()),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Xss256k",
            *([] if any(GC_FLAG.match(o) for o in extra) else DEFAULT_GC),
            # C1 only: less CPU to start on a crowded box; tests and the
            # demo move little data. ISSU_CASSANDRA_JVM_OPTS=-XX:TieredStopAtLevel=4 undoes it.
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-Djdk.attach.allowAttachSelf=true",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dio.netty.allocator.useCacheForAllThreads=true",
            "-Dio.netty.allocator.maxOrder=11",
            *JVM_OPENS,
            *extra,
            f"-javaagent:{jamm[-1]}",
            f"-Dcassandra.config=file://{self.conf_dir / 'cassandra.yaml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={self.dir / 'data'}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            # No cassandra.jmx.*.port: JMX stays off, so instances never collide on 7199.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.superuser_setup_delay_ms=0",
            *self.ring_jvm_options(),
            "-cp",
            f"{self.conf_dir}:{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        slack_us = int(os.environ.get("ISSU_CASSANDRA_TIMER_SLACK_US", DEFAULT_TIMER_SLACK_US))
        return [Command(tuple(argv), self.base_env(), self.dir, timer_slack_ns=1000 * slack_us)]

    def check_ready(self) -> None:
        if not port_open(self.address, CASSANDRA_CQL_PORT):
            raise NotReady(f"CQL port {self.address}:{CASSANDRA_CQL_PORT} closed")
        version = cql_release_version(self.address, CASSANDRA_CQL_PORT)
        if not version.startswith("5."):
            raise ServiceError(f"{self.name}: unexpected release_version {version!r}")


def cql_release_version(host: str, port: int) -> str:
    """``SELECT release_version FROM system.local`` through the DataStax driver."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import WhiteListRoundRobinPolicy

    logging.getLogger("cassandra").setLevel(logging.ERROR)
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=10
    )
    cluster = Cluster(
        contact_points=[host],
        port=port,
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    except NoHostAvailable as exc:
        raise NotReady(f"CQL {host}:{port}: {exc}") from exc
    except Exception as exc:  # driver raises many types while the node is still booting
        raise NotReady(f"CQL {host}:{port}: {type(exc).__name__}: {exc}") from exc
    finally:
        cluster.shutdown()
