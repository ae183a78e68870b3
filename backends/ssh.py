"""Run commands on remote hosts over SSH (paramiko), safely and in bounded parallel.

- Key authentication only: no passwords, no SSH agent, no agent forwarding, no key search.
- Host keys are verified against one known_hosts file; an unknown or changed key is a
  refusal (`HostKeyError` naming the host), never an automatic addition.
- Commands are argv lists joined with `shlex.quote` item by item, so an argument such as
  `x; rm -rf /` arrives on the remote side as one literal argv item.
- Connect and command timeouts; stdout/stderr are captured (bounded, the tail is kept).
  The command timeout holds on the remote side too: every command runs there under
  coreutils `timeout` (TERM, then KILL 10 s later, to its whole process group), because
  closing the channel of a command without a pty does not stop it.
"""

from __future__ import annotations

import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

from backends.known_hosts import KnownHosts, KnownHostsError, lookup_name

MAX_OUTPUT_BYTES = 1 << 20  # per stream; the tail is kept beyond this


def _said(exc: BaseException) -> str:
    """The error's text; paramiko raises EOFError() with none when the server hangs up."""
    if isinstance(exc, EOFError) and not str(exc):
        return "connection closed by the server"
    return str(exc) or type(exc).__name__


class SshError(Exception):
    """The command could not be run (connection, authentication, host key, protocol)."""


class HostKeyError(SshError):
    """The host's key is unknown or differs from known_hosts: the connection is refused."""


class SshTimeout(SshError):
    pass


class SshUnreachable(SshError):
    """Nothing answered on the address and port (refused, no route)."""


class SshAuthError(SshError):
    """The server refused the key."""


@dataclass(frozen=True)
class SshTarget:
    name: str
    address: str
    port: int
    user: str
    key_path: Path

    @property
    def where(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.name} ({self.user}@{self.address}{port})"


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    command: str  # display form: the argv joined with shlex.quote (sent under `timeout`)
    exit_code: int | None  # None when the command timed out or the channel broke
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def quote_argv(argv: Sequence[str]) -> str:
    """The one place where an argv becomes a remote shell string."""
    if not argv:
        raise ValueError("empty command")
    for item in argv:
        if not isinstance(item, str):
            raise TypeError(f"argv items must be str, got {type(item).__name__}: {item!r}")
        if "\x00" in item:
            raise ValueError("argv item contains a NUL byte")
    return " ".join(shlex.quote(item) for item in argv)


REMOTE_KILL_AFTER_S = 10  # after the remote TERM, KILL what is still running


def remote_command(argv: Sequence[str], timeout_s: float) -> str:
    """The shell string sent for `argv`: it runs under `timeout`, so that the remote
    command and its children are signalled when the command timeout expires even though
    we only close the channel (sshd does not signal a command without a pty)."""
    seconds = f"{max(timeout_s, 0.001):.3f}".rstrip("0").rstrip(".")  # 0 would disable it
    return quote_argv(["timeout", "-k", str(REMOTE_KILL_AFTER_S), "--", seconds, *argv])


class _Tail:
    """Collects a stream, keeping at most MAX_OUTPUT_BYTES (the end)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > MAX_OUTPUT_BYTES and len(self.chunks) > 1:
            first = self.chunks.pop(0)
            self.size -= len(first)
            self.dropped += len(first)

    def text(self) -> str:
        data = b"".join(self.chunks)
        if len(data) > MAX_OUTPUT_BYTES:
            self.dropped += len(data) - MAX_OUTPUT_BYTES
            data = data[-MAX_OUTPUT_BYTES:]
        text = data.decode("utf-8", errors="replace")
        if self.dropped:
            text = f"[... {self.dropped} bytes dropped ...]\n{text}"
        return text


class SshSession:
    """One authenticated connection; several commands (even concurrently) may use it."""

    def __init__(self, target: SshTarget, client: paramiko.SSHClient, command_timeout_s: float):
        self.target = target
        self._client = client
        self.command_timeout_s = command_timeout_s

    def run(self, argv: Sequence[str], timeout_s: float | None = None) -> CommandResult:
        command = quote_argv(argv)
        timeout = self.command_timeout_s if timeout_s is None else timeout_s
        began = time.monotonic()
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError(f"{self.target.where}: connection is closed")
        try:
            channel = transport.open_session(timeout=min(timeout, 30.0))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(f"{self.target.where}: cannot open a session: {_said(exc)}"
                           ) from exc
        out, err = _Tail(), _Tail()
        deadline = began + timeout
        try:
            channel.exec_command(remote_command(argv, timeout))
            channel.shutdown_write()
            while True:
                while channel.recv_ready():
                    out.add(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(65536))
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return CommandResult(tuple(argv), command, None, out.text(),
                                         err.text() + f"\n[issu: timed out after {timeout:g} s]",
                                         time.monotonic() - began, timed_out=True)
                if channel.closed or (channel.eof_received and channel.eof_sent
                                      and not channel.recv_ready()
                                      and not channel.recv_stderr_ready()):
                    # Closed: the exit status follows at once, or the connection broke.
                    if not channel.status_event.wait(min(left, 5.0)):
                        raise SshError(f"{self.target.where}: connection closed before the "
                                       "command reported its exit status")
                    continue
                # The channel's fileno is signalled by stdout, stderr and close.
                select.select([channel], [], [], min(left, 0.5))
            code = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(f"{self.target.where}: {' '.join(argv[:1])}: {_said(exc)}"
                           ) from exc
        finally:
            channel.close()
        return CommandResult(tuple(argv), command, code, out.text(), err.text(),
                             time.monotonic() - began)

    def close(self) -> None:
        self._client.close()

    @property
    def active(self) -> bool:
        """The connection is still up (as far as this side knows)."""
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SshExecutor:
    """Opens verified, key-only SSH sessions and runs argv commands on them."""

    def __init__(self, known_hosts: Path, connect_timeout_s: float = 10.0,
                 command_timeout_s: float = 1800.0) -> None:
        self.known_hosts = Path(known_hosts)
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._host_keys = KnownHosts(self.known_hosts)
        self._keys: dict[Path, paramiko.PKey] = {}
        self._keys_lock = threading.Lock()

    def _key(self, path: Path) -> paramiko.PKey:
        with self._keys_lock:
            key = self._keys.get(path)
            if key is None:
                try:
                    key = paramiko.PKey.from_path(path)
                except FileNotFoundError:
                    raise SshError(f"ssh key {path} does not exist") from None
                except paramiko.PasswordRequiredException:
                    raise SshError(
                        f"ssh key {path} is encrypted; issu needs a key without passphrase "
                        "(the SSH agent is not used)"
                    ) from None
                except Exception as exc:  # any other content: paramiko's and cryptography's
                    raise SshError(f"ssh key {path} cannot be loaded: "  # own exceptions
                                   f"{type(exc).__name__}: {exc}") from None
                self._keys[path] = key
            return key

    def connect(self, target: SshTarget) -> SshSession:
        try:
            accepted = self._host_keys.keys_for(target.address, target.port)
        except KnownHostsError as exc:
            raise HostKeyError(f"{target.where}: {exc}") from None
        pkey = self._key(Path(target.key_path))
        client = paramiko.SSHClient()
        # Only this host's accepted keys, never written back (no save_host_keys anywhere);
        # RejectPolicy refuses a host that has none.
        known = client.get_host_keys()
        for key_type, key in accepted.items():
            known.add(lookup_name(target.address, target.port), key_type, key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        timeout = self.connect_timeout_s
        try:
            # Our own socket, for TCP_NODELAY: SSH's small request/answer packets otherwise
            # meet Nagle and delayed ACKs (the delayed-ACK timer on every round trip, even on
            # loopback).
            sock = socket.create_connection((target.address, target.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(
                target.address, port=target.port, username=target.user, pkey=pkey, sock=sock,
                allow_agent=False, look_for_keys=False, timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{target.where}: host key CHANGED: the server presented a "
                f"{exc.key.get_name()} key that differs from {self.known_hosts}; refusing to "
                "connect (if the host was reinstalled, verify and update known_hosts)"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SshAuthError(f"{target.where}: key authentication with {target.key_path} "
                               f"failed: {exc}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"{target.where}: host key UNKNOWN: no entry in {self.known_hosts}; "
                    "refusing to connect (add the host's verified key to known_hosts)"
                ) from None
            raise SshError(f"{target.where}: {exc}") from None
        except (EOFError, ConnectionResetError, BrokenPipeError):
            # paramiko's EOFError has no message; a reset or a broken pipe is the same hang-up
            # met while the client was still writing (the timing of a loaded machine)
            client.close()
            raise SshError(f"{target.where}: {_said(EOFError())} during the SSH handshake "
                           "(sshd killed, or refusing more unauthenticated connections: "
                           "MaxStartups)") from None
        except (TimeoutError, socket.timeout) as exc:  # noqa: UP041
            client.close()
            raise SshTimeout(f"{target.where}: connect timed out after {timeout:g} s") from exc
        except OSError as exc:
            client.close()
            raise SshUnreachable(f"{target.where}: cannot connect: {exc.strerror or exc}"
                                 ) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return SshSession(target, client, self.command_timeout_s)

    def run(self, target: SshTarget, argv: Sequence[str],
            timeout_s: float | None = None) -> CommandResult:
        """Connect, run one command, disconnect."""
        with self.connect(target) as session:
            return session.run(argv, timeout_s)


T = TypeVar("T")
R = TypeVar("R")


def run_parallel(items: Iterable[T], work: Callable[[T], R], parallel: int) -> Iterator[
        tuple[T, R | None, BaseException | None]]:
    """Run `work` over `items` with at most `parallel` in flight; yield (item, result, error)
    as each finishes. Items are consumed lazily, so memory stays flat for long inputs."""
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    source = iter(items)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="issu-ssh") as pool:
        running: dict[Future[R], T] = {}

        def fill() -> None:
            while len(running) < parallel:
                try:
                    item = next(source)
                except StopIteration:
                    return
                running[pool.submit(work, item)] = item

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                yield item, (None if error else future.result()), error
            fill()
