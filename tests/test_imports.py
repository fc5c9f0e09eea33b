"The package's modules import each other without a circle (issue 11): the module graph is a DAG"
import ast
from pathlib import Path

import ctlrepro

PKG = Path(ctlrepro.__file__).parent


def imported_modules(path: Path) -> set:
    "The ctlrepro modules a module imports, inside functions too: a local import that only dodges a circle still closes it"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = f"ctlrepro.{node.module}" if node.level == 1 and node.module else "ctlrepro" if node.level == 1 else node.module or ""
            if mod == "ctlrepro": out |= {f"ctlrepro.{a.name}" for a in node.names}
            elif mod.startswith("ctlrepro."): out.add(".".join(mod.split(".")[:2]))
        elif isinstance(node, ast.Import):
            out |= {".".join(a.name.split(".")[:2]) for a in node.names if a.name.startswith("ctlrepro.")}
    return out


def package_graph() -> dict:
    "module -> the package modules it imports"
    mods = {f"ctlrepro.{p.stem}": p for p in PKG.glob("*.py") if p.stem not in ("__init__", "_modidx")}
    return {m: sorted(d for d in imported_modules(p) if d in mods and d != m) for m, p in mods.items()}


def find_cycle(g: dict) -> list | None:
    "Modules that import each other in a circle (first one repeated at the end), or None"
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for d in g.get(m, ()):
            if state.get(d) == "open": return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = "done"; stack.pop()
    for m in sorted(g):
        if m not in state and (c := visit(m)): return c


def test_find_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
    assert imported_modules(PKG / "cli.py") >= {"ctlrepro.pipeline"}     # the walk sees the package's imports


def test_no_import_circle():
    cycle = find_cycle(package_graph())
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"
