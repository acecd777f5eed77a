"""The package's layering: no module imports, directly or through others, a module that imports it.

Import circles make the order of imports matter and hide which layer a module belongs to. The graph is
read from the source (every ``import`` and ``from ... import`` anywhere in a module, lazy ones included),
except imports under ``if TYPE_CHECKING:``, which never run."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, package: str) -> set[str]:
    """Every dotted name an import statement of ``tree`` can load (outside TYPE_CHECKING blocks)."""
    out: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        names = imported_names(ast.parse(path.read_text()), package)
        graph[name] = {n for n in names if n in files and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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


def test_cycle_finder_sees_a_circle_and_ignores_a_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_type_checking_imports_do_not_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from zofo.x import Y\nimport zofo.z\n"
    )
    assert imported_names(tree, "zofo") == {"typing", "typing.TYPE_CHECKING", "zofo.z"}


def test_the_package_has_no_import_circles() -> None:
    graph = import_graph()
    assert "zofo.engine.loop" in graph and "zofo.core.config" in graph  # the graph covers the package
    assert cycles(graph) == []


def test_core_depends_on_no_other_layer_at_import() -> None:
    """The core (config, seeds, errors, registry, device, the ZO step) is what every layer builds on: it
    imports no engine, method, analysis or workflow code (its registries find those by name)."""
    graph = import_graph()
    upward = {
        (name, dep)
        for name, deps in graph.items()
        if name.startswith("zofo.core")
        for dep in deps
        if dep.startswith(("zofo.engine", "zofo.methods", "zofo.analysis", "zofo.grid", "zofo.bench"))
    }
    assert upward == set()


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    """CI (.ci/run) runs exactly the command the README gives a newcomer for the tests (install, ruff,
    snakemake --lint, pytest): the two cannot drift apart."""
    root = SRC.parent
    readme = (root / "README.md").read_text().splitlines()
    marker = next(i for i, line in enumerate(readme) if line.startswith("# 2."))
    command = readme[marker + 1]
    assert "pytest" in command and "snakemake --lint" in command and "ruff check" in command
    assert command in (root / ".ci" / "run").read_text().splitlines()
