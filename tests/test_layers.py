"""The package's layers, as README's "How it is built" draws them: imports run one way.

Read from the source (module-level imports, not those inside functions,
which the factory and the entry points use on purpose), so a change that
makes a layer reach upwards fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chatapp"

# Who may import whom, by layer (a module's layer is its first folder, or
# its name for the top-level modules). Anything not listed is not allowed.
LAYERS = {
    "domain": set(),
    "names": set(),
    "engine": {"engine"},
    "stores": {"stores", "domain"},
    "rooms": {"domain", "names", "stores"},
    "web": {"web", "domain", "stores", "rooms"},
    "delivery": {"delivery", "domain", "stores", "rooms", "extensions"},
    "extensions": set(),
    "presence": {"delivery", "domain", "rooms", "stores", "web"},
    "sockets": {"delivery", "engine", "extensions", "names", "presence", "rooms", "web"},
    "lobby": {"lobby", "extensions", "names", "rooms", "web"},
    "room": {"room", "extensions", "names", "web"},
}


def chatapp_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def top_level_imports(path: Path) -> set[str]:
    """The chatapp modules ``path`` imports at module level (not in functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # ``if TYPE_CHECKING:`` imports are not run
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chatapp"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("chatapp"))
    return found


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "chatapp"


MODULES = chatapp_modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in LAYERS))
def test_imports_run_downwards(module):
    allowed = LAYERS[layer(module)] | {layer(module)}
    imported = {layer(m) for m in top_level_imports(MODULES[module]) if m in MODULES}
    assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_every_module_is_in_a_layer():
    # The factory and the entry points are the only modules outside the layers.
    outside = {m for m in MODULES if layer(m) not in LAYERS}
    assert outside == {"chatapp", "chatapp.__main__"}


def test_no_import_circle():
    graph = {m: {i for i in top_level_imports(p) if i in MODULES} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for imported in graph[module]:
            if imported != module and not module.startswith(imported + "."):
                visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_nothing_imports_an_entry_point():
    for module, path in MODULES.items():
        imports = top_level_imports(path)
        assert not {"chatapp.__main__", "wsgi"} & imports, module
