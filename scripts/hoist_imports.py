"""One-off refactoring aid: move imports written inside functions to the top
of their module (after the module's last top-level import), then let
``ruff check --fix`` sort and merge them. Prints what it moved.

    python scripts/hoist_imports.py FILE...
"""

import ast
import sys
from pathlib import Path


def hoist(path: Path) -> int:
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.split("\n")
    moved: list[str] = []
    remove: set[int] = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            if inside and isinstance(child, ast.Import | ast.ImportFrom):
                text = "\n".join(lines[child.lineno - 1 : child.end_lineno]).strip()
                moved.append(text)
                remove.update(range(child.lineno - 1, child.end_lineno))
            visit(child, inside or isinstance(child, functions))

    visit(tree, False)
    if not moved:
        return 0
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    anchor = top[-1].end_lineno if top else 0
    out = []
    for index, line in enumerate(lines):
        if index in remove:
            continue
        out.append(line)
        if index == anchor - 1:
            out.extend(dict.fromkeys(moved))
    # drop blank lines left right after a def/docstring where an import was
    path.write_text("\n".join(out))
    for text in moved:
        print(f"{path}: {text.splitlines()[0]}")
    return len(moved)


if __name__ == "__main__":
    total = sum(hoist(Path(p)) for p in sys.argv[1:])
    print(f"moved {total}")
