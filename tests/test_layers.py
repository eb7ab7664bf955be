"""Imports go one way down the layers: core -> backbone -> tasks -> {distill, deploy} -> cli.

Every module's imports of the suite, at module level and inside functions, are read with ``ast``: an import of a
higher layer, of the sibling layer (distill <-> deploy), or of another task's package fails, as does an import cycle
between modules. A task's package is what the task registry registers; the shared modules of ``tasks`` (the
``data`` and ``faces`` packages, ``base``, ``registry`` ...) and the layers above import no task's package: what
differs per task reaches them through the task protocol, the registry and configs.
"""

import ast
from pathlib import Path

import pytest

from mobilenets.tasks.registry import TASKS

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"core": 0, "configs": 0, "backbone": 1, "tasks": 2, "distill": 3, "deploy": 3, "cli": 4}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["mobilenets", *parts])


def suite_imports(path: Path) -> set[str]:
    """The ``mobilenets.*`` modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mobilenets.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mobilenets."):
            found.add(node.module)
    return found


SOURCES = sorted(path for layer in LAYERS for path in (ROOT / layer).rglob("*.py"))
EDGES = {module_name(path): suite_imports(path) for path in SOURCES}


TASK_PACKAGES = {entry.package for entry in TASKS.values()}


def task_package(module: str) -> str | None:
    """The registered task package a module belongs to, else None (shared modules, other layers)."""
    return next((package for package in TASK_PACKAGES if module == package or module.startswith(package + ".")),
                None)


def test_the_walk_sees_every_layer():
    assert {module.split(".")[1] for module in EDGES} == set(LAYERS)
    assert len(EDGES) > 60 and sum(map(len, EDGES.values())) > 150


@pytest.mark.parametrize("module", sorted(EDGES))
def test_imports_go_down(module):
    layer = module.split(".")[1]
    for imported in EDGES[module]:
        target = imported.split(".")[1]
        assert target in LAYERS, f"{module} imports {imported}, in no layer"
        if target == layer:
            continue
        assert LAYERS[target] < LAYERS[layer], f"{module} ({layer}) imports {imported} ({target}): upward or sideways"


@pytest.mark.parametrize("module", sorted(m for m in EDGES if task_package(m)))
def test_no_task_imports_another_task(module):
    own = task_package(module)
    for imported in EDGES[module]:
        other = task_package(imported)
        assert other is None or other == own, (f"{module} imports {imported}: tasks share code through the shared "
                                               f"modules of tasks (base, data, faces, distillation ...)")


SHARED = sorted(m for m in EDGES if m.split(".")[1] in ("tasks", "distill", "deploy", "cli") and not task_package(m))


def test_the_task_packages_are_the_registered_ones():
    assert {package.rsplit(".", 1)[1] for package in TASK_PACKAGES} == {
        "classification", "detection", "face_attributes", "face_embedding", "geolocation", "multitask"}
    assert "mobilenets.tasks.data.datamodule" in SHARED and "mobilenets.tasks.faces.alignment" in SHARED


@pytest.mark.parametrize("module", SHARED)
def test_shared_modules_and_the_layers_above_name_no_task(module):
    named = sorted(i for i in EDGES[module] if task_package(i))
    assert not named, f"{module} imports {named}: reach a task through the protocol, the registry or a config"


def test_no_import_cycles():
    graph = {module: {i for i in imports if i in EDGES and i != module} for module, imports in EDGES.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of the modules themselves
    graph = {m: {i for i in targets if not m.startswith(i + ".")} for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mobilenets.cli.main import main\n")
    assert suite_imports(bad) == {"mobilenets.cli.main"}
