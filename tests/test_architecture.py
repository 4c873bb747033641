"""The package's structure: no import cycles, folders import only from the layers below them, the reference
model inspects no global state, and every speed variant is a pure method override of its reference block."""
import ast
import inspect
import re
from pathlib import Path

import uniformerv2

ROOT = Path(uniformerv2.__file__).resolve().parent

# Bottom to top: a module may import from its own unit or from units of lower layers (docs/architecture.md).
LAYERS = [
    {"errors"},
    {"typed", "fileio"},
    {"labels"},
    {"data"},
    {"weights"},
    {"model"},
    {"accel"},
    {"factory"},
    {"inference"},
    {"engine", "synth", "serve"},
    {"bench"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["uniformerv2", *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Every uniformerv2 module ``name`` imports, at any depth of its code (function-level imports too),
    with the packages that importing a submodule of another package runs (its own packages, and the root
    package, are already running when it is imported)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] != "uniformerv2":
                continue
            while t not in modules:  # an attribute of a module
                t = t.rpartition(".")[0]
            parts = t.split(".")
            found.update(".".join(parts[:k]) for k in range(2, len(parts) + 1))  # parent packages run too
    own = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 2)}
    return found - own


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _unit(module: str) -> str:
    return module.split(".")[1] if module != "uniformerv2" else "__init__"


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w == "uniformerv2":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other: {cycles}"


def test_folders_import_only_from_lower_layers():
    bad = []
    for module, imported in _graph().items():
        unit = _unit(module)
        if unit == "__init__":
            continue
        for target in imported:
            other = _unit(target)
            if other == "__init__" or other == unit:
                continue
            if LAYER_OF[other] >= LAYER_OF[unit]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layering: " + ", ".join(sorted(bad))


def test_every_module_is_in_a_layer():
    assert {_unit(m) for m in _modules()} - {"__init__"} <= set(LAYER_OF)


def test_the_reference_model_inspects_no_global_state():
    pattern = re.compile(r"is_grad_enabled|is_autocast_enabled|is_compiling|is_tracing|is_scripting")
    hits = [f"{p.name}:{i}" for p in (ROOT / "model").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_speed_variants_only_override_methods():
    from uniformerv2 import accel
    from uniformerv2.accel import checkpoint, dpe, inplace, local, mlp

    variants = [c for m in (checkpoint, dpe, inplace, local, mlp) for _, c in inspect.getmembers(m, inspect.isclass)
                if getattr(c, "REFERENCE", None) not in (None, c) and c.__module__ == m.__name__]
    assert len(variants) == 7
    for cls in variants:
        assert issubclass(cls, cls.REFERENCE)
        assert "__init__" not in vars(cls), f"{cls.__name__} must not add state to {cls.REFERENCE.__name__}"
    assert accel.optimize.__kwdefaults__["dpe"] == "auto"
