"""What computes print over SSH to the probe and gap steps, and the files issu reads that
others write: known_hosts, SSH key files, the journal database. Any content is understood
or refused with an error naming the compute or the file; never another exception."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import paramiko
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import example, given
from hypothesis import strategies as st

from backends.compute import StepResult, parse_gap, parse_probe
from backends.known_hosts import KnownHosts, KnownHostsError
from backends.ssh import SshError, SshExecutor
from issu_tui.cli import cli
from issu_tui.journal import Journal, JournalError
from tests.fuzz.configs import GOOD_TOML, workdir
from tests.fuzz.contract import budget, no_traceback
from tests.fuzz.test_fuzz_messages import json_values

# ------------------------------------------------------------------------------ SSH output

_PROBE = {"version": "4.1.0", "control_nodes": ["127.0.0.101:5269"],
          "collectors": "127.0.0.101:8086", "agent_state": "Functional"}
ssh_text = st.one_of(
    st.text(), st.binary(max_size=500).map(lambda b: b.decode("utf-8", errors="replace")),
    json_values.map(json.dumps), st.dictionaries(st.sampled_from(sorted(_PROBE)), json_values)
    .map(lambda d: json.dumps({**_PROBE, **d})),
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=6)
    .map(lambda kv: "\n".join(f"{k}={v}" for k, v in kv)),
    st.integers(1, 200_000).map(lambda n: "{" + '"a":[' * n),
    st.integers(1, 100_000).map(lambda n: '{"gap_ms": ' + "9" * n + "}"),
    st.sampled_from(['{"gap_ms": 1e999}', '{"gap_ms": NaN}', "gap_ms=" + "9" * 400, "x" * 10**6,
                     "\x00\x1b[31mversion=4.1.0", "{" + '"a":[' * 100_000]))


@budget(500)
@given(text=ssh_text)
@example(text="{" + '"a":[' * 100_000)
@example(text='{"gap_ms": ' + "9" * 5000 + "}")
@example(text='{"gap_ms": ' + "9" * 400 + "}")
def test_probe_and_gap_output_is_understood_or_refused(text: str) -> None:
    try:
        probe = parse_probe(text)
        assert isinstance(probe.version, str) and all(isinstance(c, str)
                                                      for c in probe.control_nodes)
    except ValueError as exc:  # ComputeExecutor names the compute and the step around it
        assert str(exc)
    gap = parse_gap(text)
    assert gap is None or isinstance(gap, float)
    step = StepResult("health", "true", 1, text, text[::-1], 0.1)
    assert len(step.summary()) <= 300  # the line an error message quotes


# ------------------------------------------------------------------------------ known_hosts

_ED = ed25519.Ed25519PrivateKey.generate()
_ED_PUB = _ED.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode()
_HASHED = paramiko.HostKeys.hash_host("127.0.0.1")
kh_field = st.one_of(
    st.sampled_from(["127.0.0.1", "[127.0.0.1]:2222", "localhost", "*", "!127.0.0.1",
                     _HASHED, "|1|", "|1|x|y", "|1|@@@@|%%%%", "|2|a|b", "@revoked",
                     "@cert-authority", "@", "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256",
                     *_ED_PUB.split(), "AAAA", "====", "#"]),
    st.text(max_size=20), st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()))
kh_lines = st.lists(st.lists(kh_field, max_size=5).map(" ".join), max_size=8)


@budget(300)
@given(lines=kh_lines, raw=st.binary(max_size=200), use_raw=st.booleans())
@example(lines=["|1|@@@@|%%%% " + _ED_PUB], raw=b"", use_raw=False)
@example(lines=["@revoked"], raw=b"", use_raw=False)
def test_known_hosts_any_content(lines: list[str], raw: bytes, use_raw: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "known_hosts"
        path.write_bytes(raw if use_raw else "\n".join(lines).encode("utf-8", "replace"))
        try:
            found = KnownHosts(path).keys_for("127.0.0.1", 22)
            assert isinstance(found, dict)
            KnownHosts(path).keys_for("compute-9.example", 2222)  # a miss: the hashed lookup
        except KnownHostsError as exc:
            assert str(path) in str(exc)


# ------------------------------------------------------------------------------ key files

def _pem(key: object, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt,  # type: ignore[attr-defined]
                             serialization.NoEncryption())


_RSA = rsa.generate_private_key(65537, 1024)
_KEYS = [_pem(_ED, serialization.PrivateFormat.OpenSSH),
         _pem(_RSA, serialization.PrivateFormat.PKCS8),
         _pem(_RSA, serialization.PrivateFormat.TraditionalOpenSSL)]


@st.composite
def key_files(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(_KEYS))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "header"]))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7))) ]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        else:
            data = draw(st.sampled_from([b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
                                         b"-----BEGIN RSA PRIVATE KEY-----\n",
                                         b"-----BEGIN PRIVATE KEY-----\n"])) + data[at:]
    return data


def _unknown_cipher(pem: bytes) -> bytes:
    """The OpenSSH key with its cipher name `none` changed to `^one` (one bit)."""
    lines = pem.decode().splitlines()
    body = base64.b64decode("".join(lines[1:-1])).replace(b"none", b"^one", 1)
    return f"{lines[0]}\n{base64.b64encode(body).decode()}\n{lines[-1]}\n".encode()


@budget(300)
@given(data=st.one_of(key_files(), st.binary(max_size=300)))
@example(data=_unknown_cipher(_KEYS[0]))  # cryptography's UnsupportedAlgorithm escaped
def test_key_file_any_content(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "known_hosts").write_text("")
        key = Path(tmp) / "id"
        key.write_bytes(data)
        key.chmod(0o600)
        try:
            SshExecutor(Path(tmp) / "known_hosts")._key(key)
        except SshError as exc:
            assert str(key) in str(exc)


# ------------------------------------------------------------------------------ the journal

def _real_journal(directory: Path) -> bytes:
    journal = Journal.open(directory)
    for i in range(20):
        journal.event("fuzz", f"event {i}", level="info", n=i)
    journal.close()
    con = sqlite3.connect(directory / "journal.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return (directory / "journal.db").read_bytes()


def _foreign_sqlite(directory: Path, table: str) -> bytes:
    path = directory / "other.db"
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE {table} (x TEXT)")
    con.execute(f"INSERT INTO {table} VALUES ('theirs')")
    con.commit()
    con.close()
    return path.read_bytes()


with tempfile.TemporaryDirectory() as _tmp:
    _JOURNAL = _real_journal(Path(_tmp))
    _FOREIGN = [_foreign_sqlite(Path(_tmp) / str(i), t) for i, t in
                enumerate(["events", "intents", "photos"]) if (Path(_tmp) / str(i)).mkdir()
                is None]


def _renamed_column(data: bytes) -> bytes:
    """The journal with the events table's `id` column renamed in its schema (one byte)."""
    at = data.index(b"id INTEGER", data.index(b"CREATE TABLE events"))
    return data[:at] + b"ie" + data[at + 2:]


@st.composite
def journal_files(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from([_JOURNAL, *_FOREIGN]))
    kind = draw(st.sampled_from(["as is", "truncate", "flip", "random"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    if kind == "random":
        return draw(st.binary(max_size=4096))
    return data


@budget(100)
@given(data=journal_files(), read_only=st.booleans())
@example(data=b"not a database at all" * 100, read_only=False)
@example(data=b"not a database at all" * 100, read_only=True)
@example(data=_JOURNAL[:60] + b"\xff\xff\xff\xfe" + _JOURNAL[64:], read_only=False)  # user_version
@example(data=_renamed_column(_JOURNAL), read_only=False)  # every query: "no such column"
@example(data=_FOREIGN[2][:60] + b"\xff\x00\x00\x00" + _FOREIGN[2][64:], read_only=False)
@example(data=_FOREIGN[0][:60] + b"\x00\xff\x00\x00" + _FOREIGN[0][64:], read_only=True)
def test_journal_file_any_content(data: bytes, read_only: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        (root / "state").mkdir()
        path = root / "state" / "journal.db"
        path.write_bytes(data)
        ours = data == _JOURNAL
        try:
            journal = Journal.open(root / "state", read_only=read_only)
            journal.last_events(5)
            journal.phase()
            journal.close()
        except JournalError as exc:
            assert str(path) in str(exc)
            if not ours:
                assert path.read_bytes() == data  # another program's file is left as it was
        config = root / "issu.toml"
        config.write_text(GOOD_TOML)
        result = CliRunner().invoke(cli, ["status", "-c", str(config)])
        no_traceback(result)
        if data in _FOREIGN:
            assert path.read_bytes() == data
        shutil.rmtree(root / "state")


def test_seed_an_event_whose_fields_cell_is_damaged_reads_with_the_others(
        tmp_path: Path) -> None:
    """Found by the journal fuzzing (a damaged data page): one event's fields not JSON made
    every read of the latest events fail (`issu events`, `issu status`, the console)."""
    journal = Journal.open(tmp_path)
    for i in range(3):
        journal.event("fuzz", f"event {i}", n=i)
    journal.close()
    con = sqlite3.connect(tmp_path / "journal.db")
    con.execute("UPDATE events SET fields = '{not json' WHERE message = 'event 1'")
    con.commit()
    con.close()
    reader = Journal.open(tmp_path, read_only=True)
    events = reader.last_events(3)
    assert [e.message for e in events] == ["event 0", "event 1", "event 2"]
    assert events[1].fields == {"unreadable": "'{not json'"} and events[2].fields == {"n": 2}
    reader.close()
