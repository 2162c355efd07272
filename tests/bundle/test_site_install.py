"""install.py runs on the site's bare python3: it may import the standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import assistant.bundle

SITE_INSTALL = Path(assistant.bundle.__file__).parent / "site_install.py"


def test_site_installer_imports_only_the_standard_library() -> None:
    tree = ast.parse(SITE_INSTALL.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names, "expected imports"
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)
