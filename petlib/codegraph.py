"""Which petlib code a result depends on: the modules its entry points *use*, followed through imports
and the packages' re-exports (`from . import data` then `data.FaceDataset` is a use of
`petlib.data.transforms`, not of the whole data package), and a digest of their code that ignores
comments, docstrings and formatting. The study's stages (`petlib.stages`) hash this code, so an edit
retrains only what imports the edited function's module.

Also the plain import graph (enclosing packages included) that tests/test_layers.py checks for cycles.
Torch-free, and reads only petlib's own source files.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path

PETLIB = Path(__file__).resolve().parent


@functools.cache
def module_files() -> dict[str, Path]:
    """'petlib.metrics.ranking' -> its file, for every module of the package."""
    out = {}
    for p in sorted(PETLIB.rglob("*.py")):
        parts = p.relative_to(PETLIB.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _package(name: str) -> str:
    return name if module_files()[name].name == "__init__.py" else name.rpartition(".")[0]


def _base(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(up + ([node.module] if node.module else []))


def _enclosing(name: str) -> str:
    """The module itself, or the nearest enclosing petlib module of a dotted name."""
    while name and name not in module_files():
        name = name.rpartition(".")[0]
    return name


@functools.cache
def _parsed(name: str) -> ast.Module:
    return ast.parse(module_files()[name].read_text())


def import_graph() -> dict[str, set[str]]:
    """petlib module -> the petlib modules it imports anywhere in its source (functions included);
    importing a.b.c runs the packages' __init__ first, so each enclosing package is an edge too."""
    modules = module_files()
    graph = {m: set() for m in modules}
    for name in modules:
        for node in ast.walk(_parsed(name)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(node, _package(name))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for t in targets:
                t = _enclosing(t)
                while t and t != "petlib":
                    if t != name and not name.startswith(t + "."):
                        graph[name].add(t)
                    t = t.rpartition(".")[0]
    return graph


@functools.cache
def _exports(package: str) -> dict[str, str]:
    """name -> the module that defines it, for what a package's __init__ imports from its submodules."""
    out: dict[str, str] = {}
    for node in ast.walk(_parsed(package)):
        if isinstance(node, ast.ImportFrom):
            base = _base(node, package)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out[a.asname or a.name] = sub if sub in module_files() else _defining(_enclosing(base), a.name)
    return out


def _defining(module: str, name: str) -> str:
    """Where `name`, imported from `module`, is defined: followed through package re-exports."""
    if module and module_files()[module].name == "__init__.py" and name in _exports(module):
        return _exports(module)[name]
    return module


def _chain(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'] when it is a chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _resolve(dotted: str) -> str:
    """The module defining what a dotted name reaches: `petlib.data.load_splits` -> petlib.data.prepare."""
    mod = _enclosing(dotted)
    rest = dotted[len(mod) + 1:].split(".")[0] if dotted != mod else ""
    return _defining(mod, rest) if rest else mod


def _bindings(tree: ast.AST, package: str) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(local name -> petlib module it is bound to, local name -> module defining the function or value
    it is bound to, modules used by the imports themselves)."""
    modules, bound, names, used = module_files(), {}, {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "petlib" or a.name.startswith("petlib."):
                    if a.asname:
                        bound[a.asname] = _enclosing(a.name)
                    else:
                        bound["petlib"] = "petlib"
                        used.add(_enclosing(a.name))
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, package)
            if not (base == "petlib" or base.startswith("petlib.")):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:
                    bound[a.asname or a.name] = sub
                    used.add(sub)
                else:
                    names[a.asname or a.name] = _defining(_enclosing(base), a.name)
                    used.add(names[a.asname or a.name])
    return bound, names, used


def _registry_strings(tree: ast.AST, package: str) -> set[str]:
    """Modules a registry names in "module:function" strings (`export.registry.FORMATS`), which are
    imported only when used: naming one is a use of it."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                re.fullmatch(r"[a-z_][a-z0-9_.]*:[a-z_][a-z0-9_]*", node.value):
            mod = f"{package}.{node.value.split(':')[0]}"
            if mod in module_files():
                out.add(mod)
    return out


def _uses_of(tree: ast.AST, package: str) -> set[str]:
    """The petlib modules whose definitions this code uses (its imports, re-exports resolved, the modules
    a registry names). A package whose own __init__ defines what is used counts as a use of that file."""
    bound, _, used = _bindings(tree, package)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (chain := _chain(node)) and chain[0] in bound:
            used.add(_resolve(".".join([bound[chain[0]], *chain[1:]])))
    used |= _registry_strings(tree, package)
    return {u for u in used if u and not _reexports_only(u)}


@functools.cache
def _reexports_only(module: str) -> bool:
    """A package __init__ that only imports (and lists `__all__`): using a name through it uses the
    defining module, never the __init__ itself."""
    if module_files()[module].name != "__init__.py":
        return False
    return all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Pass)) or
               (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) or
               (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets))
               for n in _parsed(module).body)


@functools.cache
def registrants() -> dict[str, frozenset[str]]:
    """module -> the modules that register into it at import time: a bare top-level call of one of its
    functions (`declare(...)` in `metrics/efficiency.py`) or a decorator from it. What they register is
    part of the registry, so they join wherever it is used."""
    out: dict[str, set[str]] = {}
    for name in module_files():
        tree = _parsed(name)
        bound, names, _ = _bindings(tree, _package(name))
        calls = []  # a bare call statement at the top (`declare(...)`) or a decorator: its effect is registering
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                calls += [d.func if isinstance(d, ast.Call) else d for d in stmt.decorator_list]
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                calls.append(stmt.value.func)
        for c in calls:
            target = _called_module(c, bound, names)
            if target and target != name:
                out.setdefault(target, set()).add(name)
    return {k: frozenset(v) for k, v in out.items()}


def _called_module(func: ast.AST, bound: dict[str, str], names: dict[str, str]) -> str | None:
    """The petlib module defining the function a call names (`spec.declare` or an imported `declare`)."""
    chain = _chain(func)
    if not chain:
        return None
    if chain[0] in bound:
        return _resolve(".".join([bound[chain[0]], *chain[1:]]))
    return names.get(chain[0]) if len(chain) == 1 else None


@functools.cache
def use_graph() -> dict[str, frozenset[str]]:
    """petlib module -> the modules whose definitions it uses."""
    return {m: frozenset(_uses_of(_parsed(m), _package(m)) - {m}) for m in module_files()}


def closure(entries: set[str] | frozenset[str], stop: frozenset[str] = frozenset()) -> set[str]:
    """The entries and every module they use, transitively, with the modules that register into any of
    them; the `stop` modules are reached but not followed (what they use counts only through them)."""
    graph, joins, seen, stack = use_graph(), registrants(), set(), list(entries)
    while stack:
        m = stack.pop()
        if m not in seen:
            seen.add(m)
            if m not in stop:
                stack.extend(graph.get(m, ()))
                stack.extend(joins.get(m, ()))
    return seen


def uses_in_source(source: str) -> set[str]:
    """The petlib modules a piece of code (a notebook's cells) uses directly."""
    return _uses_of(ast.parse(source), "petlib")


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def source_digest(source: str) -> str:
    """A digest of code without its comments, docstrings and layout: what it computes, not how it reads."""
    tree = _strip_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:12]


@functools.cache
def code_digest(module: str) -> str:
    return source_digest(module_files()[module].read_text())


def relpath(module: str) -> str:
    """'petlib/metrics/ranking.py': how reasons name a module."""
    return module_files()[module].relative_to(PETLIB.parent).as_posix()
