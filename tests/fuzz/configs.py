"""Good configurations the fuzz tests start from (all hosts on loopback, nothing listening)."""

from __future__ import annotations

from pathlib import Path

_MINIMAL_TOML = """
state_dir = "{state}"
[old]
name = "old"
version = "4.1.0"
[old.cassandra]
hosts = ["127.0.0.1"]
[old.zookeeper]
hosts = ["127.0.0.1:2181"]
[old.rabbit]
hosts = ["127.0.0.1"]
[new]
name = "new"
version = "5.0.0"
[new.cassandra]
hosts = ["127.0.0.2"]
[new.zookeeper]
hosts = ["127.0.0.2:2181"]
[new.rabbit]
hosts = ["127.0.0.1"]
vhost = "/v2"
"""


def minimal_toml(state: Path) -> str:
    """The least a configuration needs (no controllers, computes or credentials), its state
    directory `state`."""
    return _MINIMAL_TOML.replace("{state}", str(state))


GOOD_TOML = """\
state_dir = "state"

[old]
name = "old"
version = "4.1.0"
cluster_id = "v1"
[old.cassandra]
hosts = ["127.0.0.11"]
prefix = "v1"
[old.zookeeper]
hosts = ["127.0.0.21:2181"]
prefix = "v1"
[old.rabbit]
hosts = ["127.0.0.31"]
user = "issu"
password = "secret-old"
[old.api_server]
url = "http://127.0.0.101:8082"
[old.analytics]
url = "http://127.0.0.101:8081"
[[old.control_nodes]]
name = "ctl-v1"
address = "127.0.0.101"

[new]
name = "new"
version = "5.0.0"
[new.cassandra]
hosts = ["127.0.0.12"]
[new.zookeeper]
hosts = ["127.0.0.22"]
[new.rabbit]
hosts = ["127.0.0.31"]
vhost = "/v2"
password = "file:rabbit.secret"

[ssh]
known_hosts = "known_hosts"

[[computes]]
name = "compute-1"
address = "127.0.0.50"
ssh_key = "id_ed25519"
profile = "demo"
"""

# The original tool's issu.conf, every option it knew.
GOOD_INI = """\
[DEFAULTS]
old_rabbit_user = guest
old_rabbit_password = guest
old_rabbit_vhost = /
old_rabbit_port = 5672
old_rabbit_ha_mode = False
old_rabbit_q_name = vnc-config.issu-queue
old_rabbit_address_list = 127.0.0.31
old_rabbit_use_ssl = false
old_cassandra_address_list = 127.0.0.11:9042
old_cassandra_use_ssl = false
old_zookeeper_address_list = 127.0.0.21:2181
new_rabbit_user = guest
new_rabbit_password = guest
new_rabbit_vhost = /v2
new_rabbit_port = 5672
new_rabbit_ha_mode = False
new_rabbit_address_list = 127.0.0.31
new_cassandra_address_list = 127.0.0.12:9042
new_zookeeper_address_list = 127.0.0.22:2181
odb_prefix = v1
ndb_prefix = v2
reset_config = False
new_api_info = {"127.0.0.102": ["admin", "c0ntrail123"]}
old_version = 4.1.0
new_version = 5.0.0
"""


def workdir(root: Path) -> Path:
    """The files GOOD_TOML names, beside it."""
    (root / "rabbit.secret").write_text("secret-new\n")
    (root / "known_hosts").write_text("")
    key = root / "id_ed25519"
    key.write_text("key")
    key.chmod(0o600)
    return root
