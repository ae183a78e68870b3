"""Controller spec, secrets file and storage shapes (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("vnc_api.vnc_api")

from demo.controller import schema
from demo.controller.spec import SpecError, load_secrets, load_spec, write_secrets

BASE = {
    "cluster": "v1", "version": "4.1.0", "listen": "127.20.0.101",
    "cassandra": {"hosts": ["127.20.0.11"]}, "zookeeper": {"hosts": ["127.20.0.21:2181"]},
    "rabbit": {"host": "127.20.0.31"}, "secrets_file": "secrets.json", "state_dir": "state",
}


def _write(tmp_path: Path, **over: object) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**BASE, **over}))
    return path


def test_spec_resolves_relative_paths_and_prefixes(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, cassandra={"hosts": ["h"], "prefix": "v2"},
                            zookeeper={"hosts": ["h:2181"], "prefix": "v2"}))
    assert spec.secrets_file == tmp_path / "secrets.json"
    assert spec.state_dir == tmp_path / "state"
    assert spec.cassandra.keyspace("config_db_uuid") == "v2_config_db_uuid"
    assert spec.zookeeper.path("id/virtual-networks") == "/v2/id/virtual-networks"
    assert spec.api_url == "http://127.20.0.101:8082"


def test_spec_refuses_non_loopback_and_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"spec.json.*loopback"):
        load_spec(_write(tmp_path, listen="10.0.0.1"))
    bad = _write(tmp_path)
    bad.write_text("{")
    with pytest.raises(SpecError, match="not JSON"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cluster"):
        load_spec(_write(tmp_path, cluster=None))


def test_secrets_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    write_secrets(path, {"rabbit_user": "u", "rabbit_password": "pw", "admin_token": "t"})
    assert path.stat().st_mode & 0o777 == 0o600
    secrets = load_secrets(path)
    assert secrets.rabbit_password.get_secret_value() == "pw"
    assert "pw" not in repr(secrets)
    path.chmod(0o640)
    with pytest.raises(SpecError, match="chmod 600"):
        load_secrets(path)


def test_storage_shapes_of_4x_and_50() -> None:
    vn = schema.lookup("virtual_network")
    assert vn is not None and vn is schema.lookup("virtual-network")
    assert "project" in vn.parent_types
    assert vn.ref_fields["network_ipam_refs"] == "network-ipam"
    old, new = schema.shape_for("4.1.0"), schema.shape_for("5.0.0")
    assert (old.db_type(vn), new.db_type(vn)) == ("virtual-network", "virtual_network")
    assert old.prop_column("virtual_network_network_id") == "prop:virtual_network_network_id"
    assert new.prop_column("virtual_network_network_id") == "prop:virtual_network_id"
    assert new.prop_from_column("prop:virtual_network_id") == "virtual_network_network_id"
    assert (old.default_perms2, new.default_perms2) == (False, True)
    assert schema.shape_for("3.2.0") is old and schema.shape_for("5.1.0") is new
    with pytest.raises(ValueError, match="MAJOR"):
        schema.shape_for("latest")
