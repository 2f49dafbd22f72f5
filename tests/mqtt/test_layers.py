"""The whole MQTT core (not only session.py, which tests/test_layering.py checks) stays free of IO;
the codec's purity is checked in tests/test_layering.py."""

import ast
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


def test_core_has_no_io():
    for path in (ROOT / "mqtt").glob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] not in {"trio", "socket", "ssl", "asyncio", "selectors"}, f"{path.name}: {name}"
            assert not name.startswith("appliance.transport"), f"{path.name}: {name}"
