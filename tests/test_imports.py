"""Imports only point down the data flow (issue 20; docs/architecture.md).

Every module's imports are read with ``ast`` (top level, inside functions and under
``TYPE_CHECKING`` alike) and each ``lirdrec.*`` import must come from the same or a lower stage.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lirdrec"

#: The stages, lowest first (the house rule of docs/architecture.md).
STAGES = [
    {"errors", "config", "utils"},
    {"data"},
    {"features"},
    {"encoders"},
    {"graphs"},
    {"models"},
    {"evaluate"},
    {"train"},
    {"diagnostics", "experiments"},
    {"cli", "__main__"},
]
LEVEL = {name: level for level, names in enumerate(STAGES) for name in names}


def _stage(module: str) -> str | None:
    """``lirdrec.models.lightgcn`` -> ``models``; the package root itself -> ``None``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "lirdrec" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "lirdrec":  # from lirdrec import models -> lirdrec.models
                found += [(node.lineno, f"lirdrec.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "lirdrec"]


def _modules() -> list[Path]:
    # the package root re-exports the public API (it imports every stage; nothing imports it)
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_module_has_a_stage():
    unknown = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()} - set(LEVEL)
    assert not unknown, f"add {sorted(unknown)} to STAGES (and to docs/architecture.md)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_point_down(path):
    own = LEVEL[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
    upward = []
    for line, name in _imports(path):
        stage = _stage(name)
        if stage is None:
            upward.append(f"line {line}: import of the package root {name!r} (import a stage)")
        elif stage in LEVEL and LEVEL[stage] > own:
            upward.append(f"line {line}: {name} (stage {stage!r} is above this module's)")
    assert not upward, f"{path.relative_to(PACKAGE.parent)} imports up the house: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test can fail: a lower module importing cli/ is reported, in functions too."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lirdrec.cli.main import main\n    import lirdrec.train\n")
    assert _imports(bad) == [(2, "lirdrec.cli.main"), (3, "lirdrec.train")]
    assert LEVEL[_stage("lirdrec.cli.main")] > LEVEL["data"]
