"""The command line of every `issu` and `contrail-issu-*` command with a good config and
fuzzed names, numbers, paths and hosts: the command does its job or exits with its
documented code (2: bad usage) saying why; never a traceback, nothing written outside the
state directory. In-process (click's CliRunner), so thousands of examples stay cheap.

Left out, because a good value starts something long-lived: `demo up|down` (the services),
`daemon` and `events --follow` (run until stopped), `tui` with a good --host/--port (serves),
and runs that would connect to the (absent) clusters: those get an argument each that is
refused before connecting, which is the part under test."""

from __future__ import annotations

import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from backends.cassandra.registry import load_registry
from issu_tui import sync_cli
from issu_tui.cli import cli
from issu_tui.journal import Journal
from tests.fuzz.configs import GOOD_INI, GOOD_TOML, workdir
from tests.fuzz.contract import EXIT_USAGE, budget, no_traceback, unchanged
from tests.fuzz.test_fuzz_config import run_legacy

# A command line cannot hold a NUL byte (the OS passes C strings), nor lone surrogates.
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats().map(str),
    st.sampled_from(["0", "-1", "1e309", "nan", "inf", "-inf", "0x10", "1_000", " 5", "", "٣"]))
names = st.one_of(_text, st.sampled_from(["all", "-", "--", "-c", "--help-me", "compute-1 x",
                                          "../../etc/passwd", "a" * 5000]))
paths = st.one_of(_text, st.sampled_from(["/", "/dev/null", "/dev/zero", "/proc/self/mem",
                                          "/nonexistent/x", ".", "..", "~"]))
hosts = st.one_of(_text, st.sampled_from(["0.0.0.0", "::", "256.1.1.1", "localhost:80",
                                          "127.0.0.1:", "[::1]", "-oProxyCommand=x", ""]))
values = st.one_of(names, numbers, paths, hosts)


def _invoke(root: Path, argv: list[str]) -> tuple[int, str]:
    with unchanged(root.parent / "outside"):
        result = CliRunner().invoke(cli, argv)
    no_traceback(result)
    return result.exit_code, result.output


def _setup(tmp: str) -> tuple[Path, Path]:
    (Path(tmp) / "work").mkdir()
    root = workdir(Path(tmp) / "work")
    (Path(tmp) / "outside").mkdir()
    (Path(tmp) / "outside" / "untouched").write_text("x")
    path = root / "issu.toml"
    path.write_text(GOOD_TOML)
    journal = Journal.open(root / "state")  # an upgrade under way, with an event to show
    journal.event("fuzz", "an event", level="info")
    journal.close()
    return root, path


# (argv, whether a fuzzed value follows it, the exit codes besides 2 it may end with)
_ORCHESTRATOR = [
    (["status"], False, {0}),
    (["status", "--json"], False, {0}),
    (["events", "--last"], True, {0, EXIT_USAGE}),
    (["events", "--kind"], True, {0}),
    (["plan", "--approach"], True, {0, EXIT_USAGE}),
    (["compute", "status"], True, {0, 1, EXIT_USAGE}),
    (["config", "show", "--json"], False, {0}),
    (["pause"], False, {0}),
    (["resume"], False, {0}),
    (["phase", "--no-wait"], True, {0, EXIT_USAGE}),
    (["preflight", "--no-wait", "--db-nodes-down"], True, {0, EXIT_USAGE}),
    (["compute", "upgrade", "--no-wait", "--batch-size"], True, {EXIT_USAGE}),
    (["compute", "rollback", "--no-wait", "--parallel"], True, {EXIT_USAGE}),
    (["compute", "upgrade", "--no-wait", "--canary"], True, {EXIT_USAGE}),
    (["finalize", "--no-wait", "--force", "--reason"], True, {0}),
    # an address off loopback, so that no port can make it serve
    (["tui", "--web", "--host", "0.0.0.0", "--port"], True, {EXIT_USAGE}),
]


@budget(150)
@given(case=st.sampled_from(range(len(_ORCHESTRATOR))), value=values, extra=st.lists(values,
                                                                                  max_size=2))
@example(case=2, value="99999999999999999999", extra=[])
@example(case=2, value="-3", extra=[])
def test_orchestrator_commands(case: int, value: str, extra: list[str]) -> None:
    argv, takes_value, codes = _ORCHESTRATOR[case]
    with tempfile.TemporaryDirectory() as tmp:
        root, path = _setup(tmp)
        tail = [value] if takes_value else []
        if argv[:2] in (["compute", "upgrade"], ["compute", "rollback"]):
            tail += ["no-such-compute", *extra]  # NAMES; --no-wait only queues the intent
            codes = {0, EXIT_USAGE}
        code, output = _invoke(root, [*argv, *tail, "-c", str(path)])
        assert code in codes | {EXIT_USAGE}, (code, output)
        if code == EXIT_USAGE:
            assert output.strip(), "exit 2 without a reason"


_UNREGISTERED = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                        min_size=1, max_size=30)


@budget(80)
@given(command=st.sampled_from(["pre", "post", "verify"]), keyspace=_UNREGISTERED,
       slices=numbers, concurrency=numbers, page=numbers)
def test_sync_copies_refuse_before_connecting(command: str, keyspace: str, slices: str,
                                             concurrency: str, page: str) -> None:
    """An unregistered keyspace (or a number out of range) is exit 2 naming it; the copy
    never starts."""
    if keyspace in _registered_keyspaces():
        return
    with tempfile.TemporaryDirectory() as tmp:
        root, path = _setup(tmp)
        with unchanged(root):
            code, output = _invoke(root, ["sync", command, "-c", str(path), "-k", keyspace,
                                          "--slices", slices, "--concurrency", concurrency,
                                          "--page-size", page])
        assert code == EXIT_USAGE, (code, output)


def _registered_keyspaces() -> set[str]:
    registry = load_registry()
    return {t.keyspace for t in registry.tables(None, phase="pre")}


@budget(60)
@given(table=values, sample=numbers, columns=numbers)
def test_sync_translate_refuses_a_bad_table(table: str, sample: str, columns: str) -> None:
    if "." in table and table.count(".") == 1:
        keyspace = table.split(".")[0]
        if keyspace in _registered_keyspaces():
            return  # a registered table: translate would read the old cluster
    with tempfile.TemporaryDirectory() as tmp:
        root, path = _setup(tmp)
        with unchanged(root):
            code, output = _invoke(root, ["sync", "translate", "--dry-run", "-c", str(path),
                                          "-t", table, "--sample", sample, "--max-columns",
                                          columns])
        assert code == EXIT_USAGE, (code, output)


# The original tools' options, each a value the config check would refuse or any text.
_LEGACY_OPTIONS = ["--old_cassandra_address_list", "--new_cassandra_address_list",
                   "--old_cassandra_use_ssl", "--new_cassandra_use_ssl", "--odb_prefix",
                   "--ndb_prefix", "--old_cassandra_user", "--old_rabbit_port",
                   "--new_api_info", "--conf_file", "-c", "--json", "--fresh", "--bogus"]


@budget(100)
@given(entry=st.sampled_from(["pre", "post"]),
       args=st.lists(st.tuples(st.sampled_from(_LEGACY_OPTIONS), values), max_size=4))
@example(entry="pre", args=[("--old_cassandra_address_list", "127.0.0.1:x")])
def test_legacy_copy_commands(entry: str, args: list[tuple[str, str]]) -> None:
    """contrail-issu-pre-sync / post-sync with the original options. The config's version
    path (4.1 -> 9.0) is refused before any connection, so every run ends with 2."""
    with tempfile.TemporaryDirectory() as tmp:
        root, _ = _setup(tmp)
        conf = root / "issu.conf"
        conf.write_text(GOOD_INI + "old_version = 4.1.0\nnew_version = 9.0.0\n")
        argv = ["-c", str(conf)] + [part for option, value in args for part in (option, value)]
        function = sync_cli.legacy_pre_sync if entry == "pre" else sync_cli.legacy_post_sync
        with unchanged(root.parent / "outside"):
            code, output = run_legacy(function, argv)
        assert "Traceback" not in output, output
        assert code == EXIT_USAGE, (code, output)
