"""appliance/ingest keeps its core pure: trio and sockets only in the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "appliance" / "ingest"
ADAPTERS = {"kafka_sink.py", "egress.py", "bridge/runner.py"}


def test_core_modules_import_no_trio_sockets_or_adapters():
    checked = 0
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ADAPTERS:
            continue
        checked += 1
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("trio", "socket", "ssl", "appliance.transport", "appliance.runtime",
                                            "appliance.storage.wal", "appliance.ingest.kafka_sink",
                                            "appliance.ingest.egress", "appliance.ingest.bridge.runner")), (rel, name)
    assert checked >= 10
