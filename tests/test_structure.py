"""The shape the code keeps: small modules and functions, one-way imports, public seams for tests.

These guard what review found once (a config module of 881 lines, the simulator in the
exporter's import graph, tests reaching into the scheduler's private job table) from coming back unnoticed.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib
import logging
import operator
import pkgutil
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from types import MappingProxyType

import msgspec
import pytest

from tests.conftest import REPO

PRODUCT = sorted((REPO / "exporter").rglob("*.py")) + sorted(
    (REPO / "entra_simulator").glob("*.py")
)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name}"


@pytest.mark.system  # starts the CLI as a process
def test_the_exporter_does_not_import_the_simulator() -> None:
    # --demo imports it when asked; serving, --once and --check-config never load it.
    code = "import sys, exporter.cli; print(sorted(m for m in sys.modules if 'simulator' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


def private_attribute_uses(tree: ast.AST) -> list[str]:
    """Attributes with a leading underscore on anything but ``self`` or ``cls`` (dunders allowed)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted((REPO / "tests").glob("*.py")), ids=lambda p: p.name)
def test_tests_use_no_private_attribute_of_another_module(path: Path) -> None:
    assert private_attribute_uses(ast.parse(path.read_text())) == []


def test_the_private_attribute_check_finds_one() -> None:
    assert private_attribute_uses(ast.parse("runtime.scheduler._jobs['x']")) == ["1: ._jobs"]


# ----------------------------------------------------------------- packages and their directions

# Data flows config -> runtime -> polling -> (graph, reports) -> metrics -> web. A package may
# import those listed here and nothing else of the exporter; the modules on top (cli, settings,
# service, runtime, demo, logs) may import any package, and no package imports them.
PACKAGES = ("config", "reports", "graph", "metrics", "polling", "web")
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "config": set(),
    "reports": set(),
    "graph": {"config", "reports"},
    "metrics": {"config", "reports", "graph"},
    "polling": {"config", "reports", "graph", "metrics"},
    "web": {"config", "reports", "graph", "metrics"},
}
TOP_MODULES = {
    "cli",
    "settings",
    "service",
    "runtime",
    "demo",
    "health",
    "logs",
    "launch",
    "__init__",
    "__main__",
}


def exporter_imports(path: Path) -> set[str]:
    """The exporter's first-level names (package or top module) that ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "exporter" and len(parts) > 1:
                names.add(parts[1])
            elif parts[0] == "exporter":
                names.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "exporter" and len(parts) > 1:
                    names.add(parts[1])
    return names


def test_the_exporter_is_the_packages_and_the_modules_on_top() -> None:
    folders = {
        p.name for p in (REPO / "exporter").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    modules = {p.stem for p in (REPO / "exporter").glob("*.py")}
    assert folders == set(PACKAGES)
    assert modules == TOP_MODULES


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_between_packages_run_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)} imports exporter.{name}"
        for path in (REPO / "exporter" / package).rglob("*.py")
        for name in exporter_imports(path) - {package}
        if name not in ALLOWED_IMPORTS[package]
    }
    assert wrong == set()


def test_the_direction_check_finds_an_upstream_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from exporter.polling.tenant import Tenant\nfrom exporter import logs\n")
    assert exporter_imports(module) == {"polling", "logs"}
    assert "polling" not in ALLOWED_IMPORTS["metrics"]


def test_the_reports_package_does_no_io() -> None:
    io_modules = {"socket", "ssl", "httpx", "httpcore", "asyncio", "msal", "threading", "os"}
    for path in (REPO / "exporter" / "reports").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert imported & io_modules == set(), path.name


# ----------------------------------------------------------------- no library's private parts


@pytest.mark.parametrize(
    "path", sorted((REPO / "exporter").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_the_exporter_uses_no_private_attribute_of_another_object(path: Path) -> None:
    # Stricter than "of a third-party object": only ``self._x`` and ``cls._x`` (and ``other._x``
    # inside the class's own ``__eq__``-style methods, named here) may touch private names.
    allowed = {"exporter/config/model.py": {"._value"}}
    found = {use.split(": ")[1] for use in private_attribute_uses(ast.parse(path.read_text()))}
    assert found <= allowed.get(str(path.relative_to(REPO)), set())


# ----------------------------------------------------------------- no module-level singletons

# Module-level values that are immutable, or stateless by design.
IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    frozenset,
    tuple,
    re.Pattern,
    MappingProxyType,
)


def module_level_state(module: types.ModuleType) -> list[str]:
    """Module-level values that could hold state shared by everything in the process."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("__") or isinstance(value, IMMUTABLE):
            continue
        code = types.FunctionType | types.BuiltinFunctionType
        if isinstance(value, types.ModuleType | type | code | logging.Logger):
            continue  # modules, classes, functions; loggers are process-wide by design
        if isinstance(value, types.GenericAlias | types.UnionType | typing.TypeVar):
            continue  # type aliases
        if name == "annotations" or isinstance(value, operator.attrgetter | operator.itemgetter):
            continue  # ``from __future__ import annotations``; attr- and itemgetters are immutable
        if type(value).__module__ == "typing":
            continue  # TypeGuard and other special forms
        if isinstance(value, datetime.tzinfo | msgspec.json.Decoder):
            continue  # immutable, and stateless (a decoder keeps no data between calls)
        if dataclasses.is_dataclass(value) and type(value).__dataclass_params__.frozen:
            continue
        if getattr(type(value), "__module__", "") == "collections.abc":
            continue  # Callable[...] aliases
        found.append(f"{module.__name__}.{name}: {type(value).__name__}")
    return found


def test_no_module_holds_mutable_state() -> None:
    found = []
    for info in pkgutil.walk_packages([str(REPO / "exporter")], "exporter."):
        if info.name.endswith("__main__"):
            continue
        found += module_level_state(importlib.import_module(info.name))
    assert found == []


def test_the_singleton_check_finds_a_dict_and_an_instance() -> None:
    module = types.ModuleType("m")
    module.TABLE = {}  # type: ignore[attr-defined]
    module.REDACTOR = logging.Filter()  # type: ignore[attr-defined]
    assert module_level_state(module) == ["m.TABLE: dict", "m.REDACTOR: Filter"]


def test_every_test_module_has_a_tier() -> None:
    from tests.conftest import tier_of

    modules = sorted(p.stem for p in (REPO / "tests").glob("test_*.py"))
    assert [m for m in modules if tier_of(m) is None] == []


def test_the_architecture_document_maps_every_module_and_nothing_else() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    tree = text.split("```")[1]
    listed, folder = set(), ""
    for line in tree.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.endswith("/"):
            folder = "" if name == "exporter/" else name
        elif name.endswith(".py"):
            listed.add(f"{folder}{name}" if line.startswith("    ") else name)
    actual = {
        str(p.relative_to(REPO / "exporter"))
        for p in (REPO / "exporter").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    assert listed == actual


def test_every_flag_and_metric_family_is_documented_under_docs() -> None:
    from exporter.metrics import families
    from exporter.settings import build_parser

    docs = "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    flags = set(re.findall(r"(?<![\w-])--[a-z][\w.-]*", build_parser().format_help())) - {"--help"}
    assert sorted(f for f in flags if f not in docs) == []
    names = {v.name for v in vars(families).values() if isinstance(v, families.Family)}
    assert sorted(n for n in names if n not in docs) == []


ROOTS = ("exporter/", "entra_simulator/", "tests/", "deploy/", "docs/", "bench/", "scripts/")


def paths_named_in(text: str) -> set[str]:
    """Repository paths a document names: in backticks or as link targets."""
    found = set()
    for candidate in re.findall(r"`([^`\s]+)`|\]\(([^)\s#]+)", text):
        path = (candidate[0] or candidate[1]).rstrip(".,:;")
        path = re.sub(r"^(\.\./)+", "", path)
        if path.startswith(ROOTS) and "<" not in path and "*" not in path and "{" not in path:
            found.add(path.split("::")[0].split(":")[0])
    return found


def test_every_path_a_document_names_exists() -> None:
    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = []
    for document in documents:
        base = document.parent
        for path in sorted(paths_named_in(document.read_text())):
            if not ((REPO / path).exists() or (base / path).exists()):
                missing.append(f"{document.name}: {path}")
    assert missing == []


def test_the_path_check_finds_a_missing_one() -> None:
    assert paths_named_in("see `exporter/nowhere.py` and [x](../deploy/a.yml)") == {
        "exporter/nowhere.py",
        "deploy/a.yml",
    }


def test_no_logging_handler_carries_data_to_tenants() -> None:
    # A tenant's tail is fed by the logger it is given, not by a handler on the root logger
    # that looks tenants up: no class of the exporter is a logging.Handler.
    handlers = []
    for info in pkgutil.walk_packages([str(REPO / "exporter")], "exporter."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        handlers += [
            f"{info.name}.{name}"
            for name, value in vars(module).items()
            if isinstance(value, type)
            and issubclass(value, logging.Handler)
            and value.__module__ == info.name
        ]
    assert handlers == []


def test_only_a_tenant_writes_its_entry_in_the_store() -> None:
    # A tenant's series are published and removed by its Tenant alone (start, poll, stop);
    # the runtime only starts, replaces and stops tenants.
    writers = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "exporter").rglob("*.py")
        if path.name != "store.py" and re.search(r"store\.(publish|remove)\(", path.read_text())
    )
    assert writers == ["exporter/polling/tenant.py"]


PROCESS_NAMES = frozenset({"run_cli", "subprocess", "sim_env", "SimulatorProcess", "Popen"})


def test_tests_that_start_processes_or_servers_are_not_in_the_unit_tier() -> None:
    from tests.conftest import TIERS

    found = []
    for module in sorted(TIERS["unit"]):
        tree = ast.parse((REPO / "tests" / f"{module}.py").read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_"):
                continue
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {a.arg for a in node.args.args}
            marks = {ast.unparse(d) for d in node.decorator_list}
            tiered = any(
                m.startswith(("pytest.mark.system", "pytest.mark.integration")) for m in marks
            )
            if names & PROCESS_NAMES and not tiered:
                found.append(f"{module}.{node.name}")
    assert found == []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``path`` imports: every import statement, at the top, in a function
    or under ``TYPE_CHECKING``, and the packages each one runs first (their ``__init__``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    return found - {name}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = stack[stack.index(node) :]
                del stack[stack.index(node) :]
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def product_import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PRODUCT}
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def test_no_module_imports_itself_in_a_circle() -> None:
    # Deferred imports (in a function) and TYPE_CHECKING ones count: a circle hidden in a
    # function is still a circle, and the next refactor turns it into an import error.
    assert import_circles(product_import_graph()) == []


def test_the_circle_check_finds_one_through_a_deferred_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from pkg.b import run\n")
    (tmp_path / "b.py").write_text("def run():\n    from . import a\n    return a\n")
    (tmp_path / "c.py").write_text("from pkg import b\n")
    known = {"pkg.a", "pkg.b", "pkg.c"}
    graph = {name: imported_modules(name, tmp_path / f"{name[4:]}.py", known) for name in known}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}}
    assert import_circles(graph) == [["pkg.a", "pkg.b"]]
