"""The package floors hold: core imports none of ours, no lower floor imports pipeline/, and no import runs in a cycle.

Every import counts, a function's local ones included: a local import delays a cycle, it does not remove it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "bases", "embedded", "data_recipes", "evaluation", "stages", "pipeline")
BELOW_PIPELINE = ("core", "bases", "embedded", "data_recipes", "evaluation", "stages")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (`from a import b` counts as a.b when a.b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


@pytest.fixture(scope="module")
def graph():
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in files}


def test_core_imports_nothing_of_ours(graph):
    wrong = {
        m: sorted(i for i in deps if not i.startswith("core")) for m, deps in graph.items() if m.startswith("core")
    }
    assert not {m: deps for m, deps in wrong.items() if deps}


@pytest.mark.parametrize("floor", BELOW_PIPELINE)
def test_no_floor_below_the_orchestrator_imports_pipeline(graph, floor):
    wrong = {
        m: sorted(i for i in deps if i.split(".")[0] == "pipeline")
        for m, deps in graph.items()
        if m.split(".")[0] == floor
    }
    assert not {m: deps for m, deps in wrong.items() if deps}


def test_no_import_cycle(graph):
    """Tarjan's strongly connected components over modules (a package's __init__ counts as the package)."""

    def resolve(name):  # `import a.b.c` may name a function's module: walk up to a known module
        while name and name not in graph:
            name = name.rpartition(".")[0]
        return name

    edges = {m: {resolve(d) for d in deps} - {"", m} for m, deps in graph.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles


# pipeline/'s own layers (pipeline/__init__.py): each may import only the layers before it in this order.
PIPELINE_LAYERS = (
    ("pipeline.formats",),
    ("pipeline.recipe",),
    ("pipeline.engine",),
    ("pipeline.reports",),
    ("pipeline.run",),
    ("pipeline.retraining",),
    ("pipeline.cli", "pipeline.__main__"),
)


def layer_of(module: str) -> int | None:
    for i, prefixes in enumerate(PIPELINE_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_every_pipeline_module_has_a_layer(graph):
    assert not [m for m in graph if m.startswith("pipeline.") and layer_of(m) is None]


@pytest.mark.parametrize("layer", [prefixes[0] for prefixes in PIPELINE_LAYERS])
def test_pipeline_layers_import_only_lower_ones(graph, layer):
    """E.g. the recipe imports neither the engine, the reports nor retraining; the engine never imports the
    reports (pipeline/run.py writes the report after a run); the reports never import retraining or the CLI."""
    mine = layer_of(layer)
    wrong = {
        m: sorted(d for d in deps if (layer_of(d) or -1) > mine) for m, deps in graph.items() if layer_of(m) == mine
    }
    assert not {m: deps for m, deps in wrong.items() if deps}


def test_engine_never_imports_the_reports(graph):
    wrong = {
        m: sorted(d for d in deps if d.startswith("pipeline.reports"))
        for m, deps in graph.items()
        if m.startswith("pipeline.engine")
    }
    assert not {m: deps for m, deps in wrong.items() if deps}


def test_recipe_imports_no_other_layer(graph):
    allowed = ("pipeline.recipe", "pipeline.formats")
    wrong = {
        m: sorted(d for d in deps if d.startswith("pipeline") and not d.startswith(allowed))
        for m, deps in graph.items()
        if m.startswith("pipeline.recipe")
    }
    assert not {m: deps for m, deps in wrong.items() if deps}
