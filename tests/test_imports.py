"""The hh package's import graph has no cycles, and the library never imports `configs`.

Pure `ast`: no hh module is imported, so this runs in well under a second. Every `import` and
`from ... import` counts, at module level AND inside functions (a function-level import hides a
cycle from Python, not from a reader). Relative imports are resolved, and `from hh.x import y`
is an edge to the module hh.x.y when y is a submodule, to hh.x otherwise.
"""

import ast
import pathlib
import pkgutil

import hh

ROOT = pathlib.Path(hh.__file__).parent
PACKAGE = "hh"


def package_modules(directory=ROOT, prefix=PACKAGE) -> dict:
    """{dotted module name: source path} for the package and everything under it (no imports)."""
    modules = {prefix: directory / "__init__.py"}
    for info in pkgutil.iter_modules([str(directory)]):
        name = f"{prefix}.{info.name}"
        if info.ispkg:
            modules.update(package_modules(directory / info.name, name))
        else:
            modules[name] = directory / f"{info.name}.py"
    return modules


def _anchor(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of `level` dots resolves against."""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    return ".".join(parts[:len(parts) - (level - 1)])


def imported_names(module: str, path: pathlib.Path) -> set:
    """Every absolute dotted name `module` imports: `a.b` for `import a.b`, and for
    `from a import b` the pair's join `a.b` (the caller resolves it to the module a.b when there is
    one, else to the module a). Relative imports are made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _anchor(module, path.name == "__init__.py", node.level)
                base = f"{anchor}.{base}" if base else anchor
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict, package: str = PACKAGE) -> dict:
    """{module: set of hh modules it imports}. A dotted name maps to the longest module prefix
    that exists, so `hh.a.b.some_function` is an edge to hh.a.b."""
    def owner(name):
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) if parts else None

    graph = {}
    for module, path in modules.items():
        targets = {owner(name) for name in imported_names(module, path)
                   if name == package or name.startswith(package + ".")}
        graph[module] = {t for t in targets if t and t != module and t != package}
    return graph


def strongly_connected_components(graph: dict) -> list:
    """Tarjan's algorithm (iterative, so depth is no concern): a list of sets of modules."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
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
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def a_cycle(graph: dict, component: set) -> list:
    """One concrete cycle through a strongly connected component, as a list of modules
    (breadth-first, so it is a shortest one through its start)."""
    start = min(component)
    parents, frontier = {start: None}, [start]
    while frontier:
        successors = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child not in parents:
                    parents[child] = node
                    successors.append(child)
        frontier = successors
    raise AssertionError(f"{component} is not strongly connected")


def test_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    components = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert components == [{"a", "b", "c"}]
    assert a_cycle(graph, components[0]) == ["a", "b", "c", "a"]


def test_relative_and_submodule_imports_resolve(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("from ..top import x\n\ndef f():\n    from pkg.sub import leaf\n")
    (package / "top.py").write_text("import pkg.sub.leaf\nfrom pkg.sub.leaf import f\n")
    modules = package_modules(package, "pkg")
    names = {m: imported_names(m, p) for m, p in modules.items()}
    assert names["pkg.sub"] == {"pkg.sub.leaf"}
    assert names["pkg.sub.leaf"] == {"pkg.top.x", "pkg.sub.leaf"}
    assert names["pkg.top"] == {"pkg.sub.leaf", "pkg.sub.leaf.f"}
    graph = import_graph(modules, "pkg")
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.leaf"}, "pkg.sub.leaf": {"pkg.top"},
                     "pkg.top": {"pkg.sub.leaf"}}


def test_the_hh_package_has_no_import_cycle():
    graph = import_graph(package_modules())
    assert len(graph) > 50, "the walk found too few modules"
    cycles = [" -> ".join(a_cycle(graph, c))
              for c in strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def package_graph(graph: dict) -> dict:
    """The module graph collapsed onto hh's sub-packages (hh.data.tfds counts as hh.data; a
    top-level module such as hh.config is its own node)."""
    def package(module):
        return ".".join(module.split(".")[:2])

    collapsed = {package(m): set() for m in graph}
    for module, targets in graph.items():
        collapsed[package(module)].update(package(t) for t in targets if package(t) != package(module))
    return collapsed


def test_no_cycle_between_subpackages():
    """Sub-packages form layers too: hh.pipeline may use hh.online, never the other way round."""
    graph = package_graph(import_graph(package_modules()))
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, "import cycles between hh's sub-packages:\n" + "\n".join(
        " -> ".join(a_cycle(graph, set(c))) for c in cycles)


def test_the_library_never_imports_configs():
    """The library gets sharding rules and defaults from the config it is given."""
    offenders = sorted(module for module, path in package_modules().items()
                       if any(name == "configs" or name.startswith("configs.")
                              for name in imported_names(module, path)))
    assert not offenders, f"hh modules importing configs: {offenders}"
