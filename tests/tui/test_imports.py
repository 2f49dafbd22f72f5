"""Import direction: `tui` reaches the appliance only through the admin models and client, and no
`appliance` module imports `tui` (ARCHITECTURE.md section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TUI_MAY_IMPORT = {"appliance.admin.models", "appliance.admin.client"}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                names.append("." * node.level + (node.module or ""))
            elif node.module == "appliance" or (node.module or "").startswith("appliance."):
                # `from appliance.admin import client` names the module client
                names += [f"{node.module}.{alias.name}" if node.module in ("appliance", "appliance.admin")
                          else node.module for alias in node.names]
            else:
                names.append(node.module or "")
    return names


def test_tui_imports_only_the_admin_models_and_client():
    files = sorted((REPO / "tui").rglob("*.py"))
    assert files, "no tui package found"
    offending = [(str(f.relative_to(REPO)), name) for f in files for name in imports(f)
                 if (name == "appliance" or name.startswith("appliance.")) and name not in TUI_MAY_IMPORT]
    assert offending == []


def test_appliance_never_imports_tui():
    offending = [(str(f.relative_to(REPO)), name) for f in sorted((REPO / "appliance").rglob("*.py"))
                 for name in imports(f) if name == "tui" or name.startswith("tui.")]
    assert offending == []


def test_the_check_sees_forbidden_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from appliance.kafka import topics\nimport appliance.runtime\nfrom appliance.admin import client\n")
    assert imports(bad) == ["appliance.kafka", "appliance.runtime", "appliance.admin.client"]
