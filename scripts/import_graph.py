"""Measure the package's import structure: the largest import cycle between
top-level units (``newsletter.<unit>``) and the number of imports written
inside functions. Counts every import statement, at module level or not,
except those under ``if TYPE_CHECKING:`` (never run; import-linter skips
them too).

    python scripts/import_graph.py [--modules]

``--modules`` also reports the largest cycle between individual modules.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "newsletter"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> tuple[set[str], int]:
    """Modules imported by a file (resolved to newsletter.*), and how many
    import statements sit inside a function."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    local = 0
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)

    def visit(node, in_function: bool):
        nonlocal local
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                continue
            inner = in_function or isinstance(child, functions)
            if isinstance(child, ast.Import | ast.ImportFrom):
                targets = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")
                        anchor = anchor[: len(anchor) - child.level + 1]
                        base = ".".join(anchor + ([base] if base else []))
                    targets = [base] + [f"{base}.{alias.name}" for alias in child.names]
                targets = [t for t in targets if t == "newsletter" or t.startswith("newsletter.")]
                found.update(targets)
                if in_function and targets:
                    local += 1
            visit(child, inner)

    visit(tree, False)
    return found, local


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def connect(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            result.append(component)

    for node in list(graph):
        if node not in index:
            connect(node)
    return result


def main() -> None:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    module_graph: dict[str, set[str]] = defaultdict(set)
    total_local = 0
    for name, path in modules.items():
        found, local = imports_of(path)
        total_local += local
        for target in found:
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                module_graph[name].add(target)
        module_graph.setdefault(name, set())

    def unit(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2])

    unit_graph: dict[str, set[str]] = defaultdict(set)
    for name, targets in module_graph.items():
        unit_graph[unit(name)]  # noqa: B018 - register the node
        for target in targets:
            if unit(target) != unit(name) and unit(target) != "newsletter":
                unit_graph[unit(name)].add(unit(target))
    cycles = sorted((c for c in strongly_connected(unit_graph) if len(c) > 1), key=len, reverse=True)
    largest = cycles[0] if cycles else set()
    print(f"top-level units: {len(unit_graph)}")
    print(f"largest cycle between top-level units: {len(largest)} {sorted(largest) if largest else ''}")
    print(f"imports inside functions: {total_local}")
    if "--modules" in sys.argv:
        module_cycles = sorted(
            (c for c in strongly_connected(module_graph) if len(c) > 1), key=len, reverse=True
        )
        print(f"largest cycle between modules: {len(module_cycles[0]) if module_cycles else 0}")
        for cycle in module_cycles:
            print("  ", sorted(cycle))


if __name__ == "__main__":
    main()
