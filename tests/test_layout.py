"""The package's layout: no import circles (in the package or the benchmarks), and the
module paths before the subpackages still import, with a DeprecationWarning."""
import ast
import importlib
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Set

import pytest

from spacy_cls import _moved

ROOT = Path(__file__).resolve().parents[1]


def _module_names(root: Path, package: str) -> Dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package, *parts]) if package else ".".join(parts)] = path
    return names


def _imports(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """Every module of `modules` that `name` imports, at any depth of its code."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # importing a package's own parent runs only its __init__, not a cycle of modules
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _cycles(modules: Dict[str, Path]) -> List[List[str]]:
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, done = [], set()

    def visit(node, stack):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, stack + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_no_import_circle_in_the_package():
    assert _cycles(_module_names(ROOT / "spacy_cls", "spacy_cls")) == []


def test_no_import_circle_in_the_benchmarks():
    assert _cycles(_module_names(ROOT / "benchmarks", "")) == []


def test_the_cycle_check_finds_a_circle(tmp_path):
    (tmp_path / "a.py").write_text("from b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    import a\n")
    assert _cycles(_module_names(tmp_path, "")) == [["a", "b", "a"]]


@pytest.mark.parametrize("old, new", sorted(_moved.MOVED.items()))
def test_old_module_paths_still_import(old, new):
    sys.modules.pop(f"spacy_cls.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"spacy_cls.{old}")
    assert module is importlib.import_module(f"spacy_cls.{new}")
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_public_names_unchanged():
    import spacy_cls
    from spacy_cls.pipeline.component import ClsClassifier, ClsClassifierMultilabel

    assert spacy_cls.ClsClassifier is ClsClassifier
    assert spacy_cls.ClsClassifierMultilabel is ClsClassifierMultilabel
    assert spacy_cls.pipeline.ClsClassifier is ClsClassifier
    assert callable(spacy_cls.quantize.quantize_pipeline)


def test_test_modules_have_unique_names():
    """pytest imports test modules by base name (no __init__.py in tests/): two files of
    one name in different folders cannot both be collected."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
