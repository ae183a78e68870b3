"""ZooKeeper side of the api-server: fq-name locks and the ID allocators, under the cluster prefix.

Paths (root = `/<prefix>`):
- `/fq-name-to-uuid/<type>:<fq_name joined by ':'>` -> object uuid (created before the object);
- `/id/virtual-networks/<id, 10 digits>` -> owner VN fq_name (virtual_network_network_id);
- `/id/security-groups/id/<id, 10 digits>` -> owner SG fq_name (security_group_id, from 8000000);
- `/api-server/subnets/<vn fq_name>:<prefix>/<len>/<address as integer, 10 digits>` -> owner uuid.
Allocated node names are the allocated value itself, zero-padded to 10 digits.
"""

from __future__ import annotations

import contextlib
import logging
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from .spec import ZookeeperSpec

log = logging.getLogger(__name__)

VN_ID_PATH = "id/virtual-networks"
SG_ID_PATH = "id/security-groups/id"
FQ_NAME_PATH = "fq-name-to-uuid"
SUBNET_PATH = "api-server/subnets"
VN_ID_MIN, VN_ID_MAX = 1, (1 << 24) - 1
SG_ID_MIN, SG_ID_MAX = 8_000_000, 8_000_000 + (1 << 24)


class IdError(Exception):
    """An allocator is exhausted or ZooKeeper refused; the message names the path."""


class ZkIds:
    def __init__(self, spec: ZookeeperSpec):
        self.spec = spec
        self.zk = KazooClient(hosts=",".join(spec.hosts), timeout=15)
        self._hints: dict[str, int] = {}

    def start(self) -> None:
        try:
            self.zk.start(timeout=30)
        except Exception as exc:
            self.zk.stop()  # a failed start keeps retrying in the background otherwise
            raise IdError(f"zookeeper {','.join(self.spec.hosts)}: {exc}") from exc
        for sub in (FQ_NAME_PATH, VN_ID_PATH, SG_ID_PATH, SUBNET_PATH):
            self.zk.ensure_path(self.spec.path(sub))

    def stop(self) -> None:
        self.zk.stop()
        self.zk.close()

    # -- fq-name-to-uuid ---------------------------------------------------------------------
    def _fq_path(self, db_type: str, fq_name: list[str]) -> str:
        return self.spec.path(FQ_NAME_PATH, f"{db_type}:{':'.join(fq_name)}")

    def claim_fq_name(self, db_type: str, fq_name: list[str], uuid: str) -> tuple[str, float]:
        """Create the mapping; return the owner's uuid (ours, or an earlier one) and the
        age of the mapping in seconds (0 when it is ours)."""
        path = self._fq_path(db_type, fq_name)
        try:
            self.zk.create(path, uuid.encode())
            return uuid, 0.0
        except NodeExistsError:
            data, stat = self.zk.get(path)
            return data.decode(), max(0.0, time.time() - stat.mtime / 1000.0)

    def release_fq_name(self, db_type: str, fq_name: list[str]) -> None:
        with contextlib.suppress(NoNodeError):
            self.zk.delete(self._fq_path(db_type, fq_name))

    # -- integer allocators ------------------------------------------------------------------
    def _alloc(self, sub: str, lo: int, hi: int, owner: str) -> int:
        base = self.spec.path(sub)
        if base not in self._hints:
            # Start after the highest id already there (e.g. copied by zk-sync), not at the
            # bottom: walking thousands of taken ids one create at a time is slow.
            try:
                taken = [int(c) for c in self.zk.get_children(base) if c.isdigit()]
            except NoNodeError:
                taken = []
            top = max((t for t in taken if lo <= t <= hi), default=lo - 1)
            self._hints[base] = top + 1 if top < hi else lo
        value = max(self._hints[base], lo)
        wrapped = False
        while True:
            if value > hi:
                if wrapped:
                    raise IdError(f"zookeeper {base}: no free id in [{lo}, {hi}]")
                value, wrapped = lo, True
            try:
                self.zk.create(f"{base}/{value:010d}", owner.encode(), makepath=True)
            except NodeExistsError:
                value += 1
                continue
            self._hints[base] = value + 1
            return value

    def _free(self, sub: str, value: int) -> None:
        base = self.spec.path(sub)
        try:
            self.zk.delete(f"{base}/{value:010d}")
        except NoNodeError:
            return
        self._hints[base] = min(self._hints.get(base, value), value)

    def alloc_vn_id(self, owner: str) -> int:
        return self._alloc(VN_ID_PATH, VN_ID_MIN, VN_ID_MAX, owner)

    def free_vn_id(self, value: int) -> None:
        self._free(VN_ID_PATH, value)

    def alloc_sg_id(self, owner: str) -> int:
        return self._alloc(SG_ID_PATH, SG_ID_MIN, SG_ID_MAX, owner)

    def free_sg_id(self, value: int) -> None:
        self._free(SG_ID_PATH, value)

    @staticmethod
    def _subnet_sub(vn_fq_name: list[str], prefix: str, length: int) -> str:
        return f"{SUBNET_PATH}/{':'.join(vn_fq_name)}:{prefix}/{length}"

    def alloc_address(self, vn_fq_name: list[str], prefix: str, length: int,
                      lo: int, hi: int, owner: str) -> int:
        return self._alloc(self._subnet_sub(vn_fq_name, prefix, length), lo, hi, owner)

    def reserve_address(self, vn_fq_name: list[str], prefix: str, length: int,
                        value: int, owner: str) -> bool:
        path = self.spec.path(self._subnet_sub(vn_fq_name, prefix, length), f"{value:010d}")
        try:
            self.zk.create(path, owner.encode(), makepath=True)
            return True
        except NodeExistsError:
            return False

    def free_address(self, vn_fq_name: list[str], prefix: str, length: int, value: int) -> None:
        self._free(self._subnet_sub(vn_fq_name, prefix, length), value)
