"""Cost model line items, projections and the price sheet loader."""

from pathlib import Path

import pytest

from appliance.cost.model import GB, Workload, broker_attached, compare, object_storage
from appliance.cost.prices import default_sheet_text, load_price_sheet
from appliance.cost.render import render_table, to_json
from appliance.errors import ConfigError
from appliance.inventory.measurements import TopicMeasurement

MONTH = 730 * 3600


@pytest.fixture
def sheet():
    return load_price_sheet()


def workload(**kw) -> Workload:
    m = TopicMeasurement("t", bytes_in_per_s=kw.pop("rate", 100 << 20), consumer_groups=kw.pop("groups", 2),
                        partitions=kw.pop("partitions", 12), retention_s=kw.pop("retention_s", 86400.0), **kw)
    return Workload.from_measurements([m])


def test_default_sheet_ships_as_package_data(sheet):
    assert "[object_storage]" in default_sheet_text()
    assert sheet.object_storage.gb_month == 0.023 and sheet.block_storage.gb_month == 0.08
    assert sheet.network.cross_zone_per_gb == 0.02 and sheet.sheet.hours_per_month == 730


def test_user_sheet_overrides_only_its_keys(tmp_path: Path):
    f = tmp_path / "p.toml"
    f.write_text('[block_storage]\ngb_month = 0.1\n[sizing]\nzones = 2\n')
    s = load_price_sheet(f)
    assert s.block_storage.gb_month == 0.1 and s.sizing.zones == 2
    assert s.object_storage.gb_month == 0.023  # from the defaults


@pytest.mark.parametrize("text, match", [
    ('[instance]\nper_hour = "cheap"\n', r"p\.toml: instance\.per_hour: expected a number"),
    ('[instance]\ntarget_utilization = 1.5\n', r"instance\.target_utilization: must be <= 1"),
    ('[objects]\n', r"objects: unknown section"),
    ('[sizing]\nzone = 3\n', r"sizing\.zone: unknown setting"),
    ('[sizing\n', r"not valid TOML"),
])
def test_price_sheet_errors_name_file_key_problem(tmp_path: Path, text: str, match: str):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_price_sheet(f)


def test_broker_attached_line_items(sheet):
    w = workload()
    d = broker_attached(w, sheet)
    ingress_gb = (100 << 20) * MONTH / GB
    assert d.line("cross-zone: producers to leaders").quantity == pytest.approx(ingress_gb * 2 / 3)
    assert d.line("cross-zone: replication").quantity == pytest.approx(ingress_gb * 2)
    assert d.line("cross-zone: consumers").monthly == 0  # consumers fetch in zone by default
    retained = (100 << 20) * 86400 / GB
    assert d.line("block storage").quantity == pytest.approx(retained * 3 / 0.85)
    assert d.line("block storage").monthly == pytest.approx(retained * 3 / 0.85 * 0.08)
    assert d.brokers == 3  # 300 MiB/s in per cluster fits 3 brokers
    assert d.line("brokers").quantity == 3 * 730 and d.line("controllers").quantity == 3 * 730
    assert d.total == pytest.approx(sum(x.monthly for x in d.lines))


def test_object_storage_line_items(sheet):
    w = workload()
    d = object_storage(w, sheet)
    ingested = (100 << 20) * MONTH
    assert d.line("object storage").quantity == pytest.approx((100 << 20) * 86400 / GB)
    assert d.line("PUT: WAL uploads").quantity == pytest.approx(ingested / (8 << 20) / 1000)
    assert d.line("PUT: compaction").quantity == pytest.approx(ingested * 0.5 / (8 << 20) / 1000)
    assert d.line("GET: compaction reads").quantity == pytest.approx(ingested * 0.5 / (4 << 20) / 1000)
    assert d.line("WAL volumes").quantity == d.brokers * 10
    assert d.by_category()["network"] == 0


def test_zone_unaware_clients_pay_cross_zone(tmp_path: Path):
    f = tmp_path / "p.toml"
    f.write_text("[sizing]\nconsumers_fetch_in_zone = false\nobject_store_producers_in_zone = false\n")
    c = compare(workload(), load_price_sheet(f))
    egress_gb = 2 * (100 << 20) * MONTH / GB
    assert c.broker_attached.line("cross-zone: consumers").quantity == pytest.approx(egress_gb * 2 / 3)
    assert c.object_storage.line("cross-zone: producers to brokers").quantity == pytest.approx(
        (100 << 20) * MONTH / GB * 2 / 3)


def test_peaks_size_the_brokers(sheet):
    calm, spiky = workload(rate=300 << 20), workload(rate=300 << 20, peak_to_average=4.0)
    assert broker_attached(spiky, sheet).brokers > broker_attached(calm, sheet).brokers
    # Storage and transfer follow the average, not the peak.
    assert broker_attached(spiky, sheet).by_category()["network"] == broker_attached(calm, sheet).by_category()["network"]


def test_many_partitions_need_more_brokers(sheet):
    assert broker_attached(workload(rate=1 << 20, partitions=20_000), sheet).brokers == 15  # 60,000 replicas / 4,000


def test_scale_projection_is_linear_in_usage(sheet):
    w = workload()
    x10 = w.scaled(10)
    assert x10.ingress_bytes_per_s == 10 * w.ingress_bytes_per_s and x10.retained_bytes == 10 * w.retained_bytes
    assert x10.partitions == 120
    a1, a10 = broker_attached(w, sheet), broker_attached(x10, sheet)
    assert a10.by_category()["network"] == pytest.approx(10 * a1.by_category()["network"])
    assert a10.line("block storage").monthly == pytest.approx(10 * a1.line("block storage").monthly)
    with pytest.raises(ValueError):
        w.scaled(0)


def test_retention_projection_changes_storage_only(sheet):
    w = workload()
    week = w.with_retention(7 * 86400)
    assert week.retained_bytes == pytest.approx(w.retained_bytes * 7)
    base, proj = compare(w, sheet), compare(week, sheet)
    assert proj.object_storage.line("object storage").monthly == pytest.approx(
        7 * base.object_storage.line("object storage").monthly)
    assert proj.broker_attached.by_category()["network"] == base.broker_attached.by_category()["network"]
    assert "7d for every topic (projection)" in proj.assumptions[1]


def test_retention_falls_back_to_measured_bytes_without_a_retention():
    m = TopicMeasurement("t", bytes_in_per_s=1000, retained_bytes=5 << 30, retention_s=None)
    assert Workload.from_measurements([m]).retained_bytes == 5 << 30


def test_table_and_json_show_every_line_and_the_assumptions(sheet):
    c = compare(workload(), sheet)
    table = render_table(c)
    for d in c.designs:
        for line in d.lines:
            assert line.item in table
    assert "assumptions:" in table and "GB = 2^30 bytes" in table
    assert table.count("total / month") == 1
    doc = to_json(c)
    assert set(doc["designs"]) == {"broker_attached", "object_storage"}
    assert doc["designs"]["object_storage"]["total"] == pytest.approx(c.object_storage.total)
    assert len(doc["designs"]["broker_attached"]["lines"]) == len(c.broker_attached.lines)
