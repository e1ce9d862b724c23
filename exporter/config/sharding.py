"""Sharding: replicas that each poll a stable share of the tenants.

A tenant belongs to shard ``sha256(tenant_id) mod count``: the same tenant always lands on the
same replica, whatever the order of the list and whatever other tenants are added or removed.
Prometheus scrapes every replica; their series never overlap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping

from exporter.config.model import Config, RateLimit, TenantConfig

SHARD_INDEX_ENV = "EXPORTER_SHARD_INDEX"
_ORDINAL_RE = re.compile(r"(?:^|-)(\d+)$")


@dataclasses.dataclass(frozen=True, slots=True)
class Shard:
    """Replica ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1
    # Pace this replica to 1/count of each app's per-app limit (replicas share the app).
    split_app_limit: bool = True

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("--shard.count must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"--shard.index must be between 0 and {self.count - 1}")

    def owns(self, tenant: TenantConfig) -> bool:
        """True if this replica polls ``tenant``."""
        return shard_of(tenant.tenant_id, self.count) == self.index

    def select(self, config: Config) -> Config:
        """The config with only this replica's tenants, paced to its share of the app limit.

        Graph counts an app's requests whichever replica sends them: N replicas that each
        paced to the whole ``per_app`` limit would send N times what Graph allows. So each
        paces to ``per_app / N`` (at least one request per window) unless told otherwise;
        the price is budget left unused when the shards' tenants are unbalanced.
        """
        if self.count == 1:
            return config
        tenants = tuple(t for t in config.tenants if self.owns(t))
        per_app, share = config.per_app, 1.0
        if self.split_app_limit:
            per_app = RateLimit(max(1, per_app.requests // self.count), per_app.per_seconds)
            share = 1 / self.count  # the identity and access service's per-app units too
        discovery = config.discovery
        if discovery is not None:  # discovered customers: the same stable hash
            discovery = dataclasses.replace(discovery, shard=(self.index, self.count))
        return dataclasses.replace(
            config, tenants=tenants, per_app=per_app, app_share=share, discovery=discovery
        )


def shard_of(tenant_id: str, count: int) -> int:
    """The shard that polls ``tenant_id`` (stable across processes, runs and list orders)."""
    digest = hashlib.sha256(tenant_id.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard_index(value: str) -> int:
    """A shard index from a number, or from a StatefulSet pod name's ordinal (``exporter-2``)."""
    match = _ORDINAL_RE.search(value.strip())
    if not match:
        raise ValueError(f"{value!r} is neither a number nor a name ending in -N")
    return int(match.group(1))


def shard_from(
    count: int, index: str | None, environ: Mapping[str, str], split_app_limit: bool = True
) -> Shard:
    """The shard from ``--shard.count``/``--shard.index``, the index defaulting to the env var."""
    text = index if index is not None else environ.get(SHARD_INDEX_ENV, "0")
    return Shard(parse_shard_index(text), count, split_app_limit)
