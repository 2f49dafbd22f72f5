"""The MQTT codec stays sans-IO and the core stays free of trio and sockets (ARCHITECTURE.md, section 2)."""

import ast
import sys
from pathlib import Path

import appliance

ROOT = Path(appliance.__file__).parent


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_codec_imports_only_stdlib_and_errors():
    for path in (ROOT / "mqtt" / "codec").glob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            ok = (top in sys.stdlib_module_names or top == "__future__" or name == "appliance.errors"
                  or name.startswith("appliance.mqtt.codec"))
            assert ok, f"{path.name} imports {name}"


def test_core_has_no_io():
    for path in (ROOT / "mqtt").glob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] not in {"trio", "socket", "ssl", "asyncio", "selectors"}, f"{path.name}: {name}"
            assert not name.startswith("appliance.transport"), f"{path.name}: {name}"
