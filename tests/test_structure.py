"""The package's shape, checked from its source: one definition per concept, graphs run
only through the checked runner, and no circle among the modules' imports.

Each check reads python/leangraph's source as text or AST, so a second copy of a
helper, a session opened beside the runner, or an import that closes a circle fails
here the day it is written.
"""

import ast
import re
from pathlib import Path

import pytest

import leangraph

PACKAGE = Path(leangraph.__file__).resolve().parent


def _sources():
    return {path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(PACKAGE.rglob("*.py"))}


def _where(pattern, allowed=()):
    """Files (outside `allowed`) whose code matches `pattern`, with the line."""
    found = []
    for name, text in _sources().items():
        if name in allowed:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(pattern, code):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_the_package_is_the_source_tree_or_the_wheel():
    assert (PACKAGE / "runner.py").is_file() and (PACKAGE / "hardware.py").is_file()


@pytest.mark.parametrize("what, pattern, home", [
    ("the tensor-name helper", r'":" in \w+ else \w+ \+ ":0"', "graphs.py"),
    ("a /proc/cpuinfo reader", r"/proc/cpuinfo", "hardware.py"),
    ("a CPU-list parser", r'\.partition\("-"\)|\.split\("-", 1\)', "hardware.py"),
    ("a recipe-name check", r"unknown recipe", "recipes.py"),
    ("a session beside the checked runner", r"compat\.v1\.Session\(", "runner.py"),
])
def test_one_definition(what, pattern, home):
    others = _where(pattern, allowed={home})
    assert not others, f"{what} outside {home}:\n" + "\n".join(others)
    assert _where(pattern, allowed=set(_sources()) - {home}), f"{home} no longer has {what}"


def _module_name(relative):
    parts = ["leangraph", *relative[:-3].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports():
    """{module: {leangraph modules it imports at its top level}}."""
    sources = _sources()
    modules = {_module_name(name): name for name in sources}
    edges = {}
    for module, name in modules.items():
        tree = ast.parse(sources[name])
        package = module if name.endswith("__init__.py") else module.rsplit(".", 1)[0]
        targets = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # A package's own __init__ runs before any of its modules: not an edge.
                if target and target != module and not module.startswith(target + "."):
                    targets.add(target)
        edges[module] = targets
    return edges


def _cycle(edges):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_no_import_circle_among_top_level_imports():
    edges = _top_level_imports()
    # The package itself re-exports the API, so it imports nearly everything.
    edges = {m: {t for t in ts if t != "leangraph"} for m, ts in edges.items()}
    circle = _cycle(edges)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_search_imports_neither_tune_nor_prune():
    """search/ is the shared-search layer under both drivers: it imports neither driver,
    at the top or lazily, and no message is patched from one command's into another's."""
    found = [hit for hit in _where(r"(from|import)\s+leangraph\.(tune|prune)\b")
             if hit.startswith("search/")]
    assert not found, "\n".join(found)
    patched = _where(r"\.replace\(\s*[\"']leangraph (tune|prune)")
    assert not patched, "\n".join(patched)


#: The drivers: the modules that define the public optimize, tune and prune.
DRIVERS = ("optimize.py", "tune.py", "prune/api.py")


def _lines(name):
    return len(_sources()[name].splitlines())


def test_drivers_commands_and_modules_stay_short():
    """Each driver stays a short script over the pipeline (<= 300 lines), each command a
    parser and a call (<= 150), and no module grows past 600."""
    sources = _sources()
    long_drivers = [f"{n}: {_lines(n)}" for n in DRIVERS if _lines(n) > 300]
    long_commands = [f"{n}: {_lines(n)}" for n in sources
                     if n.startswith("commands/") and _lines(n) > 150]
    long_modules = [f"{n}: {_lines(n)}" for n in sources if _lines(n) > 600]
    assert not (long_drivers or long_commands or long_modules), (
        long_drivers, long_commands, long_modules)


def test_every_error_class_is_defined_in_errors():
    found = [hit for hit in _where(r"^class \w*Error\(") if not hit.startswith("errors.py:")]
    assert not found, "\n".join(found)


#: Modules that import lazily on purpose: the CLI's entry (its start must stay light, and it
#: checks the TensorFlow install before anything imports it) and the package's own init.
LAZY_BY_DESIGN = {"leangraph", "leangraph.cli", "leangraph.__main__", "leangraph._tfcheck"}


def _lazy_imports():
    """(module, leangraph module it imports inside a function, line) for every such import."""
    sources = _sources()
    modules = {_module_name(name): name for name in sources}
    found = []
    for module, name in modules.items():
        tree = ast.parse(sources[name])
        package = module if name.endswith("__init__.py") else module.rsplit(".", 1)[0]
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                        base = ".".join(anchor + ([base] if base else []))
                    targets = [f"{base}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    continue
                for target in targets:
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target.startswith("leangraph") and target != module:
                        found.append((module, target, node.lineno))
    return found


def _reaches(edges, start, goal):
    seen, stack = set(), [start]
    while stack:
        module = stack.pop()
        if module == goal:
            return True
        if module not in seen:
            seen.add(module)
            stack.extend(edges.get(module, ()))
    return False


def test_leangraph_modules_are_imported_at_the_top_and_no_lazy_import_hides_a_circle():
    """TensorFlow, Keras and the optional extras are imported where they are used; a
    leangraph module is imported at the top (the CLI's entry and the package's init
    excepted), so no function-level import hides an import circle either."""
    lazy = [f"{module}:{line}: {target}" for module, target, line in _lazy_imports()
            if module not in LAZY_BY_DESIGN and target != "leangraph"]
    assert not lazy, "leangraph modules imported inside functions:\n" + "\n".join(lazy)
    edges = _top_level_imports()
    for module, target, _ in _lazy_imports():
        if module not in LAZY_BY_DESIGN:
            edges.setdefault(module, set()).add(target)
    edges = {m: {t for t in ts if t != "leangraph"} for m, ts in edges.items()}
    circle = _cycle(edges)
    assert circle is None, "import circle, through a lazy import: " + " -> ".join(circle)
