"""Architecture rules, read from the source with ``ast`` (nothing is imported):

* no import cycles among curate's modules (and the App plugin), function-level imports
  included;
* no import from a lower layer up into a higher one (:data:`LAYERS`); the near-duplicate
  package, pure arrays, imports no fiftyone (every module imported in a fresh interpreter);
* every module under ``curate/`` has at most MAX_LINES lines;
* the VP-SDE's numbers (t_min 1e-3, the network's time scale 999) are written only in
  ``curate/sde.py``.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400

#: Modules allowed over MAX_LINES for now, with the reason. Remove an entry when its
#: module is split (test_oversized_list_is_current fails until you do).
OVERSIZED: dict[str, str] = {}


# ------------------------------------------------------------------ import graph ---

def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``root/package`` (``__init__.py``
    is the package itself)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth (functions, methods, try blocks), except those
    under ``if TYPE_CHECKING:``, which never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        stack.extend(children)


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports.

    ``import a.b.c`` -> a.b.c; ``from a.b import c`` -> a.b.c when that is a module, else
    a.b; relative imports are resolved. Only what is written counts: importing a.b.c
    also runs a and a.b, but that is no edge to them.
    """
    is_package = path.name == "__init__.py"
    out = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            while target and target not in modules:  # `import a.b.nothing` still runs a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    names = set(files)
    return {name: imports_of(name, path, names) for name, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a chain of module names that ends where it starts) for every strongly
    connected group of two or more modules (Tarjan's algorithm), sorted."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_cycle_in(graph, group) for group in groups)


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest cycle through the group's first module (breadth-first search)."""
    start = min(group)
    parent = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    chain = [v]
                    while parent[chain[-1]] is not None:
                        chain.append(parent[chain[-1]])
                    return [*reversed(chain), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in the strongly connected group {sorted(group)}")


def curate_files() -> dict[str, Path]:
    files = package_modules(ROOT, "curate")
    files.update(package_modules(ROOT, "plugins/curate"))  # the App plugin: plugins.curate, plugins.curate.*
    return files


def test_no_import_cycles():
    cycles = find_cycles(import_graph(curate_files()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_every_plugin_module_and_its_relative_imports():
    files = curate_files()
    plugin = {n: p for n, p in files.items() if n == "plugins.curate" or n.startswith("plugins.curate.")}
    assert sorted(plugin.values()) == sorted((ROOT / "plugins" / "curate").glob("*.py"))
    graph = import_graph(files)
    assert {"plugins.curate.operators", "plugins.curate.panels"} <= graph["plugins.curate"]
    assert "plugins.curate._forms" in graph["plugins.curate.operators"] & graph["plugins.curate.panels"]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg import a\nfrom .sub import d\n",  # a package importing its own modules
        "pkg/a.py": "import os\nfrom pkg import b\n",
        "pkg/b.py": """
            def later():
                from .sub.c import helper   # function-level and relative
                return helper
            """,
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": """
            class C:
                def method(self):
                    import pkg.a.nothing    # the longest existing prefix: pkg.a
            """,
        "pkg/sub/d.py": """
            from typing import TYPE_CHECKING
            from .. import a, helpers_not_a_module
            if TYPE_CHECKING:
                from pkg import __init__ as never_runs
                import pkg.sub.e
            """,
        "pkg/sub/e.py": "from . import d\n",
    })
    files = package_modules(tmp_path, "pkg")
    graph = import_graph(files)
    assert graph == {
        "pkg": {"pkg.a", "pkg.sub.d"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a"},
        "pkg.sub.d": {"pkg.a", "pkg"},  # `from .. import helpers_not_a_module` is an explicit edge to pkg
        "pkg.sub.e": {"pkg.sub.d"},
    }
    assert find_cycles(graph) == [["pkg", "pkg.sub.d", "pkg"], ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]

    # Without the function-level import there is no cycle through pkg.a.
    _write(tmp_path, {"pkg/b.py": "def later():\n    return None\n",
                      "pkg/sub/d.py": "from .. import a\n"})
    assert find_cycles(import_graph(package_modules(tmp_path, "pkg"))) == []


# ------------------------------------------------------------------ layers ---

#: curate's layers, lowest first: a module may import its own layer and those below.
#: The lazy facades ``curate`` and ``curate.data`` (names resolved on first use) are the
#: public front doors: anyone may import them, and they import nothing at load time.
LAYERS = (
    ("foundation: pure arrays and the SDE", ("curate._progress", "curate._rng", "curate._package_data", "curate.sde",
                                              "curate.data.tensors", "curate.data.cifar", "curate.duplicates")),
    ("core: models, tracker, scores, sampling, ground truth (tensors, no FiftyOne)", ("curate",)),
    ("FiftyOne data", ("curate.data.datasets", "curate.data.loader")),
    ("FiftyOne runs", ("curate.brain",)),
    ("applications", ("curate.commands", "curate.cli", "curate.__main__", "curate.recipes", "curate.bench",
                      "plugins.curate")),
)
FACADES = ("curate", "curate.data")


def layer_of(module: str, layers=LAYERS) -> int:
    """The index in ``layers`` of the longest prefix that names ``module``."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return rank


def upward_imports(graph: dict[str, set[str]], layers=LAYERS, facades=FACADES) -> list[str]:
    """``a -> b`` for every import of a higher layer's module ``b`` by ``a`` (a facade ``b``
    is no layer's; a facade ``a`` must import nothing at all)."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if b not in facades and (a in facades or layer_of(b, layers) > layer_of(a, layers)))


def test_no_import_from_a_lower_layer_up():
    bad = upward_imports(import_graph(curate_files()))
    assert not bad, "imports from a lower layer up into a higher one:\n" + "\n".join(bad)


def test_layer_check_sees_an_upward_import(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/low.py": "def f():\n    from pkg.high import g\n",
                      "pkg/high.py": "from pkg import low\n", "pkg/mid.py": "import pkg.low\n"})
    layers = (("low", ("pkg.low",)), ("mid", ("pkg.mid",)), ("high", ("pkg.high",)))
    graph = import_graph(package_modules(tmp_path, "pkg"))
    assert upward_imports(graph, layers=layers, facades=("pkg",)) == ["pkg.low -> pkg.high"]


def test_the_duplicates_package_imports_no_fiftyone():
    """Every module of curate.duplicates, imported in a fresh interpreter, leaves neither
    fiftyone nor a FiftyOne layer of curate in sys.modules."""
    import subprocess
    import sys

    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import curate.duplicates as pkg
        names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
        assert len(names) >= 5, names
        for n in names:
            importlib.import_module(n)
        bad = sorted(m for m in sys.modules if m.split(".")[0] == "fiftyone"
                     or m.startswith(("curate.brain", "curate.data.datasets", "curate.data.loader")))
        assert not bad, bad
        print(len(names))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len([p for p in (ROOT / "curate" / "duplicates").glob("*.py") if p.stem != "__init__"])


# ------------------------------------------------------------------ module size ---

def _line_counts() -> dict[str, int]:
    return {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
            for p in sorted((ROOT / "curate").rglob("*.py"))}


def test_modules_are_small():
    over = {f: n for f, n in _line_counts().items() if n > MAX_LINES and f not in OVERSIZED}
    assert not over, f"modules over {MAX_LINES} lines (split them by what they hold): {over}"


def test_oversized_list_is_current():
    counts = _line_counts()
    stale = [f for f in OVERSIZED if counts.get(f, 0) <= MAX_LINES]
    assert not stale, f"{stale} are now at most {MAX_LINES} lines (or gone): remove them from OVERSIZED"


# ------------------------------------------------------------------ SDE constants ---

#: The VP-SDE numbers that only curate/sde.py may write: VP's t_min and time_scale as
#: literals anywhere, its betas (0.1, 20) where they are given to a beta_min / beta_max
#: (elsewhere 0.1 and 20 are dropouts, thresholds, step counts and 2**20).
SDE_NUMBERS = {999, 1e-3}
BETA_NAMES = {"beta_min", "beta_max"}
BETA_NUMBERS = {0.1, 20}


def _is_number(node, numbers) -> bool:
    # 999 == 999.0; True == 1 is no number here
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in numbers


def _named_values(tree: ast.AST):
    """(name, value) of keyword arguments, assignments, parameter defaults and dict entries."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg:
            yield node.arg, node.value
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                name = getattr(target, "id", getattr(target, "attr", None))
                if name:
                    yield name, node.value
        elif isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            for arg, default in zip(positional[len(positional) - len(node.defaults):], node.defaults):
                yield arg.arg, default
            for arg, default in zip(node.kwonlyargs, node.kw_defaults):
                if default is not None:
                    yield arg.arg, default
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value


def sde_numbers(root: Path, package: str = "curate") -> list[str]:
    """``file:line value`` of the SDE's numbers written outside ``<package>/sde.py``."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        if path == root / package / "sde.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        hits = [n for n in ast.walk(tree) if _is_number(n, SDE_NUMBERS)]
        hits += [v for name, v in _named_values(tree) if name in BETA_NAMES and _is_number(v, BETA_NUMBERS)]
        hits.sort(key=lambda n: (n.lineno, n.col_offset))
        found += [f"{path.relative_to(root).as_posix()}:{n.lineno} {n.value!r}" for n in hits]
    return found


def test_sde_numbers_live_in_sde_py():
    found = sde_numbers(ROOT)
    assert not found, "SDE constants outside curate/sde.py (use curate.sde.VP / sde.of(model)):\n" + "\n".join(found)


def test_sde_number_scan_is_precise(tmp_path):
    _write(tmp_path, {
        "pkg/sde.py": "T_MIN = 1e-3\nSCALE = 999\nclass VPSDE:\n    beta_min: float = 0.1\n",
        "pkg/bad.py": """
            from pkg.sde import VPSDE
            t = 0.001 + x.clamp(0.999)               # 0.001 is 1e-3
            net(x, 999.0 * t)
            sde = VPSDE(beta_min=0.1, beta_max=20)
            def f(beta_max=20.0, *, beta_min=0.1):
                return {"beta_max": 20}
            """,
        "pkg/fine.py": """
            "t_min = 1e-3 and 999 t in a docstring"
            import argparse
            def g(dropout=0.1, max_steps=20, ok=True):
                return 2**20, "999", 1e-4, beta_min_of(0.1)
            """,
    })
    assert sde_numbers(tmp_path, "pkg") == [
        "pkg/bad.py:3 0.001", "pkg/bad.py:4 999.0", "pkg/bad.py:5 0.1", "pkg/bad.py:5 20",
        "pkg/bad.py:6 20.0", "pkg/bad.py:6 0.1", "pkg/bad.py:7 20",
    ]
