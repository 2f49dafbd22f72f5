"""Rewrite packaging/systemd/*.service from appliance/cli_service.py (tests check they are current).

    python packaging/systemd/render.py

These are the units `millstream install-service` writes for the default layout:
/opt/millstream/millstream.pyz, /etc/millstream/<role>.toml, /var/lib/millstream[-cloud].
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from appliance.cli_service import DEFAULT_DATA_DIRS, UnitSpec, render_unit  # noqa: E402


def example(role: str) -> UnitSpec:
    return UnitSpec(role=role, data_dir=DEFAULT_DATA_DIRS[role], config=f"/etc/millstream/{role}.toml")


def main() -> int:
    for role in ("plant", "cloud"):
        spec = example(role)
        (HERE / spec.unit_name).write_text(render_unit(spec))
        print(f"wrote {HERE / spec.unit_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
