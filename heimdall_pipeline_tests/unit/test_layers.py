"""docs/architecture.md's layer table is the contract: every import of every module (top level and
inside functions; `TYPE_CHECKING` blocks too) points at its own layer or one listed before it, no
third-party library is used below the layer that lists it, no two modules import each other in a
circle, and nothing imports a `dagster._...` internal for a name that `dagster` itself exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dagster

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "heimdall_pipeline"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def layer_table() -> list[tuple[str, list[str], list[str]]]:
    """(layer, module paths, third-party libraries) per row of the "Layers" table, in order."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # header and rule
    table = []
    for line in rows:
        layer, modules, libraries = _cells(line)[:3]
        table.append((layer, re.findall(r"`([^`]+)`", modules), re.findall(r"`([^`]+)`", libraries)))
    return table


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported name) of every import in the module; `from a import b` gives `a.b` when
    b is a module, else `a` (relative imports resolved)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in MODULES else base))
    return found


def internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for _, name in imports(module, path):
            target = _resolve(name) if name.split(".")[0] == PACKAGE else None
            if target and target != module and target != PACKAGE:
                graph[module].add(target)
    return graph


def layer_of(module: str, table) -> int | None:
    """The row whose entry matches the module's file most closely (`dsp/` covers the package)."""
    path = str(MODULES[module].relative_to(ROOT / PACKAGE))
    best, best_length = None, -1
    for index, (_, entries, _) in enumerate(table):
        for entry in entries:
            if (path == entry or (entry.endswith("/") and path.startswith(entry))) and len(entry) > best_length:
                best, best_length = index, len(entry)
    return best


def test_the_table_lists_every_module():
    table = layer_table()
    assert len(table) >= 5, "docs/architecture.md lost its layer table"
    unlisted = [m for m in MODULES if m != PACKAGE and layer_of(m, table) is None]
    assert unlisted == [], f"modules missing from docs/architecture.md's layer table: {unlisted}"


def test_imports_point_at_the_same_layer_or_an_earlier_one():
    table = layer_table()
    graph = internal_graph()
    wrong = []
    for module, targets in graph.items():
        if module == PACKAGE:
            continue
        own = layer_of(module, table)
        for target in sorted(targets):
            theirs = layer_of(target, table) if target != PACKAGE else None
            if own is not None and theirs is not None and theirs > own:  # unlisted: the test above
                wrong.append(f"{module} ({table[own][0]}) -> {target} ({table[theirs][0]})")
    assert wrong == [], "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_third_party_libraries_only_from_the_layer_that_lists_them():
    table = layer_table()
    first_row = {}
    for index, (_, _, libraries) in enumerate(table):
        for library in libraries:
            first_row.setdefault(library, index)
    wrong = []
    for module, path in MODULES.items():
        if module == PACKAGE:
            continue
        own = layer_of(module, table)
        for line, name in imports(module, path):
            library = name.split(".")[0]
            if own is not None and library in first_row and first_row[library] > own:
                wrong.append(f"{module}:{line} ({table[own][0]}) imports {name}")
    assert wrong == [], "libraries used below their layer in docs/architecture.md:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(sorted(component))
    return found


def test_no_import_circle_counting_imports_inside_functions():
    assert _cycles(internal_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _python_files() -> list[Path]:
    return sorted(p for folder in (PACKAGE, "heimdall_pipeline_tests", "scripts") for p in (ROOT / folder).rglob("*.py"))


def test_no_dagster_internal_for_a_name_dagster_exports():
    wrong = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagster._"):
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {node.module}"
                          for alias in node.names if hasattr(dagster, alias.name)]
    assert wrong == [], "import these from `dagster` itself:\n" + "\n".join(wrong)
