"""backends/ssh.py against the real OpenSSH servers of the test network (key login only)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from backends.ssh import HostKeyError, SshError, SshExecutor, SshTarget, quote_argv, run_parallel
from demo.services import Endpoints, Launcher


@pytest.fixture(scope="module")
def ssh(launcher: Launcher) -> Endpoints:
    return launcher.up(only=["ssh"])


def _target(ep: Endpoints, index: int = 0) -> SshTarget:
    s = ep.ssh
    return SshTarget(s.names[index], s.addresses[index], s.port, s.user, s.key_path)


def _executor(ep: Endpoints, known_hosts: Path | None = None, **kw: float) -> SshExecutor:
    return SshExecutor(known_hosts or ep.ssh.known_hosts_path, **kw)


def test_runs_command_with_verified_host_key(ssh: Endpoints) -> None:
    result = _executor(ssh).run(_target(ssh, 1), ["printenv", "ISSU_DEMO_HOST"])
    assert result.exit_code == 0
    assert result.stdout.strip() == ssh.ssh.names[1]


def test_captures_both_streams_and_exit_code(ssh: Endpoints) -> None:
    result = _executor(ssh).run(_target(ssh), ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok


def test_unknown_host_key_is_refused(ssh: Endpoints, tmp_path: Path) -> None:
    target = _target(ssh, 2)
    lines = ssh.ssh.known_hosts_path.read_text().splitlines()
    others = [ln for ln in lines if ln.split()[0] != target.address]
    assert len(others) < len(lines)
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(others) + "\n")
    before = known.read_text()
    with pytest.raises(HostKeyError) as err:
        _executor(ssh, known).run(target, ["true"])
    message = str(err.value)
    assert "UNKNOWN" in message and target.name in message and target.address in message
    assert known.read_text() == before  # never added automatically


def test_changed_host_key_is_refused(ssh: Endpoints, tmp_path: Path) -> None:
    target = _target(ssh)
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    pub = " ".join(Path(f"{impostor}.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"{target.address} {pub}\n")
    with pytest.raises(HostKeyError) as err:
        _executor(ssh, known).run(target, ["true"])
    message = str(err.value)
    assert "CHANGED" in message and target.name in message and target.address in message


def test_missing_known_hosts_is_refused(ssh: Endpoints, tmp_path: Path) -> None:
    with pytest.raises(HostKeyError, match="does not exist"):
        _executor(ssh, tmp_path / "nope").run(_target(ssh), ["true"])


def test_wrong_key_is_an_authentication_error(ssh: Endpoints, tmp_path: Path) -> None:
    other = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    target = _target(ssh)
    stranger = SshTarget(target.name, target.address, target.port, target.user, other)
    with pytest.raises(SshError, match="authentication"):
        _executor(ssh).run(stranger, ["true"])


def test_command_timeout(ssh: Endpoints) -> None:
    result = _executor(ssh).run(_target(ssh), ["sleep", "30"], timeout_s=0.5)
    assert result.timed_out
    assert result.exit_code is None
    assert "timed out" in result.stderr


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_timed_out_command_dies_on_the_remote_side(ssh: Endpoints, tmp_path: Path) -> None:
    # A shell and a background child that would outlive a closed channel (no pty, no HUP):
    # the command timeout must end both on the remote host, not only locally.
    pids = tmp_path / "pids"
    script = 'sleep 300 & echo "$!" > "$1.tmp"; echo "$$" >> "$1.tmp"; mv "$1.tmp" "$1"; wait'
    result = _executor(ssh).run(_target(ssh), ["sh", "-c", script, "sh", str(pids)],
                                timeout_s=5.0)
    assert result.timed_out
    # On a crowded box the remote login shell may start the command after we gave up.
    deadline = time.monotonic() + 90.0
    while not pids.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids.is_file(), "the remote command never started"
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in started if _alive(p)] == []


def test_remote_timeout_is_never_zero_and_argv_stays_literal() -> None:
    from backends.ssh import remote_command

    sent = remote_command(["--help", "a b"], 0.0)
    assert sent == "timeout -k 10 -- 0.001 --help 'a b'"  # 0 would mean "no timeout"
    assert remote_command(["true"], 1800.0) == "timeout -k 10 -- 1800 true"


def test_connect_timeout_or_refusal_names_the_host(ssh: Endpoints) -> None:
    # Nothing listens on this loopback port: a clear connection error naming the host.
    target = SshTarget("ghost", ssh.ssh.addresses[0], 1, ssh.ssh.user, ssh.ssh.key_path)
    with pytest.raises(SshError, match="ghost"):
        _executor(ssh, connect_timeout_s=2).run(target, ["true"])


HOSTILE = [
    "; rm -rf /",
    "x; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "a'b\"c",
    "line1\nline2",
    "*",
    "--help",
    "",
    "$HOME && echo pwned | tee {canary}",
]


def test_hostile_arguments_arrive_as_literal_argv_items(ssh: Endpoints, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [a.format(canary=canary) for a in HOSTILE]
    argv = ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args]
    result = _executor(ssh).run(_target(ssh), argv)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == args
    assert not canary.exists()
    # the display form is the quoted command that was sent
    assert result.command == quote_argv(argv)


def test_rejects_non_string_arguments() -> None:
    with pytest.raises(TypeError):
        quote_argv(["echo", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        quote_argv([])


def test_bounded_parallel_runs(ssh: Endpoints) -> None:
    executor = _executor(ssh)
    targets = [_target(ssh, i) for i in range(len(ssh.ssh.names))] * 2
    in_flight = []
    peak = [0]

    def work(target: SshTarget) -> str:
        in_flight.append(1)
        peak[0] = max(peak[0], len(in_flight))
        try:
            return executor.run(target, ["printenv", "ISSU_DEMO_HOST"]).stdout.strip()
        finally:
            in_flight.pop()

    results = [(t.name, out, err) for t, out, err in run_parallel(targets, work, parallel=3)]
    assert len(results) == len(targets)
    assert all(err is None and out == name for name, out, err in results)
    assert peak[0] <= 3


def test_one_session_runs_several_commands(ssh: Endpoints) -> None:
    with _executor(ssh).connect(_target(ssh, 3)) as session:
        outputs = [session.run(["echo", str(i)]).stdout.strip() for i in range(3)]
    assert outputs == ["0", "1", "2"]


def _impostor_pub(tmp_path: Path) -> str:
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    return " ".join(Path(f"{impostor}.pub").read_text().split()[:2])


def test_hashed_known_hosts_entries_are_verified(ssh: Endpoints, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(ssh.ssh.known_hosts_path.read_text())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True,
                   capture_output=True)
    assert ssh.ssh.addresses[3] not in known.read_text()  # every name is hashed now
    result = _executor(ssh, known).run(_target(ssh, 3), ["printenv", "ISSU_DEMO_HOST"])
    assert result.stdout.strip() == ssh.ssh.names[3]


def test_known_hosts_edited_mid_run_is_heard_on_the_next_connection(
        ssh: Endpoints, tmp_path: Path) -> None:
    """The parsed file is cached per executor; a change on disk must not be missed."""
    target = _target(ssh, 2)
    known = tmp_path / "known_hosts"
    known.write_text(ssh.ssh.known_hosts_path.read_text())
    executor = _executor(ssh, known)
    assert executor.run(target, ["true"]).ok
    others = [ln for ln in known.read_text().splitlines() if ln.split()[0] != target.address]
    known.write_text("\n".join(others) + f"\n{target.address} {_impostor_pub(tmp_path)}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        executor.run(target, ["true"])


def test_revoked_host_key_is_refused(ssh: Endpoints, tmp_path: Path) -> None:
    target = _target(ssh, 1)
    lines = ssh.ssh.known_hosts_path.read_text().splitlines()
    own = [ln for ln in lines if ln.split()[0] == target.address]
    assert own
    known = tmp_path / "known_hosts"
    revoked = [f"@revoked * {' '.join(ln.split()[1:3])}" for ln in own]
    known.write_text("\n".join(lines + revoked) + "\n")
    with pytest.raises(HostKeyError, match="UNKNOWN"):
        _executor(ssh, known).run(target, ["true"])


def test_revoked_marker_with_tabs_and_malformed_lines(ssh: Endpoints, tmp_path: Path) -> None:
    """OpenSSH reads fields split by any spaces or tabs and skips lines it cannot parse:
    a bad line breaks nothing else, and a tab-separated `@revoked` line still revokes."""
    lines = ssh.ssh.known_hosts_path.read_text().splitlines()
    target = _target(ssh, 1)
    own = [ln.split() for ln in lines if ln.split()[0] == target.address]
    messy = [
        "bad.example ssh-ed25519 not-base64!!",
        "@cert-authority *.example ssh-ed25519 AAAA",
        *["  ".join(ln.split()) for ln in lines],  # double spaces between the fields
    ]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(messy) + "\n")
    assert _executor(ssh, known).run(target, ["true"]).ok
    revoked = tmp_path / "known_hosts.revoked"
    revoked.write_text("\n".join(
        [*messy, *["\t".join(["@revoked", "*", *fields[1:3]]) for fields in own]]) + "\n")
    with pytest.raises(HostKeyError, match="UNKNOWN"):
        _executor(ssh, revoked).run(target, ["true"])
