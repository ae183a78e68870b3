"""known_hosts, parsed once and indexed by host name.

paramiko's `SSHClient.load_system_host_keys` parses the whole file, every key in it, on
each connection, and `HostKeys.lookup` scans every entry: with 1,000 computes that is a
million key parses for one pass over the fleet, a cost that grows with the square of the
fleet (docs/benchmarks-orchestrator.md). Here the file is parsed once, plain
names go into a dict, hashed (`|1|...`) entries are kept aside and tried one by one only
for names the dict does not know, and the file is re-read when it changes on disk (an
operator who fixes an entry mid-run is heard on the next connection).
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey


class KnownHostsError(Exception):
    """The known_hosts file is missing or cannot be parsed."""


@dataclass(frozen=True)
class _Stamp:
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def lookup_name(address: str, port: int) -> str:
    """The name OpenSSH (and paramiko) look up: `host` on port 22, `[host]:port` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def _hashed_name_readable(name: str) -> bool:
    """`|1|<base64 salt of 20 bytes>|<base64 hash>`, as OpenSSH writes hashed names."""
    parts = name.split("|")
    try:
        return len(parts) == 4 and len(base64.b64decode(parts[2], validate=True)) == 20 \
            and bool(base64.b64decode(parts[3], validate=True))
    except ValueError:  # binascii.Error
        return False


class KnownHosts:
    """Thread-safe, change-aware view of one known_hosts file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._plain: dict[str, dict[str, paramiko.PKey]] = {}
        self._hashed: paramiko.HostKeys = paramiko.HostKeys()
        self._revoked: set[tuple[str, str]] = set()
        self._has_hashed = False

    def _current_stamp(self) -> _Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise KnownHostsError(f"known_hosts file {self.path} does not exist") from None
        except OSError as exc:
            raise KnownHostsError(f"known_hosts {self.path} cannot be read: {exc}") from None
        return _Stamp(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _reload(self) -> None:
        # One pass with paramiko's public line parser (HostKeys.load checks every line
        # against every entry before it: quadratic in the file's length).
        plain: dict[str, dict[str, paramiko.PKey]] = {}
        hashed = paramiko.HostKeys()
        revoked: set[tuple[str, str]] = set()
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                lines = [(n, line.strip()) for n, line in enumerate(fh, 1)]
        except OSError as exc:
            raise KnownHostsError(f"known_hosts {self.path} cannot be read: {exc}") from None
        for lineno, line in lines:
            if not line or line.startswith("#"):
                continue
            fields = line.split()  # spaces or tabs, any number, as OpenSSH reads them
            marker = ""
            if fields[0].startswith("@"):
                marker, fields = fields[0], fields[1:]
                if marker != "@revoked":
                    continue  # @cert-authority (certificates are not used) or unknown: skipped
            try:
                entry = HostKeyEntry.from_line(" ".join(fields), lineno)
            except (paramiko.SSHException, InvalidHostKey, ValueError):
                continue  # an unreadable line (bad base64, unknown key type) matches nothing
            if entry is None:
                continue
            if marker:
                revoked.add((entry.key.get_name(), entry.key.get_base64()))
                continue
            for name in entry.hostnames:
                if name.startswith("|1|"):
                    if not _hashed_name_readable(name):
                        continue  # a salt paramiko would assert on at lookup: matches nothing
                    hashed.add(name, entry.key.get_name(), entry.key)
                else:
                    plain.setdefault(name, {}).setdefault(entry.key.get_name(), entry.key)
        self._plain, self._hashed, self._revoked = plain, hashed, revoked
        self._has_hashed = bool(hashed.keys())

    def keys_for(self, address: str, port: int) -> dict[str, paramiko.PKey]:
        """key type -> key for this host (empty when the host is unknown)."""
        name = lookup_name(address, port)
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                self._reload()
                self._stamp = stamp
            found = dict(self._plain.get(name, {}))
            if not found and self._has_hashed:
                hashed = self._hashed.lookup(name)  # an HMAC per hashed entry: only on a miss
                if hashed is not None:
                    found = {key_type: hashed[key_type] for key_type in hashed}
                    self._plain[name] = dict(found)  # resolved once per file version
            return {t: k for t, k in found.items() if (t, k.get_base64()) not in self._revoked}
