"""The import rules of README "Import rules", read from the source with ``ast``.

Every ``import`` counts, also those inside functions (a lazy import is still a dependency;
it only moves the moment it fails). Modules are the ``.py`` files of the packages (folders
with ``__init__.py`` at the top level, except ``tests/`` and ``bench/``); scripts are the
top-level ``*.py`` files and ``bench/*.py``. The rules:

1. ``eval/`` uses only the standard library, numpy and matplotlib (defusedxml when present)
   and, of the project, only ``eval/`` and ``infra/``: no MXNet or GluonCV, nothing of
   ``models/``, ``im2rec_tools/`` or ``datasets/`` (DESIGN.md: ports score with it).
2. ``infra/`` uses only the standard library and imports nothing of the project.
3. Modules never import scripts (scripts may import modules and, like demo.py, scripts).
4. No import cycles between modules and scripts.
"""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_PACKAGES = {"tests", "bench"}
EVAL_EXTERNALS = {"numpy", "matplotlib", "defusedxml"}
#: Cycles that exist today and are being removed elsewhere; each entry must still be a cycle
#: (test_known_cycles_are_still_there), so it is deleted as soon as the cycle is gone.
KNOWN_CYCLES = [
    # None today. A cycle that cannot be broken at once goes here with the reason; the test
    # below fails when it is gone, so the exception does not outlive it.
]


def project_files(root=ROOT):
    """{dotted name: (path, kind)} with kind "module" (package code) or "script"."""
    files = {}
    for p in sorted(root.glob("*.py")):
        files[p.stem] = (p, "script")
    for p in sorted((root / "bench").glob("*.py")):
        files[f"bench.{p.stem}"] = (p, "script")
    for init in sorted(root.glob("*/__init__.py")):
        if init.parent.name in NOT_PACKAGES:
            continue
        for p in sorted(init.parent.rglob("*.py")):
            parts = p.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = (p, "module")
    return files


def _known(name, files):
    """The longest prefix of the dotted ``name`` that is a project file, or None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in files:
            return candidate
    return None


def imports_of(name, path, files):
    """(project names, external top-level names) that the file imports anywhere in it."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    project, external = set(), set()

    def add(target):
        known = _known(target, files)
        if known is not None:
            project.add(known)
        elif target.split(".")[0] not in {n.split(".")[0] for n in files}:
            external.add(target.split(".")[0])
        else:
            raise AssertionError(f"{path}: import of {target!r}, which is not in the project")

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import f``
                # imports mod.
                sub = f"{module}.{alias.name}"
                add(sub if sub in files else module)
    project.discard(name)
    return project, external


def import_graph(root=ROOT):
    files = project_files(root)
    graph, externals = {}, {}
    for name, (path, _) in files.items():
        graph[name], externals[name] = imports_of(name, path, files)
    return files, graph, externals


def strongly_connected(graph):
    """Tarjan's strongly connected components with more than one member."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def project():
    return import_graph()


def _of(prefix, files, kind="module"):
    return sorted(n for n, (_, k) in files.items()
                  if k == kind and (n == prefix or n.startswith(prefix + ".")))


def test_eval_needs_only_numpy_matplotlib_stdlib_and_infra(project):
    files, graph, externals = project
    allowed = set(sys.stdlib_module_names) | EVAL_EXTERNALS
    assert _of("eval", files)
    for name in _of("eval", files):
        assert not externals[name] - allowed, f"{name} imports {externals[name] - allowed}"
        outside = {t for t in graph[name] if t.split(".")[0] not in ("eval", "infra")}
        assert not outside, f"{name} imports {sorted(outside)} (eval/ may use only eval, infra)"


def test_infra_is_standard_library_only_and_imports_nothing_of_the_project(project):
    files, graph, externals = project
    assert _of("infra", files)
    for name in _of("infra", files):
        assert not externals[name] - set(sys.stdlib_module_names), (name, externals[name])
        outside = {t for t in graph[name] if t.split(".")[0] != "infra"}
        assert not outside, f"{name} imports {sorted(outside)}: infra/ sits below everything"


def test_modules_never_import_scripts(project):
    files, graph, _ = project
    scripts = {n for n, (_, kind) in files.items() if kind == "script"}
    for name, (_, kind) in files.items():
        if kind == "module":
            assert not graph[name] & scripts, f"{name} imports the script(s) {graph[name] & scripts}"


def test_no_import_cycles(project):
    _, graph, _ = project
    cycles = [sorted(c) for c in strongly_connected(graph) if c not in KNOWN_CYCLES]
    assert not cycles, f"import cycles (lazy imports count): {cycles}"


def test_known_cycles_are_still_there(project):
    """An exception outlives its cycle only until this fails: then delete it above."""
    _, graph, _ = project
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in strongly_connected(graph)]
    assert not gone, f"remove {gone} from KNOWN_CYCLES: that cycle no longer exists"


def test_the_reader_sees_lazy_and_relative_imports_and_finds_cycles(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("import numpy\n\ndef f():\n    from . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg.sub.c import g\n")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("from ..a import f\nimport run_me\n")
    (tmp_path / "run_me.py").write_text("from pkg import a\n")
    files, graph, externals = import_graph(tmp_path)
    assert files["run_me"][1] == "script" and files["pkg.sub.c"][1] == "module"
    assert graph["pkg.a"] == {"pkg.b"} and externals["pkg.a"] == {"numpy"}
    assert graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a", "run_me"}
    assert strongly_connected(graph) == [frozenset({"pkg.a", "pkg.b", "pkg.sub.c", "run_me"})]
