"""The configuration as an outsider writes it: issu.toml and the original issu.conf as any
bytes (other encodings, byte-order marks, truncated, huge, wrongly nested) and as structured
values of the wrong types and ranges. Whatever the file holds: the config loads, or a
ConfigError names the file and the key; the commands exit 2 saying so; nothing is written;
never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from issu_tui import runsync_cli, sync_cli
from issu_tui.cli import cli
from issu_tui.config import ConfigError, IssuConfig, config_as_dict, load_config
from tests.fuzz.configs import GOOD_INI, GOOD_TOML, workdir
from tests.fuzz.contract import EXIT_USAGE, budget, no_traceback, unchanged
from tests.fuzz.shapes import paths

# ------------------------------------------------------------------------------ bytes

_BOMS = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"]
_CODECS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp500", "latin-1", "utf-7"]
_WRONG_NESTING = [
    ("[old.cassandra]", "[[old.cassandra]]"), ("[old.cassandra]", "[old.cassandra.hosts]"),
    ("[[computes]]", "[computes]"), ("[new]", "[new.new]"), ("[ssh]", "[[ssh]]"),
    ("[old.zookeeper]", "[zookeeper]"), ("[DEFAULTS]", "[DEFAULT]"),
    ("[DEFAULTS]", "[defaults]"), ("[DEFAULTS]", "[DEFAULTS]\n[DEFAULTS]"),
    ("old_rabbit_port = 5672", "old_rabbit_port = five"),
    ('hosts = ["127.0.0.12"]', 'hosts = "127.0.0.12"'),
    ('hosts = ["127.0.0.12"]', "hosts = [[1, 2], {a = 1}]"),
]


@st.composite
def mutated(draw: st.DrawFn, base: str) -> bytes:
    text = base
    if draw(st.booleans()):
        old, new = draw(st.sampled_from(_WRONG_NESTING))
        text = text.replace(old, new)
    if draw(st.booleans()):  # a non-ASCII value, so the encoding matters
        text = text.replace("guest", draw(st.sampled_from(["gäst", "гость", "客人", "\u00a0"])), 1)
    data = text.encode(draw(st.sampled_from(["utf-8", *_CODECS])), errors="replace")
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["bom", "truncate", "insert", "delete", "huge", "repeat"]))
        at = draw(st.integers(0, len(data)))
        if kind == "bom":
            data = draw(st.sampled_from(_BOMS)) + data
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 64)):]
        elif kind == "huge" and len(data) < 1_000_000:  # one enormous value or line
            data = data[:at] + b"x" * draw(st.sampled_from([70_000, 1_100_000])) + data[at:]
        elif len(data) < 20_000:  # many copies of a small file; a big one stays as it is
            data = data * draw(st.integers(2, 200))
    return data


config_bytes = st.one_of(st.binary(max_size=3000), mutated(GOOD_TOML), mutated(GOOD_INI))
config_name = st.sampled_from(["issu.toml", "issu.conf", "issu.ini", "config"])


def _check_loads_or_explains(path: Path) -> IssuConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        assert exc.path == str(path)
        assert exc.problems and all(isinstance(p, str) and p.strip() for p in exc.problems)
        assert "Traceback" not in str(exc)
        return None


@budget(300)
@given(data=config_bytes, name=config_name)
@example(data=b"\xff\xfe" + "[old]\n".encode("utf-16-le"), name="issu.toml")
@example(data=b"\x80\x81\xfe garbage", name="issu.toml")
@example(data=b"\x80\x81\xfe garbage", name="issu.conf")
@example(data="[DEFAULTS]\nold_rabbit_password = gäst\n".encode("latin-1"), name="issu.conf")
@example(data=b"\xef\xbb\xbf" + GOOD_INI.encode(), name="issu.conf")
@example(data=b"\xef\xbb\xbf" + GOOD_INI.encode(), name="issu.cfg")
def test_any_bytes_load_or_name_the_file(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        path = root / name
        path.write_bytes(data)
        with unchanged(root):
            _check_loads_or_explains(path)


def test_a_utf8_byte_order_mark_is_read_as_utf8(tmp_path: Path) -> None:
    """What Windows editors save: the same file with a BOM loads as without one."""
    root = workdir(tmp_path)
    for name, text in (("issu.toml", GOOD_TOML), ("issu.cfg", GOOD_INI)):
        plain, marked = root / f"plain-{name}", root / name
        plain.write_text(text)
        marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert config_as_dict(load_config(marked)) == config_as_dict(load_config(plain))


def test_a_device_that_never_ends_is_refused(tmp_path: Path) -> None:
    """`-c /dev/zero` (or any endless or enormous file) is refused, not read into memory."""
    try:
        load_config(Path("/dev/zero"))
    except ConfigError as exc:
        assert exc.path == "/dev/zero"
        assert "too large" in exc.problems[0]
    else:
        raise AssertionError("loaded /dev/zero")


@budget(60)
@given(data=config_bytes, name=config_name, as_json=st.booleans())
@example(data=b"\xff\xfe" + "[old]\n".encode("utf-16-le"), name="issu.toml", as_json=False)
@example(data=b"\x00", name="issu.conf", as_json=False)  # configparser's message: 3 lines
def test_config_check_exits_2_naming_the_file(data: bytes, name: str, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        path = root / name
        path.write_bytes(data)
        with unchanged(root):
            result = CliRunner().invoke(
                cli, ["config", "check", "-c", str(path), *(["--json"] if as_json else [])])
        no_traceback(result)
        assert result.exit_code in (0, EXIT_USAGE), result.output
        if as_json:
            report = json.loads(result.stdout)
            assert report["file"] == str(path) and report["ok"] == (result.exit_code == 0)
        elif result.exit_code == EXIT_USAGE:
            lines = result.stderr.splitlines()
            assert lines and all(line.startswith(f"{path}: ") for line in lines), lines


# Every command that takes -c, as far as loading the config: the rest of each is driven
# with a good config by test_fuzz_cli.py.
_WITH_CONFIG = [
    ["config", "check"], ["config", "show"], ["status"], ["events"], ["plan"], ["pause"],
    ["resume"], ["daemon"], ["pair", "--no-wait"], ["unpair", "--no-wait"],
    ["preflight", "--no-wait"], ["finalize", "--no-wait"], ["abort", "--no-wait"],
    ["phase", "pre-sync", "--no-wait"], ["compute", "status"], ["compute", "upgrade", "c1"],
    ["compute", "rollback", "c1"], ["sync", "pre"], ["sync", "post"], ["sync", "verify"],
    ["sync", "translate", "--dry-run"], ["sync", "zk"], ["sync", "run"],
    ["sync", "cleanup-queues"], ["tui"],
]
_LEGACY = [sync_cli.legacy_pre_sync, sync_cli.legacy_post_sync, runsync_cli.legacy_run_sync,
           runsync_cli.legacy_zk_sync]


def run_legacy(entry: Any, argv: list[str]) -> tuple[int, str]:
    """A contrail-issu-* entry point in-process: (exit code, stdout + stderr)."""
    out = io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            entry(argv)
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out.getvalue()


@budget(80)
@given(data=config_bytes, name=config_name,
       command=st.sampled_from(range(len(_WITH_CONFIG) + len(_LEGACY))))
@example(data=b"\xff\xfe" + "[old]\n".encode("utf-16-le"), name="issu.conf", command=0)
def test_every_command_refuses_a_broken_config(data: bytes, name: str, command: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        path = root / name
        path.write_bytes(data)
        if _check_loads_or_explains(path) is not None:
            return  # still a good config: the commands would act on it (test_fuzz_cli.py)
        with unchanged(root):
            if command < len(_WITH_CONFIG):
                result = CliRunner().invoke(cli, [*_WITH_CONFIG[command], "-c", str(path)])
                no_traceback(result)
                code, output = result.exit_code, result.output
            else:
                code, output = run_legacy(_LEGACY[command - len(_WITH_CONFIG)],
                                          ["-c", str(path)])
                assert "Traceback" not in output, output
        assert code == EXIT_USAGE, (code, output)
        # (`tui` without a terminal refuses first, for that reason)
        assert str(path) in output or "needs a terminal" in output, output


# ------------------------------------------------------------------------------ structured

def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_inline(v)}"
                           for k, v in value.items()) + "}"


def dump_toml(data: dict[str, Any]) -> str:
    """Any TOML-representable data as a TOML document (inline tables throughout)."""
    return "".join(f"{_toml_string(k)} = {_toml_inline(v)}\n" for k, v in data.items())


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_scalar = st.one_of(
    _text, st.integers(), st.integers(-(2**70), 2**70), st.floats(), st.booleans(),
    st.sampled_from(["", "-", " ", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1]:9042",
                     "::1", "env:", "env:ISSU_FUZZ_UNSET", "file:", "file:/", "file:/dev/null",
                     "file:/etc/shadow", "file:\x00", "http://", "https://127.0.0.1",
                     "4.1.0", "5.0.0", "0.0.0", "99999999999999999999.0", "/", ".", "..",
                     "-oProxyCommand=x", "a" * 300, "\x7f", "\u202e", "x" * 70 + ".local"]))
toml_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=8)


_GOOD = tomllib.loads(GOOD_TOML)
_GOOD_PATHS = paths(_GOOD)[1:]  # every place but the root


@st.composite
def wrong_values(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    data = json.loads(json.dumps(_GOOD))
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_GOOD_PATHS))
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if draw(st.integers(0, 5)) == 0 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict) and draw(st.integers(0, 5)) == 0:
                parent[draw(_text) or "k"] = draw(toml_value)  # an unknown key
            elif isinstance(parent, dict):
                parent[str(path[-1])] = draw(toml_value)
            else:
                parent[path[-1]] = draw(toml_value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced the way there
        changed.append(path)
    return data, changed


@budget(300)
@given(case=wrong_values())
def test_wrong_types_and_ranges_name_the_key(case: tuple[dict[str, Any], list[Any]]) -> None:
    data, _changed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        path = root / "issu.toml"
        path.write_text(dump_toml(data))
        with unchanged(root):
            config = _check_loads_or_explains(path)
        if config is None:
            try:
                load_config(path)
            except ConfigError as exc:
                for problem in exc.problems:
                    key, sep, why = problem.partition(": ")
                    assert sep and key and why, problem  # "key.path: what is wrong"


# ------------------------------------------------------------------------------ the INI

_INI_KEYS = [line.split(" = ")[0] for line in GOOD_INI.splitlines()[1:]]
_ini_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x0b\x0c"
                                  "\x1c\x1d\x1e\x85\u2028\u2029"), max_size=40)


@st.composite
def ini_files(draw: st.DrawFn) -> str:
    options = dict(line.split(" = ", 1) for line in GOOD_INI.splitlines()[1:])
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.one_of(st.sampled_from(_INI_KEYS), st.sampled_from(
            ["old_version", "new_version", "state_dir", "old_cassandra_user",
             "old_cassandra_password", "old_rabbit_ssl_version", "new_cassandra_ca_certs",
             "old_bogus"])))
        options[key] = draw(st.one_of(_ini_text, _scalar.map(str)).map(
            lambda s: s.replace("\n", " ").replace("\r", " ")))
    lines = [f"{k} = {v}" for k, v in options.items()]
    return "[DEFAULTS]\n" + "\n".join(lines) + "\n"


@budget(150)
@given(text=ini_files())
@example(text=GOOD_INI + "state_dir = a\x00b\n")  # ValueError from the path's resolution
def test_original_ini_values_load_or_name_the_option(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        path = root / "issu.conf"
        path.write_text(text)
        with unchanged(root):
            _check_loads_or_explains(path)


@budget(60)
@given(text=ini_files())
@example(text=GOOD_INI.replace("new_rabbit_password = guest", "new_rabbit_password = a\x7fb"))
@example(text=GOOD_INI + "new_version = 0\nold_version = 0\n")  # found at depth: a traceback
def test_convert_writes_what_loads_the_same_or_nothing(text: str) -> None:
    """`issu config convert`: exit 0 and a TOML that loads to the same configuration
    (nothing lost on the way), or exit 2 naming the file and no output file."""
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir(Path(tmp))
        ini, out = root / "issu.conf", root / "issu.toml"
        ini.write_text(text)
        result = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out)])
        no_traceback(result)
        if result.exit_code != 0:
            assert result.exit_code == EXIT_USAGE and str(ini) in result.output, result.output
            assert not out.exists()
            return
        converted = load_config(out)
        assert config_as_dict(converted, mask_secrets=False) == \
            config_as_dict(load_config(ini), mask_secrets=False)
