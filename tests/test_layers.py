"""petlib's layers (shared/DESIGN.md): no import cycles, imports inside functions included, and the
modules that must stay light import no torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from petlib.codegraph import import_graph, module_files

PETLIB = Path(__file__).resolve().parent.parent / "petlib"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_petlib_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "petlib.metrics.ranking" in graph["petlib.metrics.retrieval"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_submodules_never_import_their_own_package():
    """A package's __init__ imports its submodules; a submodule importing the package back (`from . import
    x` where x is not a module, or `from .. import pkg` of its own package) would be a cycle."""
    bad = []
    for name, path in module_files().items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module and path.name != "__init__.py":
                for a in node.names:
                    if not (PETLIB.parent / package.replace(".", "/") / a.name).with_suffix(".py").is_file() and \
                            not (PETLIB.parent / package.replace(".", "/") / a.name).is_dir():
                        bad.append((name, a.name))
    assert not bad, bad


def test_layer_rules_of_the_design():
    graph = import_graph()
    leaf = graph["petlib.constants"]
    assert not leaf, f"constants is a leaf, imports {leaf}"
    metric_deps = {t for m, ts in graph.items() if m.startswith("petlib.metrics") for t in ts}
    assert {t for t in metric_deps if not t.startswith("petlib.metrics")} <= {"petlib.constants"}, metric_deps
    for core in ("petlib.train", "petlib.export.pipeline"):
        assert not {"petlib.study", "petlib.cli"} & _reachable(graph, core), core
    assert not any(t.startswith("petlib.export") for t in _reachable(graph, "petlib.train"))
    assert "petlib.train" not in _reachable(graph, "petlib.export")


def _reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for n in graph[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


@pytest.mark.parametrize("module", ["petlib.metrics", "petlib.schema", "petlib.compare", "petlib.config",
                                    "petlib.constants", "petlib.export.registry", "petlib.cli"])
def test_light_modules_import_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", f"{module} imports torch"
