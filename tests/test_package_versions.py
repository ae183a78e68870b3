"""Configured releases against package versions as dpkg-query and rpm print them."""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest

from backends.compute import ProbeResult, cluster_target
from backends.versions import parse_package_version, release_matches

# As printed by `dpkg-query -W -f='${Version}'` and `rpm -q --qf '%{VERSION}-%{RELEASE}'`
# (or `'%{EPOCH}:%{VERSION}-%{RELEASE}'`, which prints `(none):` without an epoch).
BUILDS = {
    "4.1.0": ["4.1.0.0-8", "4.1.0-0.51", "(none):4.1.0.0-8.el7", "4.1.0"],
    "5.0.0": ["5.0.0-0.40", "5.0.0-1.el7", "5.0.0~ubuntu16.04", "5.0.0", "1:5.0.0-0.40"],
    "5.0.1": ["2:5.0.1~ubuntu18.04", "5.0.1-1.el7", "5.0.1-0.398", "5.0.1.0-12",
              "(none):5.0.1-1.el7"],
    "5.0.10": ["5.0.10-0.3", "5.0.10-1.el7"],
    "5.1.0": ["5.1.0-0.38~ubuntu18.04", "5.1.0-1.el7"],
}
OTHERS = ["5.0.1.1-2", "5.0.2-0.1", "5.0.12-1", "50.1-1"]


@pytest.mark.parametrize(("release", "installed"), [
    (r, v) for r, vs in BUILDS.items() for v in vs])
def test_a_release_matches_each_of_its_builds(release: str, installed: str) -> None:
    assert release_matches(release, installed)


@pytest.mark.parametrize("release", list(BUILDS))
def test_a_release_matches_no_other_release(release: str) -> None:
    others = [v for r, vs in BUILDS.items() if r != release for v in vs] + OTHERS
    assert [v for v in others if release_matches(release, v)] == []


def test_short_release_and_pinned_build() -> None:
    assert release_matches("5.0", "5.0.0-0.40")
    assert not release_matches("5.0", "5.0.1-0.398")
    # a configured build matches that build only, whatever the epoch
    assert release_matches("5.0.0-0.40", "1:5.0.0-0.40")
    assert not release_matches("5.0.0-0.40", "5.0.0-0.41")
    # nothing that is not a version is ever a match
    assert not release_matches("5.0.1", "")
    assert not release_matches("5.0.1", "(none)")
    with pytest.raises(ValueError, match="'ubuntu'"):
        parse_package_version("ubuntu")


def test_epoch_and_revision_are_split_as_dpkg_does() -> None:
    v = parse_package_version("2:5.0.1-0.398~ubuntu18.04")
    assert (v.epoch, v.upstream, v.revision, v.release) == (2, "5.0.1", "0.398~ubuntu18.04",
                                                            (5, 0, 1))


@functools.cache
def _dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg as the ordering oracle")
def test_builds_of_a_release_are_contiguous_in_dpkg_order() -> None:
    """In dpkg's own order (the oracle) the versions a release matches form one run: no
    build of another release sorts among them, so matching agrees with dpkg's ordering."""
    strings = [v.replace("(none):", "") for vs in BUILDS.values() for v in vs] + OTHERS
    # without epochs: an epoch reorders everything in dpkg, not the release it names
    strings = sorted({s.split(":", 1)[-1] for s in strings},
                     key=functools.cmp_to_key(lambda a, b: -1 if _dpkg_lt(a, b) else
                                              (1 if _dpkg_lt(b, a) else 0)))
    for release in BUILDS:
        hits = [i for i, s in enumerate(strings) if release_matches(release, s)]
        assert hits == list(range(hits[0], hits[-1] + 1)), (release, strings)


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
def test_every_version_dpkg_query_prints_on_this_host_matches_its_own_release() -> None:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\n"], check=True,
                         capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert len(rows) > 20
    checked = 0
    for package, version in rows:
        upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
        if not upstream[:1].isdigit():
            continue
        parsed = parse_package_version(version)
        release = ".".join(map(str, parsed.release))
        assert release_matches(release, version), (package, version)
        bumped = ".".join(map(str, (*parsed.release[:-1], parsed.release[-1] + 1)))
        assert not release_matches(bumped, version), (package, version)
        checked += 1
    assert checked > 20


def test_the_compute_probe_accepts_an_apt_build_of_the_target() -> None:
    new = cluster_target("new", "5.0.1", ["10.0.1.1"])
    probe = ProbeResult("2:5.0.1~ubuntu18.04", ["10.0.1.1:5269"], ["10.0.1.1"], "connected")
    assert probe.is_on(new)
    assert not ProbeResult("5.0.10-1.el7", ["10.0.1.1"], [], "connected").is_on(new)
    assert not ProbeResult("2:5.0.1~ubuntu18.04", ["10.0.9.9"], [], "connected").is_on(new)
