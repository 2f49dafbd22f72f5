"""The import direction of ARCHITECTURE.md section 2, checked on the source (AST, no imports run)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def _modules(pattern: str) -> list[Path]:
    return sorted(p for p in ROOT.glob(pattern) if p.suffix == ".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def _violations(files: list[Path], allowed) -> list[str]:
    bad = []
    for path in files:
        for mod in _imports(path):
            if not allowed(mod):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return bad


def _is_std(mod: str) -> bool:
    return mod.split(".")[0] in STDLIB or mod == "__future__"


def test_codecs_are_pure():
    """Sans-IO codecs: stdlib, the error family, C CRC-32C and other codec modules only."""
    files = _modules("appliance/kafka/protocol/*.py") + [ROOT / "appliance/kafka/records.py",
                                                         ROOT / "appliance/kafka/varint.py"]
    files += _modules("appliance/mqtt/codec/*.py")
    codec_pkgs = ("appliance.kafka.protocol", "appliance.kafka.records", "appliance.kafka.varint",
                  "appliance.kafka.error_codes", "appliance.mqtt.codec")
    assert files
    assert _violations(files, lambda m: _is_std(m) or m == "google_crc32c" or m == "appliance.errors"
                       or m.startswith(codec_pkgs)) == []


def test_storage_does_not_reach_up():
    files = _modules("appliance/storage/**/*.py")
    forbidden = ("appliance.kafka.api", "appliance.kafka.broker", "appliance.transport", "appliance.runtime",
                 "appliance.admin", "appliance.mqtt", "appliance.uplink", "appliance.cli", "tui")
    assert files
    assert _violations(files, lambda m: not m.startswith(forbidden)) == []


def test_core_logic_has_no_sockets_or_composition():
    files = (_modules("appliance/kafka/api/*.py") + _modules("appliance/kafka/group*.py")
             + [ROOT / "appliance/kafka/topics.py"] + _modules("appliance/security/rules.py")
             + _modules("appliance/mqtt/session.py"))
    forbidden = ("appliance.transport", "appliance.runtime", "appliance.admin", "appliance.cli", "socket", "tui")
    assert _violations([f for f in files if f.exists()], lambda m: not m.startswith(forbidden)) == []


def test_appliance_never_imports_tui():
    files = _modules("appliance/**/*.py")
    assert _violations(files, lambda m: m != "tui" and not m.startswith("tui.")) == []
