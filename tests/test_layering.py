"""The layers of `training/`, read from the source: arrows point one way, and views stay on top.

Every import counts, function-level ones included: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

PACKAGE = "training"
ROOT = Path(settings.BASE_DIR)
# Who may import a view: the views themselves and the URL table that routes to them.
VIEWS = "training.views"
MAY_IMPORT_VIEWS = ("training.views", "training.urls")


# Known on the day this test came, fixed on other branches of issue 11 (or still to fix); the
# lead drops a mark once its offenders are gone.
def module_name(path: Path) -> str:
    """Return the dotted name of a source file under the project root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def training_modules() -> dict[str, Path]:
    """Return every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Return the dotted names a module imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(name, is_package, node)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def absolute_base(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Return the module a `from … import` reads from, resolving leading dots."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if is_package else name.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def import_graph() -> dict[str, set[str]]:
    """Return, for each training module, the training modules it imports."""
    modules = training_modules()
    return {
        name: {target for target in imported_names(name, path) if target in modules} - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the groups of modules that reach each other (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_view(name: str) -> bool:
    """Say whether the module is the views package or one of its modules."""
    return name == VIEWS or name.startswith(f"{VIEWS}.")


def may_import_views(name: str) -> bool:
    """Say whether the module may import a view: a view itself, or the URL table."""
    return any(name == allowed or name.startswith(f"{allowed}.") for allowed in MAY_IMPORT_VIEWS)


# --- the reading itself ----------------------------------------------------------------------


def test_the_reader_finds_function_level_and_relative_imports(tmp_path):
    path = tmp_path / "monitor.py"
    path.write_text(
        "from .. import models\nfrom .launch import x\ndef f():\n    import training.tasks\n"
    )
    names = imported_names("training.views.monitor", path)
    assert {"training.models", "training.views.launch", "training.tasks"} <= names


def test_the_cycle_finder_finds_a_cycle_and_nothing_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_the_whole_package():
    graph = import_graph()
    assert {"training.models", "training.services", "training.views.monitor"} <= graph.keys()
    assert "training.models" in graph["training.services"]


# --- the rules -------------------------------------------------------------------------------


def test_no_training_modules_import_each_other_in_a_cycle():
    graph = import_graph()
    arrows = [
        f"{name} -> {target}"
        for group in cycles(graph)
        for name in group
        for target in sorted(graph[name] & set(group))
    ]
    assert arrows == []


def test_only_views_and_the_url_table_import_a_view():
    offenders = {
        name: sorted(filter(is_view, targets))
        for name, targets in import_graph().items()
        if not may_import_views(name) and any(map(is_view, targets))
    }
    assert offenders == {}
