"""The architecture's rules, checked on the source: dependencies point down the data flow.

- no import cycles between trustfolio's modules (module-level imports; importing a module runs the
  ``__init__`` of every package above it, except the packages it sits in itself);
- nothing in `trustfolio.evaluation` imports the runner or the agents, not even inside a function;
- parsing an experiment file imports neither torch nor any agent;
- no source file is over 450 lines (a longer one usually holds two ideas), the agent registry under 150.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "trustfolio"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, *, everywhere: bool) -> set[str]:
    """The trustfolio modules `path` imports: at module level only, or anywhere (`everywhere`)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else _module_level(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name.split(".")[0] == "trustfolio"}


def _module_level(body):
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):  # imports guarded at module level still run on import
            nested = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                nested += handler.body
            yield from _module_level(nested)


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for target in imported_modules(path, everywhere=False):
            edges.add(target)
            parts = target.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ first
            edges.update(".".join(parts[:i]) for i in range(1, len(parts)))
        # A module's own enclosing packages are already initializing when it runs (a package's
        # __init__ re-exporting its modules is not a cycle); every other edge counts.
        enclosing = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in edges if t in MODULES and t != name and t not in enclosing}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module are the import cycles."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [c for c in components if len(c) > 1]


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert strongly_connected(import_graph()) == []


def test_evaluation_imports_neither_the_runner_nor_the_agents():
    offending = {
        name: sorted(t for t in imported_modules(path, everywhere=True)
                     if t == "trustfolio.runner" or t.startswith("trustfolio.agents"))  # fmt: skip
        for name, path in MODULES.items()
        if name.startswith("trustfolio.evaluation")
    }
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_parsing_an_experiment_imports_neither_torch_nor_an_agent():
    code = (
        "import sys\n"
        "from trustfolio.experiment import Experiment\n"
        "from trustfolio.runner import quickstart_experiment_path\n"
        "experiment = Experiment.from_yaml(quickstart_experiment_path())\n"
        "assert any(m['name'] == 'metatrader' for m in experiment.methods)\n"
        "agents = [m for m in sys.modules if m.startswith('trustfolio.agents.') and m != 'trustfolio.agents.registry']\n"
        "print('torch' in sys.modules, agents)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False []"


def test_no_source_file_is_over_450_lines():
    lines = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: count for name, count in lines.items() if count > 450} == {}


def test_the_agent_registry_is_under_150_lines():
    assert len(MODULES["trustfolio.agents.registry"].read_text().splitlines()) < 150
