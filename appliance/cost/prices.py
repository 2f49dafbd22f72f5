"""The price sheet: a TOML file of unit prices and sizing assumptions, validated like the site config.

The defaults ship as `appliance/cost/default_prices.toml` (read through importlib.resources, so they
work from the zipapp); a user's sheet overrides any subset of keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.config import build_section, parse_bool, parse_int, parse_size, parse_str, setting
from appliance.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_SHEET = "default_prices.toml"


def parse_number(lo: float = 0.0, hi: float | None = None, *, above: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        if value < lo or (above and value == lo):
            raise ValueError(f"must be {'>' if above else '>='} {lo}, got {value}")
        if hi is not None and value > hi:
            raise ValueError(f"must be <= {hi}, got {value}")
        return float(value)

    return parse


@dataclass(frozen=True)
class SheetInfo:
    name: str = setting("unnamed price sheet", parse_str)
    currency: str = setting("USD", parse_str)
    hours_per_month: float = setting(730.0, parse_number(1, 744), "hours billed per month")


@dataclass(frozen=True)
class ObjectStoragePrices:
    gb_month: float = setting(0.023, parse_number())
    put_per_1000: float = setting(0.005, parse_number())
    get_per_1000: float = setting(0.0004, parse_number())


@dataclass(frozen=True)
class BlockStoragePrices:
    gb_month: float = setting(0.08, parse_number())


@dataclass(frozen=True)
class NetworkPrices:
    cross_zone_per_gb: float = setting(0.02, parse_number())


@dataclass(frozen=True)
class InstancePrices:
    type: str = setting("m7g.4xlarge", parse_str)
    per_hour: float = setting(0.6528, parse_number())
    network_mib_s: float = setting(894.0, parse_number(0, above=True), "sustained network baseline per direction")
    target_utilization: float = setting(0.8, parse_number(0, 1, above=True))


@dataclass(frozen=True)
class Sizing:
    zones: int = setting(3, parse_int(1, 16))
    replication_factor: int = setting(3, parse_int(1, 16))
    controllers: int = setting(3, parse_int(0, 16))
    max_partitions_per_broker: int = setting(4000, parse_int(1))
    block_storage_fill: float = setting(0.85, parse_number(0, 1, above=True))
    consumers_fetch_in_zone: bool = setting(True, parse_bool)
    object_store_producers_in_zone: bool = setting(True, parse_bool)
    wal_volume_gb: float = setting(10.0, parse_number())
    upload_bytes: int = setting(8 << 20, parse_size)
    get_bytes: int = setting(4 << 20, parse_size)
    compaction_rewrite: float = setting(0.5, parse_number(0, 10))
    cold_read_fraction: float = setting(0.0, parse_number(0, 1))

    def __post_init__(self) -> None:
        if self.upload_bytes <= 0 or self.get_bytes <= 0:
            raise ValueError("upload_bytes and get_bytes must be > 0")


SHEET_SECTIONS: dict[str, type] = {
    "sheet": SheetInfo,
    "object_storage": ObjectStoragePrices,
    "block_storage": BlockStoragePrices,
    "network": NetworkPrices,
    "instance": InstancePrices,
    "sizing": Sizing,
}


@dataclass(frozen=True)
class PriceSheet:
    sheet: SheetInfo
    object_storage: ObjectStoragePrices
    block_storage: BlockStoragePrices
    network: NetworkPrices
    instance: InstancePrices
    sizing: Sizing
    source: str = "<defaults>"


def _read(source: str, data: bytes) -> dict[str, Any]:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(source, "-", f"not valid TOML: {e}") from None
    for name in doc:
        if name not in SHEET_SECTIONS:
            raise ConfigError(source, name, f"unknown section (known: {', '.join(SHEET_SECTIONS)})")
    return doc


def default_sheet_text() -> str:
    return resources.files("appliance.cost").joinpath(DEFAULT_SHEET).read_text("utf-8")


def price_sheet_from_tables(doc: dict[str, Any], source: str, base: dict[str, Any] | None = None) -> PriceSheet:
    """Build a sheet from TOML tables; keys missing from `doc` come from `base` (the defaults)."""
    built = {}
    for name, cls in SHEET_SECTIONS.items():
        table = doc.get(name, {})
        if isinstance(table, dict):
            table = {**(base or {}).get(name, {}), **table}
        built[name] = build_section(cls, table, source, name)
    return PriceSheet(source=source, **built)


def load_price_sheet(path: str | Path | None = None) -> PriceSheet:
    """The shipped defaults, or the file at `path` laid over them."""
    defaults = _read(f"<builtin {DEFAULT_SHEET}>", default_sheet_text().encode())
    if path is None:
        return price_sheet_from_tables(defaults, f"<builtin {DEFAULT_SHEET}>")
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found") from None
    return price_sheet_from_tables(_read(source, data), source, base=defaults)
