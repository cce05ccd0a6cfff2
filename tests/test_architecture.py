"""The package's shape, checked from its source: layers, no import circles, thin CLI, conventions.

docs/ARCHITECTURE.md describes the layers; this module is what keeps the code and that page equal.
Imports are read with ``ast`` (nothing is imported), function-local imports included.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s2v_core"

LAYERS: dict[str, int] = {
    "errors": 0,
    "sanitize": 0,
    "modalities": 1,
    "stages": 1,
    "shipped": 1,
    "limits": 1,
    "signals": 2,
    "night": 3,
    "io": 4,
    "synth": 4,
    "recording": 5,
    "model": 6,
    "inference": 7,
    "cohort": 8,
    "evaluation": 9,
    "train": 10,
    "night_heads": 11,
    "experiments": 11,
    "views": 12,
    "cli": 13,
}
"""Rank of each top-level module or subpackage: a module imports only lower ranks or its own package."""

MAX_TOP_LEVEL_MODULES = 6  # __init__ included
LAZY_ALLOWED = {
    # heavy or optional third-party packages a module may import inside a function
    "torch", "dask", "distributed", "dask_jobqueue", "umap", "yasa", "sklearn", "mne", "wfdb",
    "sleepecg", "matplotlib", "plotly", "tqdm", "pandas", "lightgbm", "antropy", "keras",
}  # fmt: skip
STDLIB = set(sys.stdlib_module_names)


@dataclass(frozen=True)
class Import:
    target: str  # the s2v_core module imported (a package means its __init__)
    line: int
    local: bool  # inside a function
    via_package: bool  # a name imported from a package's __init__, not from its defining module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
    return False


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> tuple[list[Import], list[tuple[str, int, bool]]]:
    """(imports of s2v_core modules, imports of anything else as (top package, line, local))."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    parents = _parents(tree)
    ours, others = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or _in_type_checking(node, parents):
            continue
        local = _in_function(node, parents)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "s2v_core":
                    ours.append(Import(_resolve(alias.name), node.lineno, local, False))
                else:
                    others.append((alias.name.split(".")[0], node.lineno, local))
            continue
        assert node.level == 0, f"{name}:{node.lineno}: relative import"
        module = node.module or ""
        if module.split(".")[0] != "s2v_core":
            others.append((module.split(".")[0], node.lineno, local))
            continue
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if full in MODULES:  # a submodule
                ours.append(Import(full, node.lineno, local, False))
            else:
                target = _resolve(module)
                ours.append(Import(target, node.lineno, local, _is_package(target)))
    return ours, others


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> tuple[str, int]:
    parts = name.split(".")
    if len(parts) == 1:
        return "s2v_core", 99  # the public API: may import everything
    return parts[1], LAYERS[parts[1]]


def test_every_top_level_module_and_package_has_a_layer():
    unknown = {name.split(".")[1] for name in MODULES if "." in name} - set(LAYERS)
    assert not unknown, f"add to LAYERS (and docs/ARCHITECTURE.md): {sorted(unknown)}"


def test_at_most_six_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_import_circles():
    edges = {name: {i.target for i in ours if i.target != name} for name, (ours, _) in GRAPH.items()}
    # Tarjan's strongly connected components, iteratively
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    assert not cycles, f"import circles: {cycles}"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    bad = []
    for name, (ours, _) in GRAPH.items():
        pkg, rank = layer_of(name)
        for imp in ours:
            tpkg, trank = layer_of(imp.target)
            if imp.target == "s2v_core" and name != "s2v_core":
                bad.append(f"{name}:{imp.line} imports the s2v_core package itself")
            elif tpkg != pkg and trank >= rank:
                bad.append(f"{name}:{imp.line} ({pkg}, layer {rank}) imports {imp.target} ({tpkg}, layer {trank})")
    assert not bad, "\n".join(bad)


def test_argparse_only_in_the_cli():
    bad = [f"{name}:{line}" for name, (_, others) in GRAPH.items() for mod, line, _ in others
           if mod == "argparse" and not name.startswith("s2v_core.cli")]  # fmt: skip
    assert not bad, bad


def test_library_functions_take_no_argparse_namespace():
    bad = []
    for name, path in MODULES.items():
        if name.startswith("s2v_core.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "Namespace" in ast.unparse(node.args):
                bad.append(f"{name}.{node.name}")
    assert not bad, bad


def test_function_local_imports_only_for_heavy_optional_packages():
    """The CLI may defer its library imports (so ``s2v --version`` imports no torch); nobody else."""
    bad = []
    for name, (ours, others) in GRAPH.items():
        in_cli = name.startswith("s2v_core.cli")
        bad += [f"{name}:{i.line} {i.target}" for i in ours if i.local and not in_cli]
        bad += [f"{name}:{line} {mod}" for mod, line, local in others
                if local and (mod in STDLIB or mod not in LAZY_ALLOWED)]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_library_code_imports_names_from_their_defining_module():
    """Package ``__init__`` files re-export for users; inside the package nothing goes through them."""
    bad = [f"{name}:{i.line} {i.target}" for name, (ours, _) in GRAPH.items()
           if not _is_package(name) for i in ours if i.via_package]  # fmt: skip
    assert not bad, "\n".join(bad)


def _public_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", [n for n in MODULES if not n.rpartition(".")[2].startswith("_")
                                  and n not in ("s2v_core.cli.__main__",)])  # fmt: skip
def test_public_modules_declare_all_and_it_is_complete(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    declared = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            declared = set(ast.literal_eval(node.value))
    assert declared is not None, f"{name} has no __all__"
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            defined |= {a.asname or a.name for a in node.names}
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets)):
            defined |= {ast.literal_eval(k) for k in node.value.keys}  # a lazy package: name -> its module
    if name != "s2v_core":  # the API package exports lazily; test_the_public_api_resolves checks it
        assert declared <= defined, f"{name}: __all__ names what it does not define: {declared - defined}"
    missing = _public_names(tree) - declared
    assert not missing, f"{name}: public functions and classes missing from __all__: {sorted(missing)}"


def test_one_logger_convention():
    """``log = logging.getLogger(__name__)``, the only logger a module of ours creates."""
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "logging.getLogger":
                parent_ok = [ast.unparse(a) for a in node.args] in (["__name__"], [])  # [] reads the root
                third_party = [ast.unparse(a) for a in node.args] == ["'distributed'"]
                if not (parent_ok or third_party):
                    bad.append(f"{name}:{node.lineno} {ast.unparse(node)}")
        text = path.read_text(encoding="utf-8")
        if "logger = logging.getLogger(__name__)" in text:
            bad.append(f"{name}: the module logger is called `log`")
    assert not bad, "\n".join(bad)


def test_the_layer_table_matches_the_architecture_page():
    page = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [pkg for pkg in LAYERS if f"`{pkg}" not in page]
    assert not missing, f"docs/ARCHITECTURE.md does not mention {missing}"


def test_bench_and_scripts_use_only_public_names():
    """``bench/`` and ``scripts/`` import public names of public modules, never private ones."""
    bad = []
    root = PACKAGE.parent
    for path in sorted([*root.glob("bench/*.py"), *root.glob("scripts/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2v_core"):
                hidden = [a.name for a in node.names if a.name.startswith("_")]
                private_module = any(p.startswith("_") for p in node.module.split("."))
                if hidden or private_module or node.module.startswith("s2v_core.cli"):
                    bad.append(f"{path.relative_to(root)}:{node.lineno} from {node.module} import {hidden or '...'}")
    assert not bad, "\n".join(bad)


def test_layers_are_used():
    """Each layer of the table holds code (no stale entries)."""
    used = defaultdict(int)
    for name in MODULES:
        if "." in name:
            used[name.split(".")[1]] += 1
    assert set(LAYERS) <= set(used), set(LAYERS) - set(used)


def test_the_public_api_resolves():
    import s2v_core

    for name in s2v_core.__all__:
        assert getattr(s2v_core, name) is not None, name
    with pytest.raises(AttributeError):
        s2v_core.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", ["s2v_core.io", "s2v_core.cohort", "s2v_core.evaluation"])
def test_lazy_packages_resolve_every_name_from_its_module(package):
    import importlib

    mod = importlib.import_module(package)
    for name, where in mod._WHERE.items():
        assert name in mod.__all__
        assert getattr(mod, name) is getattr(importlib.import_module(where), name)
    with pytest.raises(AttributeError):
        getattr(mod, "no_such_name")  # noqa: B009 (the attribute is looked up to fail)


def test_training_imports_need_no_reader_or_preparation_packages():
    """What a bare GPU machine lacks (tqdm, pyedflib, defusedxml) is not needed to train from a store."""
    import subprocess

    code = ("import sys\nfor m in ('tqdm', 'pyedflib', 'defusedxml'):\n    sys.modules[m] = None\n"
            "import s2v_core.train.pretrain, s2v_core.train.windows, s2v_core.model.checkpoint\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
