"""The layering rules of docs/design.md §2, checked on the source.

``crunet/`` (application) -> ``gadgets/`` (protocol edge) -> ``recon/`` (core): a package
imports only those below it, and the methods and models load no ISMRMRD.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> top-level packages of this project it must never import
FORBIDDEN = {"recon": ("gadgets", "crunet"), "gadgets": ("crunet",)}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_imported_modules_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from gadgets.server import X\n    import crunet.cli\n")
    assert imported_modules(src) == {"os", "gadgets.server", "crunet.cli"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            if name.split(".")[0] in FORBIDDEN[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "imports that run up the layers:\n" + "\n".join(offences)


def test_methods_and_models_load_no_ismrmrd():
    code = ("import sys; import recon.models, recon.baselines, recon.methods, "
            "recon.inference, recon.problem; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ismrmrd', 'gadgets', 'crunet', 'h5py')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"loaded by the methods and models: {r.stdout.strip()}"


#: Modules allowed past MAX_LINES: the phantom is one job (a dynamic cardiac phantom), long by its anatomy.
LONG_ALLOWED = {"recon/simulate/phantom.py"}
MAX_LINES = 400


@pytest.mark.parametrize("package", ["recon", "gadgets"])
def test_modules_stay_small(package):
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(ROOT)) not in LONG_ALLOWED]
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {', '.join(long)}"


def test_no_import_cycles_between_modules():
    """Module-level imports of the project form no cycle (a lazy import inside a function may)."""
    graph: dict[str, set[str]] = {}
    for package in ("recon", "gadgets", "crunet"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text())
            deps = set()
            for node in tree.body:  # top level only
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            graph[name] = deps
    # a module's own parent packages are initialised before it in any case: not an edge
    graph = {m: {d for d in deps if d in graph and d != m and not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
