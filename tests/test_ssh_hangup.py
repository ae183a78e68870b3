"""An sshd that hangs up during the handshake (make chaos `cut-ssh` killed it; or MaxStartups
refused the connection): paramiko raises a bare EOFError, which left preflight with an empty
reason (`ssh compute-1: ` and nothing after). The error names the host and says what happened.

The hang-up comes two ways: a close after reading the client's first packet (the client then
reads EOF), or a reset before reading anything (RST, SO_LINGER 0: the client meets it while
it still writes its own banner, which a loaded machine's timing gave the first way too, read
as 'cannot connect: Connection reset by peer', as if the host were down).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.ssh import SshError, SshExecutor, SshTarget, SshUnreachable


@pytest.fixture(params=["closes", "resets"])
def hangs_up(request: pytest.FixtureRequest) -> Iterator[int]:
    """A server on loopback that says it is OpenSSH and hangs up: after reading the client's
    first packet (`closes`), or at once with a reset (`resets`)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                if request.param == "resets":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(timeout=10)


def test_a_server_hanging_up_mid_handshake_is_an_ssh_error_naming_the_host(
        hangs_up: int, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host_key = (tmp_path / "id_ed25519.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{hangs_up} {host_key[0]} {host_key[1]}\n")
    target = SshTarget("compute-1", "127.0.0.1", hangs_up, "root", key)
    with pytest.raises(SshError) as err:
        SshExecutor(known, connect_timeout_s=10).run(target, ["true"])
    message = str(err.value)
    assert message.startswith(f"compute-1 (root@127.0.0.1:{hangs_up}): ")
    assert "connection closed by the server during the SSH handshake" in message
    assert not isinstance(err.value, SshUnreachable)  # it answered: not a host to bring up
