"""The layout test: the doors between zoo's rooms (DESIGN.md, "Rooms" and "Doors").

It reads zoo/**/*.py with `ast` and never imports zoo, so it needs neither Keras nor
TensorFlow, runs in well under a second, and judges the source as written, imports
inside functions included (they run later, but they are still dependencies). It holds:

* no import cycles between zoo modules;
* the doors: `registry.py` imports only `zoo.errors`; `architectures/` only the registry,
  preprocessing, errors, each other, Keras, NumPy and the standard library; `training/`
  and `transfer/` no TensorFlow, data, serving, tasks or cli (and training not transfer);
  `serving/` neither data nor interpret (a task's signatures hold what images and
  models need); `cli.py` and `serving/cli.py` only public names; no private name (`_x`)
  crosses a room, neither imported nor reached as `module._x`;
* every task module (zoo/tasks/*.py with a `train`) defines `signatures`, so that
  `zoo export` calls it without asking whether it is there;
* one fit path: `.compile(`, `.fit(`, `.train_on_batch(`, `.compile_from_config(` are
  called only in `zoo/training/`;
* Keras classes at module level: no class with a Keras base (a layer, model, metric,
  callback, ... — `keras.X`, a name imported from keras, or another zoo Keras class) is
  defined inside a function, where `register_keras_serializable` and pickling cannot
  reach it and every caller would have to run the factory first.

A room is the first component under zoo/: `training/`, `serving/`, `registry.py`, ...
Rooms that do not exist yet are skipped. Every failure lists each offending `file:line`.
The last test runs the same checks on a small made-up package, so that a checker that
silently finds nothing cannot pass for a clean tree.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"

# Receivers whose `.compile(` / `.fit(` is not Keras: a call is skipped when its receiver
# is (an attribute chain on) a name bound to an import of one of these modules, e.g.
# `re.compile(...)`, `import re as r; r.compile(...)`, `np.polynomial.Polynomial.fit(...)`.
NOT_KERAS = {"re", "regex", "sre_compile", "py_compile", "codeop", "numpy", "scipy", "sklearn"}
FIT_METHODS = {"compile", "fit", "train_on_batch", "compile_from_config"}
TENSORFLOW = {"tensorflow", "tf_keras"}


# --------------------------------------------------------------------------- reading
@dataclass
class Import:
    file: str  # "zoo/transfer/head.py"
    line: int
    text: str  # the statement, unparsed on one line
    targets: list  # the zoo modules it imports, resolved (see `_resolve`)
    externals: list  # top-level names of the non-zoo modules it imports
    privates: list  # (owner module, "_name") it reaches into
    type_checking: bool  # under `if TYPE_CHECKING:`: never runs

    def __str__(self):
        return f"{self.file}:{self.line} {self.text}"


@dataclass
class Module:
    name: str  # "zoo.transfer.head"; a package is named by its folder
    file: str
    tree: ast.Module
    imports: list = field(default_factory=list)
    bindings: dict = field(default_factory=dict)  # local name -> zoo module it is bound to
    external_bindings: dict = field(default_factory=dict)  # local name -> top-level module


@dataclass
class Package:
    modules: dict  # name -> Module, one per file
    known: set  # every importable zoo module name, namespace packages (no __init__) included
    lazy: dict  # zoo/__init__.py's _LAZY: public name -> (module, attribute)


def room_of(module):
    """The room a module lives in: `zoo.transfer.head` -> `transfer`, `zoo` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def room_label(pkg, module):
    room = room_of(module)
    if room == "__init__":
        return "__init__.py"
    is_folder = any(k.startswith(f"zoo.{room}.") for k in pkg.known)
    return f"{room}/" if is_folder else f"{room}.py"


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _in_zoo(module):
    return module == "zoo" or module.startswith("zoo.")


def _first_private(module):
    """`zoo.a._b.c` -> [("zoo.a", "_b")]: a private module on the way in."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        if _is_private(parts[i]):
            return [(".".join(parts[:i]), parts[i])]
    return []


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_imports(tree):
    """Every import statement at any depth, with whether it sits under `if TYPE_CHECKING:`."""
    stack = [(tree, False)]
    while stack:
        node, type_checking = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, type_checking) for child in node.orelse)
        else:
            stack.extend((child, type_checking) for child in ast.iter_child_nodes(node))


def _absolute(module, is_package, node):
    """The absolute module an `ImportFrom` names; relative ones resolve against the
    importer's package (the module itself when it is a package's `__init__`)."""
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None  # beyond zoo: cannot be a zoo module
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + (node.module.split(".") if node.module else []))


def _resolve(m, is_package, node, pkg, type_checking):
    """One import statement -> an `Import`, recording the names it binds in `m`.

    Resolution rules:
    - `import zoo.a.b` imports `zoo.a.b` (and binds `zoo`, or the alias to `zoo.a.b`).
    - `from zoo.a import y` imports `zoo.a.y` when that is a module (zoo/a/y.py or a
      folder), else `zoo.a` (y is a name defined there).
    - `from zoo import NAME` with NAME in `_LAZY` goes through zoo's `__getattr__`, which
      Python tries before submodules: it imports `zoo` only; the lazy table is not
      followed. Other names that are submodules (`from zoo import weights`) import them.
    """
    targets, externals, privates = [], [], []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if _in_zoo(alias.name):
                targets.append(alias.name)
                privates += _first_private(alias.name)
                if alias.asname:
                    m.bindings[alias.asname] = alias.name
                else:
                    m.bindings["zoo"] = "zoo"
            else:
                top = alias.name.split(".")[0]
                externals.append(top)
                m.external_bindings[alias.asname or top] = top
    else:
        base = _absolute(m.name, is_package, node)
        if base is not None and _in_zoo(base):
            privates += _first_private(base)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                lazy = base == "zoo" and alias.name in pkg.lazy
                if alias.name != "*" and sub in pkg.known and not lazy:
                    targets.append(sub)
                    m.bindings[alias.asname or alias.name] = sub
                else:
                    targets.append(base)
                if _is_private(alias.name):
                    privates.append((base, alias.name))
        elif base is not None:
            top = base.split(".")[0]
            externals.append(top)
            for alias in node.names:
                m.external_bindings[alias.asname or alias.name] = top
    return Import(m.file, node.lineno, ast.unparse(node), list(dict.fromkeys(targets)),
                  list(dict.fromkeys(externals)), privates, type_checking)


def _lazy_table(init):
    for node in init.body if init else []:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is not None and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
            try:
                return dict(ast.literal_eval(node.value))
            except (ValueError, TypeError):
                return {}  # not a literal table: no lazy names to tell from submodules
    return {}


@functools.lru_cache(maxsize=None)
def scan(zoo_dir: Path) -> Package:
    root = zoo_dir.parent
    modules, packages = {}, set()
    for path in sorted(zoo_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if not all(p.isidentifier() for p in parts):
            continue  # not importable (e.g. __pycache__ leftovers, odd names)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        file = path.relative_to(root).as_posix()
        modules[name] = Module(name, file, ast.parse(path.read_text(encoding="utf-8"), file))
        if is_package:
            packages.add(name)
    known = set(modules)
    for name in modules:  # folders without __init__.py still import, as namespace packages
        parts = name.split(".")
        known.update(".".join(parts[:i]) for i in range(1, len(parts)))
    pkg = Package(modules, known, {})
    pkg.lazy = _lazy_table(modules["zoo"].tree if "zoo" in modules else None)
    for m in modules.values():
        for node, type_checking in _walk_imports(m.tree):
            m.imports.append(_resolve(m, m.name in packages, node, pkg, type_checking))
        m.imports.sort(key=lambda imp: imp.line)
    return pkg


def in_room(m, *rooms):
    return any(m.name == r or m.name.startswith(r + ".") for r in rooms)


def _under(target, prefix):
    return target == prefix or target.startswith(prefix + ".")


# ---------------------------------------------------------------------------- cycles
def import_graph(pkg):
    """{importer: {imported: [Import, ...]}} over every import that can run.

    Importing `zoo.a.b` also runs the package `zoo.a` -- except from inside `zoo.a`:
    a module's own packages are already being imported before it runs, so `zoo.a.x`
    importing its sibling `zoo.a.y` is no edge to `zoo.a`. An explicit import of the
    package (`import zoo.a`, or `from zoo.a import name` where name is not a module) is.
    `zoo` itself is everyone's package, and its lazy table adds no edges.
    """
    graph = {}
    for m in pkg.modules.values():
        for imp in m.imports:
            if imp.type_checking:
                continue
            for target in imp.targets:
                parts = target.split(".")
                implied = {".".join(parts[:i]) for i in range(2, len(parts))}
                implied = {p for p in implied if not _under(m.name, p)}
                for dst in [target, *sorted(implied)]:
                    if dst != m.name:
                        graph.setdefault(m.name, {}).setdefault(dst, []).append(imp)
    return graph


def strongly_connected(graph):
    """Tarjan: the components with more than one module, each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    nodes = sorted(set(graph) | {d for out in graph.values() for d in out})

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(nodes) + 100))
    try:
        for v in nodes:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _shortest_cycle(graph, members, start):
    """The shortest cycle from `start` back to itself inside the component (BFS)."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph.get(path[-1], {})):
            if w == start:
                return path + [start]
            if w in members and w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return [start]


def _example_cycles(graph, component):
    """A component can hold several cycles: the shortest through each member, deduplicated."""
    found = {}
    for start in component:
        ring = _shortest_cycle(graph, set(component), start)[:-1]
        turn = ring.index(min(ring))
        found.setdefault(tuple(ring[turn:] + ring[:turn]), None)
    return [" -> ".join([*ring, ring[0]]) for ring in sorted(found, key=lambda r: (len(r), r))]


def cycle_violations(pkg):
    graph = import_graph(pkg)
    blocks = []
    for n, component in enumerate(strongly_connected(graph), 1):
        members = set(component)
        edges = {(imp.file, imp.line): imp for src in component
                 for dst, imps in graph.get(src, {}).items() if dst in members for imp in imps}
        blocks.append(f"cycle {n}: {', '.join(component)}\n"
                      + "".join(f"    e.g. {ring}\n" for ring in _example_cycles(graph, component))
                      + "\n".join(f"    {edges[k]}" for k in sorted(edges)))
    return blocks


# ----------------------------------------------------------------------------- doors
def registry_violations(pkg):
    m = pkg.modules["zoo.registry"]
    return [f"{imp}  (imports {', '.join(t for t in imp.targets if t != 'zoo.errors')})"
            for imp in m.imports if any(t != "zoo.errors" for t in imp.targets)]


ARCHITECTURES_MAY_IMPORT = ("zoo.registry", "zoo.architectures.preprocessing", "zoo.errors", "zoo.architectures")
ARCHITECTURES_EXTERNALS = {"keras", "numpy", "__future__", *sys.stdlib_module_names}


def architecture_violations(pkg):
    found = []
    for m in pkg.modules.values():
        if not in_room(m, "zoo.architectures"):
            continue
        for imp in m.imports:
            bad = [t for t in imp.targets if not any(_under(t, a) for a in ARCHITECTURES_MAY_IMPORT)]
            bad += [e for e in imp.externals if e not in ARCHITECTURES_EXTERNALS]
            if bad:
                found.append(f"{imp}  (imports {', '.join(bad)})")
    return found


# The two modules of training/ and transfer/ whose whole subject is a TensorFlow object:
# tf.distribute strategies and TF Hub SavedModels. Each imports TensorFlow inside the
# functions that need it, on the TensorFlow backend only; nothing else in the rooms may.
TENSORFLOW_MODULES = {"zoo.training.distribute", "zoo.transfer.hub"}


def training_violations(pkg):
    found = []
    for m in pkg.modules.values():
        if in_room(m, "zoo.training"):
            banned = ("zoo.data", "zoo.serving", "zoo.tasks", "zoo.cli", "zoo.transfer")
        elif in_room(m, "zoo.transfer"):
            banned = ("zoo.data", "zoo.serving", "zoo.tasks", "zoo.cli")
        else:
            continue
        for imp in m.imports:
            bad = [e for e in imp.externals if e in TENSORFLOW and m.name not in TENSORFLOW_MODULES]
            bad += [t for t in imp.targets if any(_under(t, b) for b in banned)]
            if bad:
                found.append(f"{imp}  (imports {', '.join(bad)})")
    return found


SERVING_MAY_NOT_IMPORT = ("zoo.data", "zoo.interpret")


def serving_violations(pkg):
    found = []
    for m in pkg.modules.values():
        if not in_room(m, "zoo.serving"):
            continue
        for imp in m.imports:
            bad = [t for t in imp.targets if any(_under(t, b) for b in SERVING_MAY_NOT_IMPORT)]
            if bad:
                found.append(f"{imp}  (imports {', '.join(bad)})")
    return found


def _top_level_functions(m):
    return {node.name for node in m.tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def task_signature_violations(pkg):
    """Task modules (those in zoo/tasks/ with a top-level `train`) lacking a top-level
    `signatures`: `zoo export` calls every task's, it never asks whether there is one."""
    return [f"{m.file}  (defines train but not signatures)" for m in pkg.modules.values()
            if m.name.startswith("zoo.tasks.") and "train" in _top_level_functions(m)
            and "signatures" not in _top_level_functions(m)]


def _owner_room(pkg, owner, name):
    full = f"{owner}.{name}"
    return room_of(full if full in pkg.known else owner)


def _attribute_chain(node):
    """`a.b.c` -> ["a", "b", "c"]; None when it does not start at a plain name."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def private_attributes(pkg, m):
    """(line, "registry._REGISTRY", owner module, "_name") for each private attribute
    reached through a name that an import of a zoo module bound in this file."""
    seen = set()
    for node in ast.walk(m.tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _attribute_chain(node)
        if not chain or chain[0] not in m.bindings:
            continue
        module = m.bindings[chain[0]]
        for i, name in enumerate(chain[1:], 1):
            if _is_private(name):
                key = (node.lineno, ".".join(chain[: i + 1]), module, name)
                if key not in seen:
                    seen.add(key)
                    yield key
                break
            if f"{module}.{name}" not in pkg.known:
                break
            module = f"{module}.{name}"


def cli_violations(pkg):
    found = []
    for name in ("zoo.cli", "zoo.serving.cli"):
        m = pkg.modules.get(name)
        if m is None:
            continue
        for imp in m.imports:
            if imp.privates:
                found.append(f"{imp}  (private: {', '.join(n for _, n in imp.privates)})")
        for line, dotted, owner, _ in private_attributes(pkg, m):
            found.append(f"{m.file}:{line} {dotted}  (private attribute of {owner})")
    return found


def private_import_violations(pkg):
    found = []
    for m in pkg.modules.values():
        room = room_of(m.name)
        for imp in m.imports:
            crossing = [(o, n) for o, n in imp.privates if _owner_room(pkg, o, n) != room]
            if crossing:
                names = ", ".join(f"{o}.{n}" for o, n in crossing)
                found.append(f"{imp}  ({names}, from room {room_label(pkg, m.name)} into "
                             f"{room_label(pkg, crossing[0][0] + '.' + crossing[0][1])})")
    return found


def private_attribute_violations(pkg):
    found = []
    for m in pkg.modules.values():
        room = room_of(m.name)
        for line, dotted, owner, name in private_attributes(pkg, m):
            if _owner_room(pkg, owner, name) != room:
                found.append(f"{m.file}:{line} {dotted}  ({owner} is in room "
                             f"{room_label(pkg, owner)}, this file in {room_label(pkg, m.name)})")
    return found


# ------------------------------------------------------------------- the rooms themselves
# zoo/ at the top holds the public core only; everything else is in a room named for
# what it does (DESIGN.md, "Rooms").
TOP_LEVEL_MODULES = {"zoo", "zoo.__main__", "zoo.cli", "zoo.registry", "zoo.models", "zoo.weights", "zoo.runs",
                     "zoo.errors", "zoo.io"}
ROOMS = {"architectures", "data", "training", "transfer", "tasks", "interpret", "serving", "plots"}


def top_level_violations(pkg):
    found = []
    for name, m in sorted(pkg.modules.items()):
        parts = name.split(".")
        if len(parts) <= 2 and name not in TOP_LEVEL_MODULES and parts[-1] not in ROOMS:
            found.append(f"{m.file}  (a module at zoo's top level)")
        elif len(parts) > 2 and parts[1] not in ROOMS and name.split(".")[:2] != ["zoo", "cli"]:
            found.append(f"{m.file}  (in zoo/{parts[1]}/, which is not one of the rooms)")
    return found


def private_module_import_violations(pkg):
    """A private name imported from another module, even in the same room: a name that
    two modules share is public, and says so by losing its underscore."""
    found = []
    for m in pkg.modules.values():
        for imp in m.imports:
            crossing = [(o, n) for o, n in imp.privates if o != m.name and f"{o}.{n}" != m.name]
            if crossing:
                found.append(f"{imp}  ({', '.join(f'{o}.{n}' for o, n in crossing)})")
    return found


def room_graph(pkg):
    """`{room: {rooms it imports}}`, from the module graph (`zoo` itself, the lazy public
    API, is left out: it names everything and runs nothing at import)."""
    graph = {}
    for src, targets in import_graph(pkg).items():
        room = room_of(src)
        if room == "__init__":
            continue
        for target in targets:
            other = room_of(target)
            if other not in ("__init__", room):
                graph.setdefault(room, set()).add(other)
        graph.setdefault(room, set())
    return graph


def room_cycles(pkg):
    """Cycles between rooms: `interpret` importing `tasks` while `tasks` imports
    `interpret` is one, whichever files the two arrows start from."""
    graph = room_graph(pkg)
    return [" <-> ".join(sorted(component)) for component in strongly_connected(graph)]


# --------------------------------------------------------------------------- fit path
def fit_violations(pkg):
    found = []
    for m in pkg.modules.values():
        if in_room(m, "zoo.training"):
            continue
        for node in ast.walk(m.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in FIT_METHODS):
                continue
            chain = _attribute_chain(node.func.value)
            if chain and m.external_bindings.get(chain[0]) in NOT_KERAS:
                continue
            found.append((m.file, node.lineno, f"{ast.unparse(node.func)}(...)"))
    return [f"{file}:{line} {call}" for file, line, call in sorted(found)]


# --------------------------------------------------------------- Keras classes nested
KERAS_BASE_NAMES = {"Layer", "Model", "Sequential", "Functional", "Callback", "Metric", "Loss", "Optimizer",
                    "Constraint", "Initializer", "Regularizer", "LearningRateSchedule"}
KERAS_MODULES = {"keras", "tf_keras"}


def _mentions_keras(m, base, keras_names):
    """Whether a class base is Keras: `keras.layers.Layer`, `tf.keras.Model`, a name bound
    by an import from keras (`from keras import layers` -> `layers.Layer`), a Keras base
    class name, or a zoo class that is itself a Keras class (`keras_names`)."""
    chain = _attribute_chain(base)
    if chain is None:
        return "keras" in ast.unparse(base)
    return (m.external_bindings.get(chain[0]) in KERAS_MODULES or "keras" in chain
            or chain[-1] in KERAS_BASE_NAMES or chain[-1] in keras_names)


def _classes(tree):
    """(class node, whether a function encloses it), for every class at any depth."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, ast.ClassDef):
            yield node, in_function
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inside) for child in ast.iter_child_nodes(node))


def nested_keras_class_violations(pkg):
    keras_names = set()
    for _ in range(3):  # a zoo Keras class may derive from another one: a few passes settle it
        keras_names |= {node.name for m in pkg.modules.values() for node, _ in _classes(m.tree)
                        if any(_mentions_keras(m, base, keras_names) for base in node.bases)}
    found = []
    for m in pkg.modules.values():
        for node, in_function in _classes(m.tree):
            if in_function and any(_mentions_keras(m, base, keras_names) for base in node.bases):
                bases = ", ".join(ast.unparse(base) for base in node.bases)
                found.append((m.file, node.lineno, f"class {node.name}({bases})"))
    return [f"{file}:{line} {text}" for file, line, text in sorted(found)]


# ----------------------------------------------------------------------------- tests
def _report(title, violations):
    if violations:
        pytest.fail(f"{title} ({len(violations)}):\n  " + "\n  ".join(violations), pytrace=False)


def _require(pkg, *rooms):
    if not any(in_room(m, *rooms) for m in pkg.modules.values()):
        pytest.skip(f"no {' or '.join(rooms)} yet")


def test_no_import_cycles():
    pkg = scan(ZOO)
    assert "zoo" in pkg.modules, f"no zoo/__init__.py under {ZOO}"
    _report("import cycles between zoo modules (each: its members, example cycles, and "
            "every import inside it)", cycle_violations(pkg))


def test_registry_imports_only_errors():
    pkg = scan(ZOO)
    _require(pkg, "zoo.registry")
    _report("zoo/registry.py imports nothing of zoo but zoo.errors; these imports do",
            registry_violations(pkg))


def test_architectures_import_only_registry_preprocessing_errors():
    pkg = scan(ZOO)
    _require(pkg, "zoo.architectures")
    _report("zoo/architectures/* import only zoo.registry, zoo.architectures.preprocessing, zoo.errors, "
            "each other, keras, numpy and the standard library; these import more",
            architecture_violations(pkg))


def test_training_and_transfer_know_keras_models_only():
    pkg = scan(ZOO)
    _require(pkg, "zoo.training", "zoo.transfer")
    _report("zoo/training/* and zoo/transfer/* import no tensorflow/tf_keras and nothing of "
            "zoo.data, zoo.serving, zoo.tasks, zoo.cli (training not zoo.transfer either)",
            training_violations(pkg))


def test_serving_imports_neither_data_nor_interpret():
    pkg = scan(ZOO)
    _require(pkg, "zoo.serving")
    _report("zoo/serving/* import nothing of zoo.data or zoo.interpret (what an export needs of "
            "images and models is in the task's signatures); these do", serving_violations(pkg))


def test_every_task_module_defines_signatures():
    pkg = scan(ZOO)
    _require(pkg, "zoo.tasks")
    _report("every task module defines signatures(source, top_k=..., classes=...) (see zoo.tasks); "
            "these do not", task_signature_violations(pkg))


def test_cli_uses_public_api_only():
    pkg = scan(ZOO)
    _require(pkg, "zoo.cli", "zoo.serving.cli")
    _report("zoo/cli/__init__.py and zoo/serving/cli.py use public names only; these are private",
            cli_violations(pkg))


def test_no_private_import_across_rooms():
    _report("private names (_x) imported from another room", private_import_violations(scan(ZOO)))


def test_no_private_attribute_across_rooms():
    _report("private attributes (module._x) reached on a module of another room",
            private_attribute_violations(scan(ZOO)))


def test_top_level_holds_only_the_public_core():
    pkg = scan(ZOO)
    _report(f"zoo/ at the top holds only {sorted(m.split('.')[-1] for m in TOP_LEVEL_MODULES)} and the rooms "
            f"{sorted(ROOMS)}; these are elsewhere", top_level_violations(pkg))


def test_no_private_name_imported_from_another_module():
    pkg = scan(ZOO)
    _report("no module imports a private name (_x) from another module; these do",
            private_module_import_violations(pkg))


def test_no_import_cycles_between_rooms():
    pkg = scan(ZOO)
    _report("no two rooms import each other (directly or round a loop); these do", room_cycles(pkg))


def test_one_fit_path():
    _report(".compile/.fit/.train_on_batch/.compile_from_config called outside zoo/training/",
            fit_violations(scan(ZOO)))


def test_keras_classes_are_defined_at_module_level():
    _report("Keras classes defined inside a function (define them at module level, registered with "
            "keras.saving.register_keras_serializable(package=\"zoo\") where Keras saves them)",
            nested_keras_class_violations(scan(ZOO)))


# ---------------------------------------------------------------- the checker itself
FAKE = {
    "__init__.py": '_LAZY = {"create": ("zoo.registry", "create"), "export": ("zoo.export", "export")}\n',
    "errors.py": "",
    # Lazy names, even one that is also a submodule: edges to zoo only, so no cycle.
    "c.py": "from zoo import create, export\n",
    "export.py": "import zoo.c\n",
    # registry <-> weights through a lazy import and a relative one.
    "registry.py": ("import re\nimport zoo.c\nfrom zoo.errors import E\n_R = {}\n"
                    "def f():\n    from zoo import weights\n"),
    "weights.py": "from . import registry\n",
    # Siblings inside a package: no edge to the package, no cycle.
    "a/__init__.py": "from zoo.a.x import f\n",
    "a/x.py": "from zoo.a import y\nfrom ._p import q\n",
    "a/y.py": "",
    "a/_p.py": "",
    # A name (not a module) from the own package: a real cycle b <-> b.x.
    "b/__init__.py": "from zoo.b.x import f\n",
    "b/x.py": "from zoo.b import g\n",
    # Type-only imports never run: no cycle d <-> e.
    "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from zoo import e\n",
    "e.py": ("import zoo.d\nimport re as rx\nimport numpy as np\nfrom zoo import registry\n"
             "from zoo.registry import _R\nfrom zoo.a._p import q\nfrom zoo.a import _p\n"
             "registry._R.clear()\nzoo.registry._R.clear()\nrx.compile('x')\n"
             "np.polynomial.Polynomial.fit([0], [0], 1)\nmodel.fit(x)\n"),
    "training/loop.py": "import tensorflow as tf\nfrom zoo.transfer import head\nmodel.compile()\n",
    "transfer/head.py": "from zoo.training import loop\n",
    "cli.py": "import zoo\nfrom zoo import __version__\nfrom zoo.registry import _R\nzoo._LAZY\n",
    # Serving reaches neither data nor interpret, however imported; tasks are fine.
    "serving/export.py": ("from zoo.tasks import x\nfrom zoo.data.images import decode\n"
                          "def f():\n    from zoo import interpret\n    import zoo.interpret.graph as g\n"
                          "    import zoo.data\n"),
    "data/images.py": "",
    "interpret/graph.py": "",
    # A task module defines signatures beside train.
    "tasks/good.py": "def train():\n    pass\ndef signatures(source):\n    pass\n",
    "tasks/bad.py": "def train():\n    def signatures():\n        pass\n",
    "tasks/helper.py": "def signatures_of():\n    pass\n",
    # Keras classes: at module level fine; inside a function (or a method) not, whatever the
    # spelling of the base; a plain class inside a function is fine.
    "layers.py": ("import keras\nfrom keras import layers as kl\nfrom keras.callbacks import Callback\n"
                  "import tensorflow as tf\n"
                  "class Top(keras.layers.Layer):\n    pass\n"
                  "def make():\n    class A(keras.Model):\n        pass\n"
                  "    class B(kl.Layer):\n        pass\n"
                  "    class C(Callback):\n        pass\n"
                  "    class D(tf.keras.metrics.Metric):\n        pass\n"
                  "    class E(Top):\n        pass\n"
                  "    class Plain:\n        pass\n"
                  "    return A, B, C, D, E, Plain\n"
                  "class Holder:\n    def method(self):\n        class F(keras.layers.Layer):\n            pass\n"),
}


def test_checker_on_a_made_up_package(tmp_path):
    for rel, text in FAKE.items():
        path = tmp_path / "zoo" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pkg = scan(tmp_path / "zoo")

    assert strongly_connected(import_graph(pkg)) == [
        ["zoo.b", "zoo.b.x"], ["zoo.registry", "zoo.weights"],
        ["zoo.training.loop", "zoo.transfer.head"]]
    assert [v.split("  ")[0] for v in registry_violations(pkg)] == [
        "zoo/registry.py:2 import zoo.c", "zoo/registry.py:6 from zoo import weights"]
    assert [v.split("  ")[0] for v in training_violations(pkg)] == [
        "zoo/training/loop.py:1 import tensorflow as tf",
        "zoo/training/loop.py:2 from zoo.transfer import head"]
    assert [v.split("  ")[0] for v in private_import_violations(pkg)] == [
        "zoo/cli.py:3 from zoo.registry import _R", "zoo/e.py:5 from zoo.registry import _R",
        "zoo/e.py:6 from zoo.a._p import q", "zoo/e.py:7 from zoo.a import _p"]
    assert [v.split("  ")[0] for v in private_attribute_violations(pkg)] == [
        "zoo/cli.py:4 zoo._LAZY", "zoo/e.py:8 registry._R", "zoo/e.py:9 zoo.registry._R"]
    assert [v.split("  ")[0] for v in cli_violations(pkg)] == [
        "zoo/cli.py:3 from zoo.registry import _R", "zoo/cli.py:4 zoo._LAZY"]
    assert fit_violations(pkg) == ["zoo/e.py:12 model.fit(...)"]
    assert [v.split("  ")[0] for v in serving_violations(pkg)] == [
        "zoo/serving/export.py:2 from zoo.data.images import decode",
        "zoo/serving/export.py:4 from zoo import interpret", "zoo/serving/export.py:5 import zoo.interpret.graph as g",
        "zoo/serving/export.py:6 import zoo.data"]
    assert [v.split("  ")[0] for v in task_signature_violations(pkg)] == ["zoo/tasks/bad.py"]
    assert [v.split(" ", 1)[0] for v in nested_keras_class_violations(pkg)] == [
        "zoo/layers.py:8", "zoo/layers.py:10", "zoo/layers.py:12", "zoo/layers.py:14", "zoo/layers.py:16",
        "zoo/layers.py:23"]
