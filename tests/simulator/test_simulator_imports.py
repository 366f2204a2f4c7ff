"""The simulator is a stranger to the dashboard: nothing under simulator/ imports training/.

If it did, a misreading of Scenario in the dashboard's table would be shared by the stand-in
the tests talk to, and no test could notice it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import simulator

SIMULATOR = Path(simulator.__file__).parent
FORBIDDEN = "training"


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source file imports, relative imports resolved against `module`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found |= {a.value for a in node.args[:1] if isinstance(a, ast.Constant)}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            found |= {a.value for a in node.args[:1] if isinstance(a, ast.Constant)}
    return found


def _from_training(names: set[str]) -> set[str]:
    return {n for n in names if n == FORBIDDEN or n.startswith(FORBIDDEN + ".")}


def test_no_simulator_module_imports_from_training():
    modules = sorted(SIMULATOR.rglob("*.py"))
    assert len(modules) > 10, "the simulator's modules were not found"
    offenders = {}
    for path in modules:
        relative = path.relative_to(SIMULATOR.parent).with_suffix("")
        module = ".".join(relative.parts)
        bad = _from_training(imported_modules(path.read_text(encoding="utf-8"), module))
        if bad:
            offenders[str(relative)] = sorted(bad)
    assert not offenders, f"simulator/ must not import training/: {offenders}"


def test_the_import_reader_sees_every_form_of_import():
    source = (
        "import training\n"
        "import training.params as p\n"
        "from training import params\n"
        "from training.scenario import ScenarioClient\n"
        "from . import clock\n"
        "def later():\n"
        "    from training import services\n"
        "    __import__('training.tasks')\n"
        "    importlib.import_module('training.forms')\n"
    )
    found = _from_training(imported_modules(source, "simulator.views"))
    assert found >= {
        "training",
        "training.params",
        "training.scenario",
        "training.services",
        "training.tasks",
        "training.forms",
    }
    assert "simulator.clock" in imported_modules(source, "simulator.views")
