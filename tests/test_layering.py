"""The packages depend one way only: mailbox and supervisor are leaves, runtime on top.
Each is imported in a fresh interpreter with what it must not use made unimportable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "beamish.supervisor": ["zmq", "lmdb", "msgpack", "psutil", "beamish.runtime",
                           "beamish.mailbox"],
    "beamish.mailbox": ["lmdb", "psutil", "beamish.runtime", "beamish.supervisor"],
}


@pytest.mark.parametrize("package", sorted(CASES))
def test_leaf_imports_without_forbidden_modules(package):
    blocked = "".join(f"sys.modules[{m!r}] = None\n" for m in CASES[package])
    code = f"import sys\n{blocked}import {package}\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_runtime_reexports_the_public_names():
    import beamish.runtime as rt
    import beamish.runtime.errors as errors
    for name in ["Agent", "start_node", "connect", "Node", "AgentRef", "Limits", "AgentInfo", "Event", "Failure", "Resume", "Skip", "Reset", "Stop", "Escalate", "Down", "Exit"]:
        assert hasattr(rt, name), name
    for name in ["BeamishError", "CallTimeout", "AgentNotFound", "RemoteError", "MessageTooLarge", "NodeNotRunning", "NodeAlreadyRunning", "SpawnError", "ConfigError",
                 "NodeDown"]:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.BeamishError) and cls.__doc__, name


# runtime's layers, top to bottom: a module may import its own layer and those below it.
# Ground: the public types and errors, validation, paths and OS helpers.
RUNTIME_LAYERS = ["client", "node", "cluster", "agent", "messaging", "store", "<ground>"]
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"


def _layer(module: str) -> str:
    """The layer of a module path under runtime (``node.spawner`` -> ``node``)."""
    head = module.split(".")[0]
    return head if head in RUNTIME_LAYERS else "<ground>"


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """Every module under runtime that ``path`` imports (at any depth of the file:
    ``TYPE_CHECKING`` blocks and function bodies included), as a path under runtime."""
    rel = path.relative_to(RUNTIME_DIR).with_suffix("")
    package = list(rel.parts[:-1])
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [a.name for a in node.names]
            elif node.module and node.module.startswith("beamish.runtime."):
                names = [node.module.removeprefix("beamish.runtime.")]
            else:
                continue
            found += [(node.lineno, n) for n in names if n]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("beamish.runtime."))
                      for a in node.names if a.name.startswith("beamish.runtime.")]
    return found


def test_runtime_layers_import_only_downwards():
    wrong = []
    for path in sorted(RUNTIME_DIR.rglob("*.py")):
        rel = path.relative_to(RUNTIME_DIR)
        if rel.parts == ("__init__.py",) or rel.parts == ("__main__.py",):
            continue  # the facade re-exports from every layer
        own = _layer(".".join(rel.with_suffix("").parts))
        for line, target in _runtime_imports(path):
            if RUNTIME_LAYERS.index(_layer(target)) < RUNTIME_LAYERS.index(own):
                wrong.append(f"{rel}:{line} ({own}) imports {target} ({_layer(target)})")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(wrong)


def test_only_the_store_package_knows_its_backend():
    # Outside store/, code opens a store with store.open_store and types it with the
    # store.protocol Protocols: it never imports the LMDB backend, nor lmdb itself.
    wrong = []
    for path in sorted(RUNTIME_DIR.rglob("*.py")):
        rel = path.relative_to(RUNTIME_DIR)
        if rel.parts[0] == "store":
            continue
        wrong += [f"{rel}:{line} imports {target}" for line, target in _runtime_imports(path)
                  if target == "store.lmdb"]
        tree = ast.parse(path.read_text())
        wrong += [f"{rel}:{n.lineno} imports lmdb" for n in ast.walk(tree)
                  if isinstance(n, ast.Import) and any(a.name == "lmdb" for a in n.names)]
    assert not wrong, "\n".join(wrong)


def test_node_down_travels_the_wire_with_its_node_name():
    from beamish.runtime.errors import ERRORS, NodeDown, error_from_wire
    err = NodeDown("n2", "lease expired")
    assert ERRORS["NodeDown"] is NodeDown and isinstance(err, ConnectionError)
    back = error_from_wire({"type": "NodeDown", "message": str(err), "attrs": {"node": "n2"}})
    assert isinstance(back, NodeDown) and back.node == "n2" and "n2" in str(back)


def _module_file(target: str) -> Path | None:
    """The file of module ``target`` (a path under runtime), or None if it is no module."""
    base = RUNTIME_DIR.joinpath(*target.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def test_no_runtime_module_imports_one_that_imports_it_back():
    # Not even under TYPE_CHECKING, nor in a function body (an import there only hides a
    # cycle until the function runs): a module is given its collaborators instead (the
    # node's spawner and commands get theirs from the daemon). The facade
    # (runtime/__init__.py) is left out: it re-exports from every layer, and nothing in
    # runtime imports it.
    graph: dict[Path, set[Path]] = {}
    for path in sorted(RUNTIME_DIR.rglob("*.py")):
        if path == RUNTIME_DIR / "__init__.py":
            continue
        graph[path] = {f for _, target in _runtime_imports(path)
                       if (f := _module_file(target)) is not None and f != RUNTIME_DIR / "__init__.py"}
    cycles = []
    for start in graph:
        # Depth-first from each module: does a path lead back to it?
        stack = [(start, [start])]
        seen: set[Path] = set()
        while stack:
            here, trail = stack.pop()
            for nxt in graph.get(here, ()):
                if nxt == start:
                    cycles.append(" -> ".join(str(p.relative_to(RUNTIME_DIR))
                                              for p in [*trail, start]))
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
