"""Registry of Kafka API handlers: one module per API key (see `context.py` for the convention).

ApiVersions is built from this registry, so a client is offered only what a handler implements.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = [
    "api_versions",
    "metadata",
    "produce",
    "fetch",
    "list_offsets",
    "init_producer_id",
    "create_topics",
    "delete_topics",
    "create_partitions",
    "describe_configs",
    "incremental_alter_configs",
    "alter_configs",
    "delete_records",
    "describe_cluster",
    "find_coordinator",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "offset_commit",
    "offset_fetch",
    "describe_groups",
    "list_groups",
    "delete_groups",
    "offset_delete",
]


def _load() -> dict[int, ModuleType]:
    handlers: dict[int, ModuleType] = {}
    for name in _MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        if mod.API_KEY in handlers:
            raise RuntimeError(f"API key {mod.API_KEY} handled twice ({name})")
        handlers[mod.API_KEY] = mod
    return handlers


HANDLERS: dict[int, ModuleType] = _load()


def supported_versions() -> dict[int, tuple[int, int]]:
    return {key: mod.VERSIONS for key, mod in sorted(HANDLERS.items())}
